"""Leader SIGKILLed under a steady write load: a new leader takes over and nothing acked is lost.

Method: a 3-node kv_node cluster takes writes of two keys each (50 in flight) through whichever
node is alive. Each trial SIGKILLs the current leader at a random instant, waits for the two
survivors to agree on a new leader, keeps writing, then checks the survivors: every acked write
present on both, every write wholly present or wholly absent, both equal. The old leader then
restarts and must converge with them before the next trial.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.cluster import Cluster, WriteLog, Writer, check_writes

IN_FLIGHT = 50
FAILOVER_S_MAX = 15.0
CONVERGE_S_MAX = 60.0


def test_leader_sigkill_under_load_loses_no_acked_write(
    make_cluster: Callable[..., Cluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    cluster.start_all()
    log = WriteLog()
    for trial in range(chaos_trials):
        leader = cluster.leader(30.0)
        delay_s = chaos_random.uniform(0.5, 1.5)
        print(f"trial {trial}: kill leader node {leader.index} after {delay_s:.2f} s of load")
        writer = Writer(cluster, IN_FLIGHT, log)
        writer.start()
        time.sleep(delay_s)
        killed_at = time.monotonic()
        cluster.kill([leader])
        successor = cluster.leader(FAILOVER_S_MAX)
        print(f"  node {successor.index} leads {time.monotonic() - killed_at:.2f} s after")
        acked_at_failover = len(log.acked)
        time.sleep(1.0)
        writer.stop()
        assert successor is not leader
        assert len(log.acked) > acked_at_failover, "no write was acked after the failover"
        cluster.converged(CONVERGE_S_MAX)
        check_writes(log, {node.index: node.data() for node in cluster.alive()})
        cluster.start(leader)
        cluster.converged(CONVERGE_S_MAX)
    print(f"acked {len(log.acked)} writes, {len(log.unknown)} of unknown outcome")
    check_writes(log, {node.index: node.data() for node in cluster.nodes})
