"""One follower SIGKILLed and restarted again and again under a saturating write load.

Method: 1000 writes in flight go to the leader of a cluster of the real store while one follower is
killed and restarted (8 times, or TOCK_CHAOS_TRIALS if larger). Checked at the end: every acked
write is on every node, no refused one anywhere, and the nodes converge (the follower log shrink let
followers lose acked entries and diverge here); no node's log end ever fell below an index it had
acked in the current term (the transport counts that symptom, `acked_log_shrinks`); and the term
grew by at most TERM_GROWTH_SLACK over all the restarts, which the quiet start makes possible:
without it a restarted node campaigns with a stale log and deposes the leader (the term grew by 4
and by 6 over 8 restarts with the quiet start disabled, by 0 with it).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.trials import time_limit
from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess, wait_for
from tests.integration.raft_writer import PipelinedWriter, check_writes, node_writes

IN_FLIGHT = 1000
RESTARTS_MIN = 8
CONVERGE_S_MAX = 90.0
# Elections a starved machine may cause on its own (a heartbeat late past the timeout).
TERM_GROWTH_SLACK = 2

# The worst case of one trial, for the test's time limit.
RESTART_S_MAX = 10.0


@time_limit(RESTART_S_MAX, RESTARTS_MIN)
def test_follower_restarts_under_saturation_lose_nothing_and_converge(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster(["--log-compaction-entries", "5000"])
    leader = cluster.wait_leader()
    follower = chaos_random.choice([node for node in cluster.nodes if node is not leader])
    restarts = max(RESTARTS_MIN, chaos_trials)
    term_before = max(s["term"] for s in cluster.statuses().values() if s is not None)
    writer = PipelinedWriter(cluster, IN_FLIGHT, prefer=leader)
    writer.start()
    for restart in range(restarts):
        down_s, up_s = chaos_random.uniform(0.1, 1.0), chaos_random.uniform(0.5, 2.0)
        print(f"restart {restart}: {follower.name} up {up_s:.2f} s, then down {down_s:.2f} s")
        time.sleep(up_s)
        follower.kill()
        time.sleep(down_s)
        follower.start()
        follower.wait_up()
    wait_for(lambda: _ready(follower), CONVERGE_S_MAX, f"{follower.name} to catch up", follower)
    log = writer.stop()
    cluster.wait_converged(CONVERGE_S_MAX)
    statuses = {name: s for name, s in cluster.statuses().items() if s is not None}
    print(f"{log.summary()}; transport counters:")
    for name, status in statuses.items():
        print(f"  {name} ({status['role']}): {status['transport']}")
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})
    for name, status in statuses.items():
        assert status["transport"]["acked_log_shrinks"] == 0, f"{name}'s log shrank"
    term_after = max(status["term"] for status in statuses.values())
    print(f"term {term_before} -> {term_after} over {restarts} restarts")
    assert term_after - term_before <= TERM_GROWTH_SLACK, "restarts pushed elections"


def _ready(node: RaftNodeProcess) -> bool:
    status = node.status()
    return status is not None and bool(status["ready"])
