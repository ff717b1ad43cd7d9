"""The batcher on a real event loop with a fake log: few entries, one result per caller, and
errors that say whether a command certainly was not applied or may have been."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pysyncobj import FAIL_REASON

from store.errors import OutcomeUnknown, Unavailable
from store.raft.batcher import Batcher
from store.raft.bridge import EntryCallback
from store.raft.config import RaftConfig
from store.raft.entry import wire_bytes
from store.raft.state import EntryApplied, ReplicatedState
from tests.support.cluster_secret import TEST_CLUSTER_SECRET


class Echo:
    def apply_command(self, command: bytes) -> object:
        return command.upper()

    def to_bytes(self) -> bytes:
        return b""

    def load_bytes(self, data: bytes) -> None:
        pass


def config(**changes: object) -> RaftConfig:
    return RaftConfig(
        self_address="127.0.0.1:1",
        peer_addresses=(),
        data_dir=Path("/nonexistent"),
        secret=TEST_CLUSTER_SECRET,
        batch_window_ms=1.0,
        **changes,  # type: ignore[arg-type]
    )


class FakeLog:
    """Applies entries on the loop in submission order, or fails them with a chosen reason."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.state = ReplicatedState(Echo(), chunk_assembly_entries_max=1000)
        self.entries: list[bytes] = []
        self.fail_with: dict[int, int] = {}

    def submit(self, entry: bytes, on_done: EntryCallback) -> None:
        self.entries.append(entry)
        number = len(self.entries)
        reason = self.fail_with.get(number, FAIL_REASON.SUCCESS)
        outcome: EntryApplied | None = None
        if reason == FAIL_REASON.SUCCESS:
            outcome = self.state.apply_entry(number, entry)
        self.loop.call_soon(on_done, outcome, reason)


def run(test: object) -> None:
    assert asyncio.iscoroutine(test)
    asyncio.run(asyncio.wait_for(test, 10))


def test_concurrent_proposals_share_entries_and_get_their_own_results() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=config())
        proposals = [batcher.enqueue(f"c{i}".encode()) for i in range(500)]
        results = await asyncio.gather(*(p.future for p in proposals))
        assert results == [f"C{i}".encode() for i in range(500)]
        assert len(fake.entries) == 10  # batch_commands_max is 50

    run(scenario())


def test_a_large_command_travels_in_chunks_and_resolves_once() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=config())
        big = batcher.enqueue(b"a" * 200_000)
        small = batcher.enqueue(b"b")
        assert await big.future == b"A" * 200_000
        assert await small.future == b"B"
        assert all(wire_bytes(e) <= config().batch_bytes_max for e in fake.entries)
        assert len(fake.entries) > 200_000 // config().batch_bytes_max

    run(scenario())


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (FAIL_REASON.DISCARDED, Unavailable),
        (FAIL_REASON.NOT_LEADER, Unavailable),
        (FAIL_REASON.MISSING_LEADER, Unavailable),
        (FAIL_REASON.LEADER_CHANGED, OutcomeUnknown),
        (FAIL_REASON.UNKNOWN_OUTCOME, OutcomeUnknown),
    ],
)
def test_failure_reasons_map_to_certain_or_unknown(reason: int, error: type[Exception]) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        fake.fail_with[1] = reason
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=config())
        proposal = batcher.enqueue(b"x")
        with pytest.raises(error):
            await proposal.future

    run(scenario())


def test_a_lost_middle_chunk_withdraws_the_rest_so_not_applied_is_certain() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        fake.fail_with[2] = FAIL_REASON.LEADER_CHANGED
        limits = config(entries_in_flight_max=1)
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=limits)
        big = batcher.enqueue(b"a" * 100_000)
        after = batcher.enqueue(b"b")
        with pytest.raises(Unavailable, match="chunk was lost"):
            await big.future
        assert await after.future == b"B"
        assert len(fake.entries) == 3  # two chunks, then the small command's batch

    run(scenario())


def test_barriers_ride_on_the_next_entry_or_a_no_op() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=config())
        waiting = [batcher.add_barrier() for _ in range(5)]
        await asyncio.gather(*waiting)
        assert len(fake.entries) == 1
        command = batcher.enqueue(b"x")
        barrier = batcher.add_barrier()
        await asyncio.gather(command.future, barrier)
        assert len(fake.entries) == 2

    run(scenario())


def test_withdraw_and_close() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        submitted: list[bytes] = []
        batcher = Batcher(
            loop=loop,
            submit=lambda entry, on_done: submitted.append(entry),
            proposer=b"p" * 8,
            config=config(entries_in_flight_max=1, batch_commands_max=1),
        )
        first, second = batcher.enqueue(b"1"), batcher.enqueue(b"2")
        await asyncio.sleep(0.01)
        assert len(submitted) == 1
        assert batcher.withdraw(second) and not batcher.withdraw(first)
        batcher.close()
        with pytest.raises(OutcomeUnknown):
            await first.future
        with pytest.raises(Unavailable):
            batcher.enqueue(b"3")

    run(scenario())


def test_the_queue_is_bounded_in_bytes_and_frees_them_as_commands_leave() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeLog(loop)
        bounded = config(pending_bytes_max=100_000, entries_in_flight_max=1)
        batcher = Batcher(loop=loop, submit=fake.submit, proposer=b"p" * 8, config=bounded)
        # One entry in flight: the rest queue, up to the byte bound and not one byte more.
        first = batcher.enqueue(b"x" * 20_000)
        queued = [batcher.enqueue(b"y" * 20_000) for _ in range(4)]
        with pytest.raises(Unavailable, match="bytes of commands already queued"):
            batcher.enqueue(b"z" * 20_001)
        await asyncio.gather(first.future, *(p.future for p in queued))
        # Everything left: the whole budget is free again, for plain and chunked commands.
        big = batcher.enqueue(b"a" * 99_000)
        assert await big.future == b"A" * 99_000

    run(scenario())
