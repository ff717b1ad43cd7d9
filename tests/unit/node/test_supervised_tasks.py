"""Every supervised task of a real node, with faults injected: each fault is logged with its
traceback, counted as a restart, and the task does its work afterwards.

One whole node runs in this process (WatchNode: Raft, engine, HTTP, watch streams) with the
fault points of every task armed before it starts, each to raise a few times. Each test does
something that needs its task, then checks the task's crashes in the log and on the board.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from node.client.client import TockClient
from node.delivery.trigger import DeliveryOutcome, Trigger
from node.internal_auth import RequestSigner
from node.watch.forward import ForwardConfig, Forwarder
from store.clock import SystemClock
from store.errors import JobNotFound
from store.fault_points import InjectedFault, arm, disarm
from tests.support.metrics import sample_value
from tests.support.sink import Sink
from tests.unit.node.api_node import free_port
from tests.unit.node.watch_node import WatchNode

FAULTS = {
    "engine": 3,
    "acks": 2,
    "membership": 3,
    "announcer": 2,
    "batcher": 2,
    "dump": 1,
    "forward": 2,
}
WAIT_S = 15.0


class Records(logging.Handler):
    """Every log record of the process while the node runs, whatever thread logged it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def crashes(self, task: str) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if r.getMessage().startswith(f"task {task} ")
            and r.exc_info is not None
            and isinstance(r.exc_info[1], InjectedFault)
        ]


@dataclass
class Rig:
    node: WatchNode
    sink: Sink
    log: Records

    def restarts(self, task: str) -> int:
        reports = self.node.node.supervisor.board.reports()
        return sum(r.restarts for r in reports if r.name.split(" ")[0] == task)

    def check_supervised(self, task: str) -> None:
        """The task crashed exactly as often as armed, each crash logged with its traceback."""
        wait_until(lambda: self.restarts(task) == FAULTS[task], f"{task} restarts")
        assert len(self.log.crashes(task)) == FAULTS[task], task
        assert self.node.node.not_ready_reason() is None


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    records = Records()
    logging.getLogger().addHandler(records)
    arm(",".join(f"{name}:{count}" for name, count in FAULTS.items()))
    node = None
    sink = Sink().start()
    try:
        node = WatchNode(tmp_path_factory.mktemp("supervised") / "n1", 2.0).start()
        yield Rig(node, sink, records)
    finally:
        disarm()
        if node is not None:
            node.stop()
        sink.stop()
        logging.getLogger().removeHandler(records)


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.02)


def fire_one_job(rig: Rig) -> None:
    """A job of a fresh app fires at the sink, and its ack commits (the job is gone)."""
    name = f"once-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with TockClient(rig.node.base_url, app_id=f"app-{uuid.uuid4().hex[:8]}") as client:
            await client.register_app(rig.sink.url)
            await client.create(name, due_time="100ms")
            async with asyncio.timeout(WAIT_S):
                while True:
                    try:
                        await client.get(name)
                    except JobNotFound:
                        return
                    await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S + 5))
    assert len(rig.sink.calls_for(name)) == 1


def test_the_engine_restarts_and_fires(rig: Rig) -> None:
    fire_one_job(rig)
    rig.check_supervised("engine")
    metrics = rig.node.node.metrics_body().decode()
    assert sample_value(metrics, "tock_task_restarts_total", {"task": "engine"}) == 3
    assert sample_value(metrics, "tock_task_healthy", {"task": "engine"}) == 1


def test_the_ack_flush_restarts_and_commits_acks(rig: Rig) -> None:
    fire_one_job(rig)
    rig.check_supervised("acks")


def test_the_raft_batcher_restarts_and_proposes(rig: Rig) -> None:
    fire_one_job(rig)
    rig.check_supervised("batcher")


def test_heartbeats_restart_and_commit(rig: Rig) -> None:
    node = rig.node.node

    def heartbeat_ms() -> int:
        return node.machine.read(lambda m: m.heartbeats().get("n1", 0))

    first = heartbeat_ms()
    wait_until(lambda: heartbeat_ms() > first, "a heartbeat committed")
    rig.check_supervised("membership")
    assert rig.node.run(_may_fire(rig))


async def _may_fire(rig: Rig) -> bool:
    return rig.node.node.membership.may_fire()


def test_the_watch_announcer_restarts_and_records_watchers(rig: Rig) -> None:
    async def scenario() -> None:
        async with (
            TockClient(rig.node.base_url, app_id=f"app-{uuid.uuid4().hex[:8]}") as client,
            client.watch(),
        ):
            assert any(nodes == {"n1": 1} for nodes in rig.node.watchers().values())

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S))
    rig.check_supervised("announcer")


def test_the_dump_hooks_restart_and_a_snapshot_is_written(rig: Rig) -> None:
    store = rig.node.node.store
    fire_one_job(rig)
    store.force_compaction()

    wait_until(lambda: store.status().snapshot_index > 0, "a snapshot written")
    rig.check_supervised("dump")


def test_a_forwarding_lane_restarts_and_sends(rig: Rig) -> None:
    # A single node forwards to no one: a lane of the node's own supervisor to a port where
    # nothing listens answers UNDELIVERABLE, which only a running pump can say.
    signer = RequestSigner("secret", SystemClock())
    forwarder = Forwarder(ForwardConfig(), 1.0, signer, rig.node.node.supervisor)
    trigger = Trigger(
        namespace="default",
        app="app",
        name="job",
        uid="1",
        scheduled_ms=0,
        attempt=1,
        data=b"",
        content_type="",
        app_token="",
    )

    async def deliver() -> DeliveryOutcome:
        try:
            return await forwarder.deliver(f"127.0.0.1:{free_port()}", trigger)
        finally:
            await forwarder.close()

    assert rig.node.run(deliver(), WAIT_S) is DeliveryOutcome.UNDELIVERABLE
    rig.check_supervised("forward")
