"""SIGSTOP a follower for longer than `dead`, then SIGCONT: fencing by lease and epoch.

Method: before the pause, one-shot jobs owned by the victim are created, due at three moments:
just after the pause starts (its lease may still hold, but it is frozen), after it is declared
dead, and just after it resumes, when its own stale view still says it owns them and its wheel
still holds their timers. Every one of them must be delivered exactly once; those due while it
was paused by a survivor. After SIGCONT the leader is polled until the victim is live again:
the victim learns that epoch only after the leader committed it, so every delivery from the
victim (the `tock-node` header) must arrive after the last poll that still showed it not live,
and only for jobs it owns in the epoch that re-admitted it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cluster.local import LocalCluster
from tests.support.cluster_watch import (
    ElectionLog,
    View,
    create_job,
    live,
    owner_of,
    register_app,
    wait_until,
)
from tests.support.sink import Call, Sink

NODES = ["n1", "n2", "n3"]
PAUSE_S = 6.0
# Seconds after the pause starts at which each group of jobs is due.
DUE_AFTER_PAUSE_S = {"frozen": 0.5, "dead": 4.0, "resumed": PAUSE_S + 0.3}
JOBS_PER_GROUP = 4
AGREE_TIMEOUT_S = 30.0
READMIT_TIMEOUT_S = 15.0
FIRE_TIMEOUT_S = 20.0
SETTLE_S = 2.0


def rfc3339(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")


def victim_jobs(view: View, victim: str) -> dict[str, list[str]]:
    """Job names owned by `victim` in `view`, JOBS_PER_GROUP per group."""
    names = (f"pause-{k}" for k in range(100_000))
    owned = (name for name in names if owner_of(view, name) == victim)
    return {group: [next(owned) for _ in range(JOBS_PER_GROUP)] for group in DUE_AFTER_PAUSE_S}


def wait_readmitted(cluster: LocalCluster, log: ElectionLog, leader: str, victim: str) -> float:
    """Poll the leader until `victim` is live again; the wall ms at which the last poll that
    still showed it not live was sent (nothing the victim does in the new epoch is earlier)."""
    last_not_live_ms = time.time() * 1000

    def probe() -> bool | None:
        nonlocal last_not_live_ms
        sent_ms = time.time() * 1000
        views = log.views(cluster, [leader])
        if leader in views and victim in live(views[leader]):
            return True
        last_not_live_ms = sent_ms
        return None

    wait_until(probe, READMIT_TIMEOUT_S, f"{victim} is live again")
    return last_not_live_ms


def test_a_paused_node_fires_nothing_it_no_longer_owns(cluster: LocalCluster, sink: Sink) -> None:
    log = ElectionLog()
    leader = cluster.wait_ready(AGREE_TIMEOUT_S)
    victim = next(node for node in NODES if node != leader)
    before = log.agreed(cluster, NODES, AGREE_TIMEOUT_S)[leader]
    register_app(cluster.node(leader).url, sink.url)
    groups = victim_jobs(before, victim)
    paused_at = time.time() + 0.5
    for group, names in groups.items():
        for name in names:
            due = rfc3339(paused_at + DUE_AFTER_PAUSE_S[group])
            create_job(cluster.node(leader).url, name, dueTime=due)
    time.sleep(max(0.0, paused_at - time.time()))
    cluster.pause(victim)
    time.sleep(PAUSE_S)
    cluster.resume(victim)
    resumed_ms = time.time() * 1000
    fenced_until_ms = wait_readmitted(cluster, log, leader, victim)
    after = log.agreed(cluster, NODES, AGREE_TIMEOUT_S)[leader]
    assert after["epoch"] >= before["epoch"] + 2, "one epoch without the victim, one with it"

    names = [name for group in groups.values() for name in group]
    for name in names:
        sink.wait_for(name, 1, FIRE_TIMEOUT_S)
    time.sleep(SETTLE_S)
    calls = {name: sink.calls_for(name) for name in names}
    assert {name: len(got) for name, got in calls.items()} == dict.fromkeys(names, 1)
    for name in groups["frozen"] + groups["dead"]:
        assert calls[name][0].headers.get("tock-node") != victim, name
    late: list[Call] = [
        call
        for call in sink.calls
        if call.headers.get("tock-node") == victim and call.received_ms > resumed_ms - 100
    ]
    for call in late:
        assert call.received_ms >= fenced_until_ms, (call.name, call.received_ms, fenced_until_ms)
        assert owner_of(after, call.name) == victim, call.name
    print(
        f"victim {victim}: still fenced {fenced_until_ms - resumed_ms:.0f} ms after SIGCONT; "
        f"{len(late)} deliveries from it after resuming"
    )
    log.assert_one_leader_per_term()
