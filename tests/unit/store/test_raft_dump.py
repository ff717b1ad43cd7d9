"""The forked msgpack dump: written durably where pysyncobj expects it, restored with the Raft
metadata pysyncobj compares, a dump child that runs too long is killed, and a hook that raises
is supervised (logged, counted, retried after the backoff)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgpack
import pytest
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from store.clock import FakeClock
from store.errors import CodecError
from store.fault_points import arm, disarm
from store.raft.dump import ForkingDump, read_dump_body
from store.raft.entry import encode_batch
from store.raft.state import ReplicatedState
from store.supervision import HealthBoard

LAST = (b"\x01last", 8, 2)
PREVIOUS = (b"\x01prev", 7, 2)
CLUSTER = {TCPNode("127.0.0.1:7001"), TCPNode("127.0.0.1:7002")}


class Text:
    def __init__(self, text: bytes = b"", delay_s: float = 0.0) -> None:
        self.text = text
        self.delay_s = delay_s

    def apply_command(self, command: bytes) -> object:
        self.text += command
        return len(self.text)

    def to_bytes(self) -> bytes:
        time.sleep(self.delay_s)
        return self.text

    def load_bytes(self, data: bytes) -> None:
        self.text = data


def wait_done(dump: ForkingDump) -> int:
    for _ in range(200):
        state = dump.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.02)
    raise AssertionError("the dump child did not finish")


def dumped_hello(tmp_path: Path) -> tuple[Path, ForkingDump]:
    """A dump of a state that applied b"hello" at index 8, written by a forked child."""
    state = ReplicatedState(Text(), chunk_assembly_entries_max=10)
    state.apply_entry(8, encode_batch([b"hello"]))
    path = tmp_path / "raft.dump"
    dump = ForkingDump(path, state, FakeClock(), seconds_max=30, retry_seconds=1)
    dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    assert wait_done(dump) == SERIALIZER_STATE.SUCCESS
    return path, dump


def test_a_dump_round_trips_state_and_raft_metadata(tmp_path: Path) -> None:
    path, dump = dumped_hello(tmp_path)
    assert dump.last_index == 8 and not dump.writing_path.exists()
    restored_machine = Text()
    restored = ReplicatedState(restored_machine, chunk_assembly_entries_max=10)
    reader = ForkingDump(path, restored, FakeClock(), seconds_max=30, retry_seconds=1)
    assert reader.deserialize(str(path)) == (LAST, PREVIOUS, CLUSTER)
    assert restored_machine.text == b"hello"


def test_a_damaged_dump_is_refused_and_a_version_1_dump_still_read(tmp_path: Path) -> None:
    path, _ = dumped_hello(tmp_path)
    body = read_dump_body(path)
    version_1 = msgpack.packb([1, *msgpack.unpackb(body)[1:]], use_bin_type=True)
    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(CodecError, match="checksum mismatch"):
        read_dump_body(path)
    path.write_bytes(version_1)
    restored = ReplicatedState(Text(), chunk_assembly_entries_max=10)
    reader = ForkingDump(path, restored, FakeClock(), seconds_max=30, retry_seconds=1)
    assert reader.deserialize(str(path)) == (LAST, PREVIOUS, CLUSTER)


def test_a_dump_child_running_too_long_is_killed_and_retried_later(tmp_path: Path) -> None:
    clock = FakeClock()
    state = ReplicatedState(Text(delay_s=30), chunk_assembly_entries_max=10)
    path = tmp_path / "raft.dump"
    dump = ForkingDump(path, state, clock, seconds_max=5, retry_seconds=10)
    dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    assert dump.check() == SERIALIZER_STATE.SERIALIZING
    clock.advance(6)
    assert dump.check() == SERIALIZER_STATE.FAILED
    assert not path.exists()
    # Within the retry pause a new dump is not forked; it reports failure once the pause ends.
    dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    assert dump.check() == SERIALIZER_STATE.SERIALIZING
    clock.advance(10)
    assert dump.check() == SERIALIZER_STATE.FAILED
    assert dump.check() == SERIALIZER_STATE.NOT_SERIALIZING


def supervised_dump(path: Path, clock: FakeClock, text: Text) -> tuple[ForkingDump, HealthBoard]:
    board = HealthBoard(clock)
    state = ReplicatedState(text, chunk_assembly_entries_max=10)
    dump = ForkingDump(
        path,
        state,
        clock,
        seconds_max=30,
        retry_seconds=1,
        guard=board.guard("dump", logging.getLogger(__name__)),
    )
    return dump, board


def test_a_dump_that_raises_at_its_start_is_logged_counted_and_retried_after_the_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    path = tmp_path / "raft.dump"
    dump, board = supervised_dump(path, clock, Text(b"state"))
    arm("dump:1")
    try:
        dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    finally:
        disarm()
    assert "task dump raised" in caplog.text and "InjectedFault" in caplog.text
    assert [r.restarts for r in board.reports()] == [1]
    # Reported in progress during the backoff, then failed: pysyncobj asks for a new dump.
    assert dump.check() == SERIALIZER_STATE.SERIALIZING
    clock.advance(board.config.backoff_base_s)
    assert dump.check() == SERIALIZER_STATE.FAILED
    dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    assert wait_done(dump) == SERIALIZER_STATE.SUCCESS and path.exists()


def test_a_check_that_raises_during_a_dump_ends_that_dump_as_failed(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "raft.dump"
    dump, board = supervised_dump(path, clock, Text(delay_s=30))
    dump.serialize(str(path) + ".tmp", (LAST, PREVIOUS, CLUSTER))
    arm("dump:1")
    try:
        assert dump.check() == SERIALIZER_STATE.FAILED
    finally:
        disarm()
    assert [r.restarts for r in board.reports()] == [1]
    assert dump.check() == SERIALIZER_STATE.NOT_SERIALIZING
    assert not path.exists()
