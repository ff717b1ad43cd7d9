"""Leader SIGKILLed under a steady write load: a new leader takes over at once and nothing acked is
lost; a leader only paused is replaced by the election timeout, as before (store/raft/transport.py
section 10: a follower whose connection to its leader closes campaigns early).

Method: a 3-node cluster of the real store takes writes of two keys each (50 in flight, one
command per write) through whichever node runs.
- killed: each trial SIGKILLs the current leader at a random instant, waits for the two survivors
  to agree on a new leader, keeps writing, then checks the survivors: every acked write present
  on both, no refused write anywhere, every write wholly present or wholly absent, both equal.
  The kernel closed the leader's sockets, so a survivor must have brought its campaign forward
  (`leader_lost_campaigns`); how long the election took is printed, not asserted (`scripts/bench
  failover` measures it). The old leader then restarts and must converge with them before the
  next trial.
- paused: each trial SIGSTOPs the leader for longer than the longest election timeout, then
  SIGCONTs it. Its connections stay open: no survivor counts an early campaign, they elect by
  the timeout, and the old leader follows the new one once it resumes.
The seed is printed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from store.raft.config import RaftTuning
from tests.chaos.trials import time_limit
from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess
from tests.integration.raft_writer import PipelinedWriter, WriteLog, check_writes, node_writes

IN_FLIGHT = 50
FAILOVER_S_MAX = 15.0
CONVERGE_S_MAX = 60.0
# Writes go on this long under the new leader (entries of the old leader's term that it holds
# commit with its own before the nodes' states are compared).
WRITING_AFTER_FAILOVER_S = 1.0
# Longer than any election timeout: the survivors must have elected by the timeout meanwhile.
PAUSE_S = RaftTuning().election_timeout_s_max + 1.0

# How long a node's status may take to answer right after a failover on a loaded machine.
STATUS_S_MAX = 15.0

# The worst case of one trial, for the test's time limit.
TRIAL_S_MAX = 40.0


def early_campaigns(nodes: list[RaftNodeProcess]) -> int:
    """Summed over the nodes; a node busy catching up may take a few status calls to answer."""
    total = 0
    for node in nodes:
        deadline = time.monotonic() + STATUS_S_MAX
        status = node.status()
        while status is None and time.monotonic() < deadline:
            status = node.status()
        assert status is not None, f"{node.name} does not answer"
        total += int(status["transport"]["leader_lost_campaigns"])
    return total


def leader_under_load(
    cluster: RaftCluster, log: WriteLog, chaos_random: random.Random, to_leader: bool
) -> tuple[RaftNodeProcess, list[RaftNodeProcess], int, PipelinedWriter]:
    """The leader, the others, their early campaigns so far, and a writer that has written for
    a random while (to every node in turn, or to the others only)."""
    leader = cluster.wait_leader()
    others = [node for node in cluster.nodes if node is not leader]
    campaigns = early_campaigns(others)
    delay_s = chaos_random.uniform(0.5, 1.5)
    print(f"{leader.name} leads; writing for {delay_s:.2f} s")
    writer = PipelinedWriter(cluster, IN_FLIGHT, log, prefer=None if to_leader else others[0])
    writer.start()
    time.sleep(delay_s)
    return leader, others, campaigns, writer


@time_limit(TRIAL_S_MAX)
def test_leader_sigkill_under_load_loses_no_acked_write(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    log = WriteLog()
    for trial in range(chaos_trials):
        print(f"trial {trial}: kill the leader")
        leader, survivors, campaigns_before, writer = leader_under_load(
            cluster, log, chaos_random, to_leader=True
        )
        killed_at = time.monotonic()
        leader.kill()
        successor = cluster.wait_leader(FAILOVER_S_MAX)
        elected_s = time.monotonic() - killed_at
        acked_at_failover = len(log.acked)
        time.sleep(WRITING_AFTER_FAILOVER_S)
        writer.stop()
        campaigns = early_campaigns(survivors) - campaigns_before
        print(f"  {successor.name} leads {elected_s:.2f} s after, {campaigns} early campaigns")
        assert successor is not leader
        assert campaigns >= 1, "no survivor noticed that the leader's connection closed"
        assert len(log.acked) > acked_at_failover, "no write was acked after the failover"
        cluster.wait_converged(CONVERGE_S_MAX)
        check_writes(log, {node.name: node_writes(node) for node in cluster.running()})
        leader.start()
        leader.wait_up()
        cluster.wait_converged(CONVERGE_S_MAX)
    print(log.summary())
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})


@time_limit(TRIAL_S_MAX)
def test_a_paused_leader_is_replaced_by_the_timeout_only(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    log = WriteLog()
    for trial in range(chaos_trials):
        print(f"trial {trial}: pause the leader")
        leader, survivors, campaigns_before, writer = leader_under_load(
            cluster, log, chaos_random, to_leader=False
        )
        leader.pause()
        try:
            time.sleep(PAUSE_S)
            named = {
                status["leader"] for status in map(RaftNodeProcess.status, survivors) if status
            }
        finally:
            leader.resume()
        successor = cluster.wait_leader(FAILOVER_S_MAX)
        time.sleep(WRITING_AFTER_FAILOVER_S)
        writer.stop()
        campaigns = early_campaigns(survivors) - campaigns_before
        print(
            f"  paused {leader.name} {PAUSE_S:.1f} s; the survivors named "
            f"{sorted(map(str, named))} meanwhile, {successor.name} leads after, "
            f"{campaigns} early campaigns"
        )
        assert campaigns == 0, "a paused leader's open connections were taken for its death"
        assert leader.address not in named, "the survivors still followed the paused leader"
        cluster.wait_converged(CONVERGE_S_MAX)
    print(log.summary())
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})
