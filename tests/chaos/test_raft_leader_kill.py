"""Leader SIGKILLed under a steady write load: a new leader takes over and nothing acked is lost.

Method: a 3-node cluster of the real store takes writes of two keys each (50 in flight, one
command per write) through whichever node runs. Each trial SIGKILLs the current leader at a
random instant, waits for the two survivors to agree on a new leader, keeps writing, then checks
the survivors: every acked write present on both, no refused write anywhere, every write wholly
present or wholly absent, both equal. The old leader then restarts and must converge with them
before the next trial.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.trials import time_limit
from tests.integration.raft_cluster import RaftCluster
from tests.integration.raft_writer import PipelinedWriter, WriteLog, check_writes, node_writes

IN_FLIGHT = 50
FAILOVER_S_MAX = 15.0
CONVERGE_S_MAX = 60.0
WRITING_AFTER_FAILOVER_S = 1.0

# The worst case of one trial, for the test's time limit.
TRIAL_S_MAX = 40.0


@time_limit(TRIAL_S_MAX)
def test_leader_sigkill_under_load_loses_no_acked_write(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    log = WriteLog()
    for trial in range(chaos_trials):
        leader = cluster.wait_leader()
        delay_s = chaos_random.uniform(0.5, 1.5)
        print(f"trial {trial}: kill leader {leader.name} after {delay_s:.2f} s of load")
        writer = PipelinedWriter(cluster, IN_FLIGHT, log)
        writer.start()
        time.sleep(delay_s)
        killed_at = time.monotonic()
        leader.kill()
        successor = cluster.wait_leader(FAILOVER_S_MAX)
        print(f"  {successor.name} leads {time.monotonic() - killed_at:.2f} s after")
        acked_at_failover = len(log.acked)
        time.sleep(WRITING_AFTER_FAILOVER_S)
        writer.stop()
        assert successor is not leader
        assert len(log.acked) > acked_at_failover, "no write was acked after the failover"
        cluster.wait_converged(CONVERGE_S_MAX)
        check_writes(log, {node.name: node_writes(node) for node in cluster.running()})
        leader.start()
        leader.wait_up()
        cluster.wait_converged(CONVERGE_S_MAX)
    print(log.summary())
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})
