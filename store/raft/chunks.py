"""Reassembly of commands too large for one Raft entry, by deterministic rules only.

pysyncobj corrupts entries of 64 KiB or more, so every entry stays under 32 KiB.

A large command travels as chunks 0..parts-1 in consecutive entries of its proposer, which
proposes them in order and never retries them. Every node applies the same log, so every node
takes the same decisions:

- part 0 starts an assembly, dropping an incomplete one of the same proposer (the proposer
  gave up on it, or its entries were lost with a leader);
- any other part must continue the proposer's assembly exactly (same sequence and part count,
  next part), or the assembly is dropped and the chunk rejected;
- the last part completes it: the whole command is applied, once;
- an assembly still incomplete `age_entries_max` log entries after it started is dropped, so a
  proposer that died mid-command leaves nothing behind for long.

The assemblies are replicated state: they are part of the store's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from store.raft.entry import Chunk


class Assembly(Enum):
    PENDING = "pending"
    COMPLETE = "complete"
    REJECTED = "rejected"


@dataclass
class _Assembly:
    sequence: int
    parts: int
    started_index: int
    pieces: list[bytes] = field(default_factory=list)


class ChunkAssembler:
    def __init__(self, age_entries_max: int) -> None:
        assert age_entries_max >= 1
        self._age_entries_max = age_entries_max
        self._assemblies: dict[bytes, _Assembly] = {}

    def __len__(self) -> int:
        return len(self._assemblies)

    def expire(self, index: int) -> None:
        """Drop assemblies that started more than age_entries_max entries before index."""
        oldest = index - self._age_entries_max
        stale = [p for p, a in self._assemblies.items() if a.started_index < oldest]
        for proposer in stale:
            del self._assemblies[proposer]

    def add(self, chunk: Chunk, index: int) -> tuple[Assembly, bytes]:
        """Apply one chunk found at log index; the command bytes come back when COMPLETE."""
        if chunk.part == 0:
            current = _Assembly(chunk.sequence, chunk.parts, index)
            self._assemblies[chunk.proposer] = current
        else:
            found = self._assemblies.get(chunk.proposer)
            if found is None or not _continues(found, chunk):
                self._assemblies.pop(chunk.proposer, None)
                return Assembly.REJECTED, b""
            current = found
        current.pieces.append(chunk.data)
        if len(current.pieces) < current.parts:
            return Assembly.PENDING, b""
        del self._assemblies[chunk.proposer]
        return Assembly.COMPLETE, b"".join(current.pieces)

    def to_plain(self) -> list[list[object]]:
        """The assemblies as msgpack-ready lists, in a stable order."""
        return [
            [proposer, a.sequence, a.parts, a.started_index, a.pieces]
            for proposer, a in sorted(self._assemblies.items())
        ]

    def load_plain(self, plain: list[list[object]]) -> None:
        assemblies: dict[bytes, _Assembly] = {}
        for proposer, sequence, parts, started_index, pieces in plain:
            assert isinstance(proposer, bytes) and isinstance(pieces, list)
            assert isinstance(sequence, int) and isinstance(parts, int)
            assert isinstance(started_index, int)
            assemblies[proposer] = _Assembly(sequence, parts, started_index, list(pieces))
        self._assemblies = assemblies


def _continues(assembly: _Assembly, chunk: Chunk) -> bool:
    return (
        assembly.sequence == chunk.sequence
        and assembly.parts == chunk.parts
        and len(assembly.pieces) == chunk.part
    )
