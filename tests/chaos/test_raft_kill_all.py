"""All three nodes SIGKILLed at once and restarted: every acked write is still there.

Method: under a write load (100 in flight), each trial SIGKILLs all nodes back to back, either
timed to log compaction (even trials) or at a random instant (odd trials). A timed kill watches
every node's dump file and kills the cluster the moment one is renamed into place, which is when
pysyncobj would compact its journal in place and, without the repair, lose every entry after
the dump. The dump is the store's own: msgpack, written by a forked child, read back by the
store's deserializer, the path the transport's startup repair goes through. The nodes restart
one at a time, each alone, so that no leader can exist yet. Checked first, per node, once it
loaded its dump: that did not cut its journal short (the compaction crash, which a leader would
otherwise hide by sending the entries again); each node is then paused (SIGSTOP) until all are
checked, and they resume together. Then, once they converge: every acked write is on every node,
no refused write anywhere, no write half applied, and the nodes equal.
Compaction runs every 300 entries so the timed kills find one quickly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from store.raft.config import JOURNAL_FILE_NAME
from tests.chaos.trials import time_limit, write_until_fault
from tests.integration.journal_format import journal_last_index
from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess, ticked, wait_for
from tests.integration.raft_writer import WriteLog, check_writes, node_writes

RESTART_S_MAX = 60.0

# The worst case of one trial, for the test's time limit.
TRIAL_S_MAX = 30.0


@time_limit(TRIAL_S_MAX)
def test_kill_all_and_restart_loses_no_acked_write(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster(["--log-compaction-entries", "300"])
    log = WriteLog()
    repairs = 0
    for trial in range(chaos_trials):
        write_until_fault(cluster, log, trial, chaos_random, RaftCluster.kill_all, "kill all")
        journal_ends = {node.name: journal_end(node) for node in cluster.nodes}
        # Lowest address first: a node dials only the peers of lower address (pysyncobj), which
        # then listen already, so no dial fails and waits out the library's 5 s before the next.
        for node in sorted(cluster.nodes, key=lambda node: node.address):
            start_alone_and_check_journal(node, journal_ends[node.name])
        resumed_at = time.monotonic()
        for node in cluster.nodes:
            node.resume()
        leader = cluster.wait_leader(RESTART_S_MAX)
        print(f"  {leader.name} leads {time.monotonic() - resumed_at:.2f} s after they resumed")
        cluster.wait_converged(RESTART_S_MAX)
        statuses = cluster.statuses()
        repairs += sum(s["transport"]["startup_repairs"] for s in statuses.values() if s)
        check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})
    print(f"{log.summary()}; {repairs} startup repairs")


def journal_end(node: RaftNodeProcess) -> int:
    return journal_last_index(node.data_dir / JOURNAL_FILE_NAME)


def start_alone_and_check_journal(node: RaftNodeProcess, end_before: int) -> None:
    """Start the node while the others are down or paused; once it loaded its dump (it ticked
    once), its journal must end where it did before the kill. Then pause it.

    Alone, the node can neither elect nor follow a leader, so nothing can have replaced entries
    yet: a shorter journal can only mean that the load cleared it. Once a majority runs, a
    restarted cluster elects within a normal election timeout (no node knows a leader, so the
    quiet start ends early), and the leader would send the lost entries again.
    """
    node.start()
    wait_for(lambda: _ticked(node), RESTART_S_MAX, f"{node.name} to tick once", node)
    status = node.ok("status")
    assert status["leader"] is None, f"{node.name} follows a leader already: checked too late"
    end = journal_end(node)
    assert end >= end_before, (
        f"{node.name}'s journal ended at {end_before} before the restart and at {end} after "
        "loading its dump (compaction crash)"
    )
    node.pause()


def _ticked(node: RaftNodeProcess) -> bool:
    status = node.status()
    return status is not None and ticked(status)
