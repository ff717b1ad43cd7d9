"""The payload of one Raft entry: a batch of commands, one chunk of a large command, or a barrier.

An entry is a msgpack array whose first element is its kind. The store creates every entry
itself, so decoding an entry that does not fit is a CodecError (a bug or a foreign writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

from store.errors import CodecError

# Sizes here are wire sizes (see wire_bytes). Bytes msgpack may add around a batch (array
# headers, kind) and around each command (bin header), counted twice since they may be >= 0x80:
# estimates use these so that an entry never exceeds its byte budget.
BATCH_OVERHEAD_BYTES = 32
COMMAND_OVERHEAD_BYTES = 10
# A chunk carries its proposer id (8 bytes), sequence, part numbers and a bin header.
CHUNK_OVERHEAD_BYTES = 128
PROPOSER_ID_BYTES = 8


class EntryKind(IntEnum):
    BATCH = 0
    CHUNK = 1
    BARRIER = 2


@dataclass(frozen=True)
class Batch:
    commands: tuple[bytes, ...]


@dataclass(frozen=True)
class Chunk:
    """Part `part` of `parts` of the command number `sequence` proposed by `proposer`."""

    proposer: bytes
    sequence: int
    part: int
    parts: int
    data: bytes


@dataclass(frozen=True)
class BarrierEntry:
    """A no-op entry: once applied, every entry committed before it has been applied too. (The
    job machine's Barrier command in store/codec.py is another thing: a command it applies.)"""


Entry = Batch | Chunk | BarrierEntry
# An entry as pysyncobj's log and journal keep it: (its payload's bytes, log index, term).
RaftEntryTuple = tuple[bytes, int, int]


def wire_bytes(data: bytes) -> int:
    """The size of data once pysyncobj pickled it into an entry.

    pysyncobj pickles with protocol 2, which has no bytes opcode: bytes travel as a latin-1
    text, UTF-8 encoded, so every byte >= 0x80 takes two. Entry budgets count this size.
    """
    return len(data.decode("latin-1").encode("utf-8"))


def batch_bytes(command_wire_bytes: int, commands: int) -> int:
    """An upper bound of the wire size of a batch of `commands` totalling those wire bytes."""
    return BATCH_OVERHEAD_BYTES + command_wire_bytes + commands * COMMAND_OVERHEAD_BYTES


def encode_batch(commands: list[bytes]) -> bytes:
    return msgpack.packb([EntryKind.BATCH, commands], use_bin_type=True)


def encode_barrier() -> bytes:
    return msgpack.packb([EntryKind.BARRIER], use_bin_type=True)


def encode_chunks(proposer: bytes, sequence: int, command: bytes, entry_bytes: int) -> list[bytes]:
    """Split command into chunk entries of at most entry_bytes each (wire size), in order."""
    assert len(proposer) == PROPOSER_ID_BYTES, "proposer ids have a fixed size"
    # Any byte may double on the wire, so a piece is half the budget.
    piece_bytes = (entry_bytes - CHUNK_OVERHEAD_BYTES) // 2
    assert piece_bytes > 0, "an entry must hold more than a chunk header"
    pieces = [command[at : at + piece_bytes] for at in range(0, len(command), piece_bytes)]
    entries = [
        msgpack.packb([EntryKind.CHUNK, proposer, sequence, part, len(pieces), piece])
        for part, piece in enumerate(pieces)
    ]
    assert all(wire_bytes(entry) <= entry_bytes for entry in entries), "a chunk overflowed"
    return entries


def decode_entry(data: bytes) -> Entry:
    try:
        fields = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise CodecError(f"undecodable Raft entry: {error}") from error
    if not isinstance(fields, list) or not fields:
        raise CodecError("a Raft entry is a non-empty msgpack array")
    kind, rest = fields[0], fields[1:]
    if kind == EntryKind.BATCH and len(rest) == 1 and _all_bytes(rest[0]):
        return Batch(tuple(rest[0]))
    if kind == EntryKind.CHUNK and len(rest) == 5:
        return _decode_chunk(rest)
    if kind == EntryKind.BARRIER and not rest:
        return BarrierEntry()
    raise CodecError(f"not a Raft entry of a known kind: kind {kind!r}, {len(rest)} fields")


def _all_bytes(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, bytes) for item in value)


def _decode_chunk(fields: list[object]) -> Chunk:
    proposer, sequence, part, parts, data = fields
    if not (
        isinstance(proposer, bytes)
        and isinstance(sequence, int)
        and isinstance(part, int)
        and isinstance(parts, int)
        and isinstance(data, bytes)
        and 0 <= part < parts
    ):
        raise CodecError("malformed chunk entry")
    return Chunk(proposer, sequence, part, parts, data)
