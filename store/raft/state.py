"""The replicated state of the Raft store: the state machine plus the store's own chunk assemblies.

`ReplicatedState.apply_entry` is what every node runs for every committed entry, on the tick
thread. It never raises (one exception in a replicated method stalls pysyncobj's cluster):
a command whose apply raises yields a CommandFailed result instead, the same on every node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import msgpack

from store.errors import CodecError
from store.log import Applied
from store.raft.chunks import Assembly, ChunkAssembler
from store.raft.entry import BarrierEntry, Batch, Chunk, decode_entry

log = logging.getLogger(__name__)

# The version of the store's snapshot (the machine's own snapshot bytes, whose format
# store/codec.py versions, and the chunk assemblies), not of the machine's snapshot inside it.
STORE_SNAPSHOT_VERSION = 1


class StateMachine(Protocol):
    """What the Raft store replicates. The store knows nothing else about it.

    apply_command runs on pysyncobj's tick thread, in log order, on every node. It must be
    deterministic (no clock, no randomness, no I/O) and must not raise. to_bytes and load_bytes
    run on the tick thread too (to_bytes also in a forked dump child).
    """

    def apply_command(self, command: bytes) -> object: ...

    def to_bytes(self) -> bytes: ...

    def load_bytes(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class CommandFailed:
    """The result of a command whose apply raised: a bug in the state machine, logged."""

    reason: str


@dataclass(frozen=True)
class EntryApplied:
    """What applying one entry did: the commands applied, in order, or why it applied none."""

    index: int
    events: tuple[Applied, ...]
    # Set when the entry could not apply its command(s): a broken chunk assembly or an
    # undecodable entry. Nothing was applied; the proposer learns it certainly was not.
    failure: str | None = None


class ReplicatedState:
    def __init__(self, machine: StateMachine, chunk_assembly_entries_max: int) -> None:
        self._machine = machine
        self._chunks = ChunkAssembler(chunk_assembly_entries_max)

    @property
    def pending_assemblies(self) -> int:
        return len(self._chunks)

    def apply_entry(self, index: int, data: bytes) -> EntryApplied:
        try:
            entry = decode_entry(data)
        except CodecError as error:
            log.error("entry %d not applied: %s", index, error)
            return EntryApplied(index, (), failure=str(error))
        self._chunks.expire(index)
        if isinstance(entry, Batch):
            return EntryApplied(index, tuple(self._apply(index, c) for c in entry.commands))
        if isinstance(entry, Chunk):
            return self._apply_chunk(index, entry)
        assert isinstance(entry, BarrierEntry)
        return EntryApplied(index, ())

    def _apply_chunk(self, index: int, chunk: Chunk) -> EntryApplied:
        status, command = self._chunks.add(chunk, index)
        if status is Assembly.REJECTED:
            return EntryApplied(index, (), failure="chunk does not continue its assembly")
        if status is Assembly.PENDING:
            return EntryApplied(index, ())
        return EntryApplied(index, (self._apply(index, command),))

    def _apply(self, index: int, command: bytes) -> Applied:
        try:
            result = self._machine.apply_command(command)
        except Exception as error:
            # The contract says apply_command never raises; if it does, every node raises the
            # same way (it is deterministic), so an error result keeps the nodes equal.
            log.exception("apply_command raised at index %d", index)
            result = CommandFailed(f"{type(error).__name__}: {error}")
        return Applied(index, command, result)

    def to_bytes(self) -> bytes:
        plain = [STORE_SNAPSHOT_VERSION, self._machine.to_bytes(), self._chunks.to_plain()]
        return msgpack.packb(plain, use_bin_type=True)

    def load_bytes(self, data: bytes) -> None:
        try:
            version, machine_bytes, chunks = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise CodecError(f"undecodable store snapshot: {error}") from error
        if version != STORE_SNAPSHOT_VERSION or not isinstance(machine_bytes, bytes):
            raise CodecError(f"store snapshot of unknown version {version!r}")
        self._machine.load_bytes(machine_bytes)
        self._chunks.load_plain(chunks)
