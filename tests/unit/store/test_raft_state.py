"""Applying entries: one result per command, errors as results, snapshots in msgpack."""

from __future__ import annotations

import pytest

from store.errors import CodecError
from store.raft.entry import encode_barrier, encode_batch, encode_chunks
from store.raft.state import CommandFailed, ReplicatedState


class Counter:
    """A tiny StateMachine: b"+" counts, b"!" raises (a bug the store must contain)."""

    def __init__(self) -> None:
        self.count = 0

    def apply_command(self, command: bytes) -> object:
        if command == b"!":
            raise RuntimeError("boom")
        self.count += len(command)
        return self.count

    def to_bytes(self) -> bytes:
        return str(self.count).encode()

    def load_bytes(self, data: bytes) -> None:
        self.count = int(data)


def test_a_batch_yields_one_result_per_command_in_order() -> None:
    state = ReplicatedState(Counter(), chunk_assembly_entries_max=10)
    outcome = state.apply_entry(5, encode_batch([b"+", b"++", b"+"]))
    assert outcome.failure is None
    assert [e.result for e in outcome.events] == [1, 3, 4]
    assert {e.index for e in outcome.events} == {5}


def test_a_raising_command_becomes_an_error_result_and_the_rest_applies() -> None:
    state = ReplicatedState(Counter(), chunk_assembly_entries_max=10)
    outcome = state.apply_entry(2, encode_batch([b"+", b"!", b"+"]))
    results = [e.result for e in outcome.events]
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], CommandFailed) and "boom" in results[1].reason


def test_undecodable_entries_and_barriers_apply_nothing() -> None:
    state = ReplicatedState(Counter(), chunk_assembly_entries_max=10)
    assert state.apply_entry(2, b"\xc1").failure is not None
    barrier = state.apply_entry(3, encode_barrier())
    assert barrier.events == () and barrier.failure is None


def test_a_chunked_command_applies_once_at_its_last_chunk() -> None:
    machine = Counter()
    state = ReplicatedState(machine, chunk_assembly_entries_max=100)
    entries = encode_chunks(b"12345678", 1, b"+" * 5000, 1024)
    outcomes = [state.apply_entry(10 + i, e) for i, e in enumerate(entries)]
    assert all(o.events == () and o.failure is None for o in outcomes[:-1])
    assert [e.result for e in outcomes[-1].events] == [5000]
    assert machine.count == 5000


def test_snapshot_round_trip_carries_pending_chunks() -> None:
    machine = Counter()
    state = ReplicatedState(machine, chunk_assembly_entries_max=100)
    state.apply_entry(1, encode_batch([b"++"]))
    entries = encode_chunks(b"12345678", 1, b"+" * 3000, 1024)
    state.apply_entry(2, entries[0])
    copy_machine = Counter()
    copy = ReplicatedState(copy_machine, chunk_assembly_entries_max=100)
    copy.load_bytes(state.to_bytes())
    assert copy_machine.count == 2 and copy.pending_assemblies == 1
    last = [copy.apply_entry(3 + i, e) for i, e in enumerate(entries[1:])][-1]
    assert [e.result for e in last.events] == [3002]


def test_a_foreign_snapshot_is_a_codec_error() -> None:
    state = ReplicatedState(Counter(), chunk_assembly_entries_max=10)
    with pytest.raises(CodecError):
        state.load_bytes(b"\x93\x09\xc4\x00\x90")
