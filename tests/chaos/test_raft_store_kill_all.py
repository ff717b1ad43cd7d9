"""The whole store (tests/integration/raft_node.py) SIGKILLed as a dump lands: no acked loss.

Method: the store's own node processes (msgpack dump written by a forked child, read back by
the store's deserializer: the path HardenedTransport's startup repair goes through) take kv
writes in batches of 20 proposals, compacting every 300 entries. Each trial watches the dump
files and SIGKILLs every node the moment one dump is renamed into place, the window in which
pysyncobj's in-place compaction (F7) loses the journal after the dump. The nodes restart; every
write whose proposal was acknowledged must be readable on every node, and the nodes converge.
"""

from __future__ import annotations

import base64
import random
import signal
import threading
from pathlib import Path

from tests.chaos.test_raft_kill_all import wait_for_a_new_dump
from tests.integration.raft_cluster import NodeError, RaftCluster
from tests.integration.raft_node import kv_set

BATCH = 20
RESTART_S_MAX = 60.0


class BatchWriter(threading.Thread):
    """Proposes batches of distinct keys through one node until told to stop or the node dies."""

    def __init__(self, cluster: RaftCluster, trial: int) -> None:
        super().__init__(name="store-writer", daemon=True)
        self.cluster = cluster
        self.trial = trial
        self.acked: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        node = self.cluster.nodes[0]
        batch = 0
        while not self.stopping.is_set():
            keys = [f"t{self.trial}b{batch}k{i}" for i in range(BATCH)]
            commands = [base64.b64encode(kv_set(key, key.encode())).decode() for key in keys]
            try:
                answer = node.ok("propose_many", timeout=10.0, commands=commands)
            except (OSError, NodeError, ValueError):
                return
            self.acked += [k for k, r in zip(keys, answer["results"], strict=True) if r["ok"]]
            batch += 1


def kill_all_at_once(cluster: RaftCluster) -> None:
    processes = [node.process for node in cluster.running() if node.process is not None]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait(10)


def test_store_killed_as_a_dump_lands_keeps_every_acked_write(
    tmp_path: Path, chaos_trials: int, chaos_random: random.Random
) -> None:
    with RaftCluster(tmp_path, extra_args=["--log-compaction-entries", "300"]) as cluster:
        cluster.start()
        acked: list[str] = []
        for trial in range(chaos_trials):
            cluster.wait_leader(RESTART_S_MAX)
            writer = BatchWriter(cluster, trial)
            writer.start()
            dumped = wait_for_a_new_dump(cluster.nodes, "raft.dump")
            kill_all_at_once(cluster)
            writer.stopping.set()
            writer.join(timeout=30)
            print(f"trial {trial}: killed all as node {dumped} renamed its dump into place")
            acked += writer.acked
            for node in cluster.nodes:
                node.start()
            cluster.wait_converged(RESTART_S_MAX)
            sample = chaos_random.sample(acked, min(len(acked), 2000))
            for node in cluster.nodes:
                values = node.ok("get", keys=sample)["values"]
                lost = [key for key in sample if values[key] is None]
                assert not lost, f"{node.name} lost {len(lost)} acked writes, e.g. {lost[:5]}"
        print(f"acked {len(acked)} writes in {chaos_trials} trials")
