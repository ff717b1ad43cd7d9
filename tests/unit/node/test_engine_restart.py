"""A restarted engine on a real Raft store: it plans its holdings once, when the replay is over.

A journal written under churn holds many epochs. Planning the holdings for each epoch the replay
passes through drops and re-arms the timers of every partition that moved, each time: at a
million jobs that was seconds of a restart. Nothing fires before the store has caught up, so
the plan waits for it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster import handoff
from node.engine import engine as engine_module
from node.engine.engine import EngineConfig
from tests.unit.node.engine_harness import NODE, OTHER_NODE, Harness

JOBS = 20
EPOCH_FLIPS = 5
WAIT_S = 10.0


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
