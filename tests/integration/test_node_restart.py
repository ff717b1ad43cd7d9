"""Whole-cluster restarts: every node stopped (SIGTERM) or SIGKILLed at once, then started again
on the same data dir. Nothing acknowledged is lost, and the jobs fire on.

Method: a mix of jobs is created (a long schedule, a one-shot due after the restart, a
recurring job with repeats that fires across the outage, and one created then deleted), every
write answered 204 before the cluster goes down. After the restart every node must hold exactly
the acknowledged state, the one-shot must fire once, and the recurring job must deliver each of
its occurrences, the ones missed while down included (misfire policy `all`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from cluster.local import LocalCluster
from tests.integration.node_helpers import App, Rig, running_rig, scheduled_ms, settle

TICKS = 8
RESTART_READY_S = 60.0


def stop_cleanly(cluster: LocalCluster) -> None:
    cluster.stop()


def kill_all_at_once(cluster: LocalCluster) -> None:
    """SIGKILL every node before waiting for any: no node outlives another to tidy up."""
    processes = [node.process for node in cluster.nodes if node.process is not None]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait(10)


def survive_restart(rig: Rig, take_down: Callable[[LocalCluster], None], repeats: int) -> None:
    """Run the scenario; `repeats` is how often one occurrence may be delivered at most."""
    app: App = rig.app()
    daily, later, ticker, deleted = (app.name(s) for s in ("daily", "later", "ticker", "deleted"))
    app.create(daily, {"schedule": "@daily", "data": {"keep": True}}, node=1)
    app.create(later, {"dueTime": "12s"}, node=2)
    app.create(ticker, {"schedule": "@every 1s", "repeats": TICKS}, node=3)
    app.create(deleted, {"schedule": "@daily"}, node=1)
    assert app.call(2, "DELETE", f"/v1.0/jobs/{deleted}").status == 204
    daily_before = app.get(daily, 3).json
    assert len(rig.sink.wait_for(ticker, 2, timeout_s=6)) >= 2

    down_ms = time.time_ns() // 1_000_000
    take_down(rig.cluster)
    rig.cluster.start()
    rig.cluster.wait_ready(RESTART_READY_S)

    for node in (1, 2, 3):
        assert app.get(daily, node).json == daily_before, f"n{node}"
        assert app.get(deleted, node).status == 404, f"n{node}"
    # The one-shot was due after the outage began; it may have fired already since.
    later_calls = settle(rig.sink, later, 1, quiet_s=1.5, timeout_s=15)
    assert len(later_calls) == 1
    assert scheduled_ms(later_calls[0]) > down_ms, "it was due after the outage began"
    assert later_calls[0].received_ms >= scheduled_ms(later_calls[0])
    ticks = settle(rig.sink, ticker, TICKS, quiet_s=2.0, timeout_s=20)
    times = [scheduled_ms(c) for c in ticks]
    distinct = sorted(set(times))
    assert distinct == list(range(distinct[0], distinct[0] + 1000 * TICKS, 1000)), distinct
    record = [(scheduled_ms(c), c.received_ms, c.headers["tock-attempt"]) for c in ticks]
    assert max(times.count(t) for t in distinct) <= repeats, (down_ms, record)
    assert app.get(ticker, 1).status == 404


def test_a_cleanly_stopped_cluster_comes_back_with_every_job(tmp_path: Path) -> None:
    with running_rig(tmp_path) as rig:
        survive_restart(rig, stop_cleanly, repeats=1)


def test_a_cluster_killed_all_at_once_comes_back_with_every_acknowledged_job(
    tmp_path: Path,
) -> None:
    with running_rig(tmp_path) as rig:
        # One occurrence in flight at the kill may come again, no more.
        survive_restart(rig, kill_all_at_once, repeats=2)


def test_a_restart_right_after_a_create_keeps_the_job(tmp_path: Path) -> None:
    """The write is acknowledged and the cluster killed at once: no time to flush lazily."""
    with running_rig(tmp_path) as rig:
        app = rig.app()
        names = [app.name(f"fresh{i}") for i in range(5)]
        for i, name in enumerate(names):
            app.create(name, {"schedule": "@daily"}, node=1 + i % 3)
        kill_all_at_once(rig.cluster)
        started = time.monotonic()
        rig.cluster.start()
        rig.cluster.wait_ready(RESTART_READY_S)
        assert time.monotonic() - started < RESTART_READY_S
        for node in (1, 2, 3):
            assert sorted(app.names(node)) == sorted(names), f"n{node}"
