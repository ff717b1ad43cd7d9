"""Every node loses power at once, under write load: every acknowledged write survives.

Method: each node records its disk operations (TOCK_TEST_DISK_LOG, store/raft/disk.py). Under a
write load (100 in flight), each trial cuts the power of all three nodes at once (SIGKILL to each
node's process group, its dump child included), either the moment a node renames a dump into
place, when compaction rewrites the journal (even trials), or at a random instant (odd trials).
Each node's Raft files are then rolled back to what a machine keeps after power loss: only what
was fsynced, names only where their directory was fsynced, and in half the nodes a torn part of
the next write (tests/chaos/power_loss.py). The nodes restart. Checked: every node starts, every
acknowledged write is on every node, no refused write anywhere, the nodes converge.
Compaction runs every 300 entries so the timed trials meet one quickly.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.chaos.power_loss import power_off
from tests.chaos.trials import time_limit, write_until_fault
from tests.integration.raft_cluster import RaftCluster
from tests.integration.raft_writer import WriteLog, check_writes, node_writes

RESTART_S_MAX = 60.0
DISK_LOG = "disk-operations.log"

# The worst case of one trial, for the test's time limit.
TRIAL_S_MAX = 40.0


def cut_power(cluster: RaftCluster) -> None:
    """SIGKILL every node's process group back to back, then reap the nodes."""
    processes = [n.process for n in cluster.nodes if n.running and n.process is not None]
    for process in processes:
        os.killpg(process.pid, signal.SIGKILL)
    for process in processes:
        process.wait(10)


@time_limit(TRIAL_S_MAX)
def test_power_loss_of_every_node_loses_no_acked_write(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster(["--log-compaction-entries", "300"])
    # Recording starts with the next start of each node: restart them with it.
    cluster.stop()
    for node in cluster.nodes:
        node.env["TOCK_TEST_DISK_LOG"] = str(node.data_dir.parent / f"{node.name}-{DISK_LOG}")
    cluster.start()
    log = WriteLog()
    torn_files = 0
    for trial in range(chaos_trials):
        write_until_fault(cluster, log, trial, chaos_random, cut_power, "power off")
        for node in cluster.nodes:
            on_disk = {p.name: p.stat().st_size for p in node.data_dir.glob("raft.*")}
            torn = chaos_random.random() < 0.5
            image = power_off(Path(node.env["TOCK_TEST_DISK_LOG"]), chaos_random, torn)
            kept = {os.path.basename(p): len(c) for p, c in image.files.items() if c is not None}
            changed = {
                name: f"{on_disk.get(name)}->{kept.get(name)}"
                for name in on_disk.keys() | kept.keys()
                if on_disk.get(name) != kept.get(name)
            }
            print(f"  {node.name}: bytes kept {kept}; changed by power loss {changed}")
            torn_files += bool(image.torn)
        restarted_at = time.monotonic()
        cluster.start()
        leader = cluster.wait_leader(RESTART_S_MAX)
        print(f"  {leader.name} leads {time.monotonic() - restarted_at:.2f} s after the restart")
        cluster.wait_converged(RESTART_S_MAX)
        check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})
    print(f"{log.summary()}; {torn_files} torn files")
