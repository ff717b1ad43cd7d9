"""One follower SIGKILLed and restarted again and again under a saturating write load.

Method: 1000 writes in flight go to the leader while one follower is killed and restarted
(8 times, or TOCK_CHAOS_TRIALS if larger). Checked at the end: every acked write is on every
node and the nodes converge (F1 let followers lose acked entries and diverge here); no node's
log end ever fell below an index it had acked in the current term (the transport counts that
symptom of F1, `acked_log_shrinks`); and the term grew by at most one per restart plus the
initial election slack, which the quiet start makes possible (without it, each restarted node
campaigns with a stale log and deposes the leader).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.cluster import Cluster, Node, Writer, check_writes, wait_until

IN_FLIGHT = 1000
RESTARTS_MIN = 8
CONVERGE_S_MAX = 90.0
TERM_GROWTH_SLACK = 2


def test_follower_restarts_under_saturation_lose_nothing_and_converge(
    make_cluster: Callable[..., Cluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster(extra_arguments=["--compaction-entries=5000"])
    cluster.start_all()
    leader = cluster.leader(30.0)
    follower = chaos_random.choice([node for node in cluster.nodes if node is not leader])
    restarts = max(RESTARTS_MIN, chaos_trials)
    term_before = max(s["term"] for s in cluster.statuses().values() if s is not None)
    writer = Writer(cluster, IN_FLIGHT, prefer=leader)
    writer.start()
    for restart in range(restarts):
        down_s, up_s = chaos_random.uniform(0.1, 1.0), chaos_random.uniform(0.5, 2.0)
        print(f"restart {restart}: node {follower.index} down {down_s:.2f} s, up {up_s:.2f} s")
        time.sleep(up_s)
        cluster.kill([follower])
        time.sleep(down_s)
        cluster.start(follower)
    wait_until("the follower to catch up once", lambda: _ready(follower), CONVERGE_S_MAX)
    log = writer.stop()
    statuses = cluster.converged(CONVERGE_S_MAX)
    print(f"acked {len(log.acked)}, unknown {len(log.unknown)}, statuses {statuses}")
    check_writes(log, {node.index: node.data() for node in cluster.nodes})
    for index, status in statuses.items():
        assert status["stats"]["acked_log_shrinks"] == 0, f"node {index} log shrank (F1)"
    term_after = max(status["term"] for status in statuses.values())
    print(f"term {term_before} -> {term_after} over {restarts} restarts")
    assert term_after - term_before <= restarts + TERM_GROWTH_SLACK


def _ready(node: Node) -> bool | None:
    status = node.status()
    return True if status is not None and status["ready"] else None
