"""The guarantees under real network partitions: a 3-node cluster, each node in a network
namespace of its own, under a seeded schedule that isolates a follower, the leader and the owner
of the busy partitions, heals each, and flaps one node (tests/chaos/partition_run.py).

What must hold (history.py checks it from the recorded history): nothing acknowledged lost;
creates sent to a cut node from its side of the cut answer 503 or do not connect, never 204;
after the heal the replicas converge and every occurrence due is delivered, with duplicates
only near a cut. A second test cuts a node off while it is busy: a cut node's copy of an
occurrence must never reach the app after its replacement.

TOCK_CHAOS_SEED replays a schedule; the seed and schedule are printed (shown by pytest when a
test fails, or always with -s). `scripts/chaos --partitions` runs this module over and over.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from tests.chaos import netns
from tests.chaos.guarantee_run import HEAL_TIMEOUT_S, NODES, wall_ms
from tests.chaos.history import (
    EVERY_MS,
    PARTITION_KIND_PREFIX,
    Fault,
    History,
    delivery_from,
    stale_deliveries,
)
from tests.chaos.partition_run import FLAPS, LEASE_MS, MINORITY_WRITES, run_partitions
from tests.support.cluster_watch import View, create_job, owner_of, register_app, wait_until
from tests.support.sink import Sink

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
# Cluster start, four partitions with their heals, quiescence and the checks, on 2 busy cores.
RUN_S_MAX = 180
# A dozen `@every 1s` jobs of one node, cut off for longer than a delivery attempt's timeout:
# the attempts in flight at the cut are the ones that come back after the heal.
BUSY_JOBS = 12
BUSY_REPEATS = 20
BUSY_CUT_S = 7.0
# A slow app makes a round's deliveries overlap, so the victim keeps a pooled connection for
# each: a round fired over pooled connections is sent, not refused by a missing route.
APP_DELAY_S = 0.3
# The cut comes this long before the jobs' next round, well inside the victim's lease.
CUT_AHEAD_MS = 200
BUSY_START_TIMEOUT_S = 15.0
BUSY_END_TIMEOUT_S = 40.0
# Cluster start, the jobs' twenty seconds with the cut in them, and the checks.
BUSY_S_MAX = 90


@pytest.mark.timeout(RUN_S_MAX)
def test_every_guarantee_holds_under_partitions(tmp_path: Path) -> None:
    seed = int(os.environ.get("TOCK_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
    result = run_partitions(tmp_path, seed)
    verdict = result.run.verdict
    assert not verdict.violations, "\n".join(verdict.violations)
    assert verdict.deliveries > 0, "the workload delivered nothing: the run proved nothing"
    assert verdict.near_faults > 0, "no occurrence was due near a cut: the run proved nothing"
    assert result.faults == 3 + FLAPS, "every isolation and every cut of the flap is recorded"
    writes = result.minority_writes
    assert len(writes) == 3 * MINORITY_WRITES, "each isolation sends its writes to the cut node"
    wrong = [w for w in writes if not w.refused]
    assert not wrong, f"writes on the minority side not refused: {wrong}"


class StaleDelivery(AssertionError):
    """A cut node's copy of an occurrence reached the app after its replacement."""


def busy_jobs(view: View, victim: str) -> list[str]:
    names = (f"busy-{k}" for k in range(100_000))
    return list(itertools.islice((n for n in names if owner_of(view, n) == victim), BUSY_JOBS))


def cut_while_busy(
    net: netns.Network, cluster: LocalCluster, app: Sink, victim: str, names: list[str]
) -> Fault:
    """Cut `victim` just before its jobs' next round, which it then fires inside its lease
    with its link down; heal after BUSY_CUT_S; the cut as a fault."""
    wait_until(
        lambda: True if all(len(app.calls_for(name)) >= 2 for name in names) else None,
        BUSY_START_TIMEOUT_S,
        "every busy job fired twice",
    )
    last: dict[str, int] = {}
    for call in list(app.calls):
        scheduled_ms = delivery_from(call.headers, call.body, call.name, 0).scheduled_ms
        last[call.name] = max(last.get(call.name, 0), scheduled_ms)
    next_round_ms = min(last.values()) + EVERY_MS
    time.sleep(max(0.0, (next_round_ms - CUT_AHEAD_MS - wall_ms()) / 1000))
    start_ms = wall_ms()
    net.cut(victim)
    try:
        time.sleep(BUSY_CUT_S)
    finally:
        net.heal(victim)
    cluster.wait_ready(HEAL_TIMEOUT_S)
    return Fault(f"{PARTITION_KIND_PREFIX}-owner", (victim,), start_ms, wall_ms())


@pytest.mark.timeout(BUSY_S_MAX)
def test_a_cut_node_never_delivers_after_its_replacement(
    netns_cluster: tuple[netns.Network, LocalCluster],
) -> None:
    """The cut node's copy of an occurrence may precede its replacement, never follow it:
    here with a node cut off just as a dozen of its jobs fire. (The schedule run counts its own
    stale copies too, and prints them: `chaos: N cuts, M stale deliveries`.)"""
    net, cluster = netns_cluster
    app = Sink(host=net.bridge_address, delay_s=APP_DELAY_S).start()
    try:
        leader = cluster.wait_ready()
        victim = min(node for node in NODES if node != leader)
        names = busy_jobs(cluster.cluster_status(leader), victim)
        register_app(cluster.node(leader).url, app.url)
        for name in names:
            create_job(cluster.node(leader).url, name, schedule="@every 1s", repeats=BUSY_REPEATS)
        cut = cut_while_busy(net, cluster, app, victim, names)
        wait_until(
            lambda: True if all(len(app.calls_for(n)) >= BUSY_REPEATS for n in names) else None,
            BUSY_END_TIMEOUT_S,
            "every busy job ran to its end",
        )
        calls = list(app.calls)
        deliveries = [delivery_from(c.headers, c.body, c.name, c.received_ms) for c in calls]
    finally:
        app.stop()
    moved = [d for d in deliveries if d.node != victim and cut.start_ms < d.scheduled_ms]
    assert moved, f"none of {victim}'s jobs fired elsewhere while it was cut off"
    stale = stale_deliveries(History(deliveries=deliveries, faults=[cut]), LEASE_MS)
    # On a line of its own, after pytest's progress dots, for scripts/chaos to find.
    print(f"\nchaos: {len(deliveries)} deliveries of {len(names)} busy jobs, {len(stale)} stale")
    if stale:
        raise StaleDelivery("\n".join(stale))
