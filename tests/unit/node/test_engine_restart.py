"""Partitions changing hands on a real Raft store, at the cost a million jobs would make of it.

A restarted engine plans its holdings once, when the replay is over. A journal written under
churn holds many epochs. Planning the holdings for each epoch the replay passes through drops and
re-arms the timers of every partition that moved, each time: at a million jobs that was seconds
of a restart. Nothing fires before the store has caught up, so the plan waits for it.

The timers of the partitions that moved are armed or dropped a few thousand rows a turn of the
loop: a third of a million at once held the loop, and the heartbeats it sends, for seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import handoff
from node.engine import engine as engine_module
from node.engine.engine import EngineConfig
from tests.support.sink import Sink
from tests.unit.node.engine_harness import NODE, OTHER_NODE, Harness

JOBS = 20
EPOCH_FLIPS = 5
WAIT_S = 10.0
ROWS_PER_TURN = 4
# Every job of this module's sink answers 200 (conftest.py).
SCRIPTS: dict[str, Callable[[int], int]] = {}


def test_a_restarted_engine_plans_its_holdings_once_after_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Harness(tmp_path, EngineConfig()).start()
    try:
        for index in range(JOBS):
            first.put(f"restart-{index}", schedule="@every 10m")
        for _ in range(EPOCH_FLIPS):
            first.set_live((OTHER_NODE,))
            first.set_live((NODE, OTHER_NODE))
        first.set_live((NODE,))
    finally:
        first.close()

    plans: list[int] = []
    plan = handoff.next_holdings

    def counted_plan(*args: object) -> object:
        plans.append(1)
        return plan(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module, "next_holdings", counted_plan)
    again = Harness(tmp_path, EngineConfig()).resume()
    try:
        deadline = time.monotonic() + WAIT_S
        while again.engine.timers < JOBS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every job armed (this node is the only live one), from one plan, not one per epoch.
        assert again.engine.timers == JOBS
        assert len(again.engine.owned_partitions) > 0
        assert plans == [1]
    finally:
        again.close()


def wait_for_timers(harness: Harness, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while harness.engine.timers != count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert harness.engine.timers == count


def test_moved_partitions_are_armed_and_dropped_a_few_rows_a_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink: Sink
) -> None:
    reviews: list[int] = []
    review = engine_module.TriggerEngine._review_moved

    def counted_review(engine: engine_module.TriggerEngine) -> None:
        reviews.append(1)
        review(engine)

    monkeypatch.setattr(engine_module.TriggerEngine, "_review_moved", counted_review)
    node = Harness(tmp_path, EngineConfig(rows_per_turn=ROWS_PER_TURN)).start()
    try:
        node.register("app", sink.url)
        for index in range(JOBS):
            node.put(f"moved-{index}", schedule="@every 10m")
        wait_for_timers(node, JOBS)
        node.set_live((OTHER_NODE,))
        wait_for_timers(node, 0)
        reviews.clear()
        # Back with one job due soon: armed among the others, and fired once, when it is due.
        soon = node.put("moved-soon", due_time="1500ms")
        node.set_live((NODE, OTHER_NODE))
        node.set_live((NODE,))
        node.wait_gone("moved-soon")
        (call,) = sink.calls_for("moved-soon")
        assert call.headers["tock-trigger-id"] == soon.trigger_id
        wait_for_timers(node, JOBS)
        assert len(reviews) >= JOBS // ROWS_PER_TURN
    finally:
        node.close()
