"""Group commit: one fdatasync per batch of entries, no message sent before the sync covering it.

Method: a cluster of the real store whose nodes run with --audit-io (raft_io_audit.py wraps
os.fdatasync and the Raft connections' send inside each node process and checks them as the
tick thread goes) takes 3000 writes through the leader, one command per entry and up to 200
entries in flight (so that entries, not the store's batches, are what gets grouped). Checked:
- every success ack a follower sends covers only indexes its journal had synced before;
- every AppendEntries the leader sends carries only entries its journal had synced before;
- every sync hits the node's own journal file;
- syncs are far fewer than entries (group commit, not a sync per entry).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.integration.raft_cluster import RaftCluster, b64
from tests.integration.raft_node import kv_set

WRITES = 3000
IN_FLIGHT = 200
WRITES_S_MAX = 60.0
# Let the last acks and heartbeats go out before reading the audits.
SETTLE_S = 0.3
AUDITED = [
    "--audit-io",
    "--batch-commands-max=1",
    f"--entries-in-flight-max={IN_FLIGHT}",
    "--log-compaction-entries=1000000",
]


def test_group_commit_syncs_once_per_batch_before_sending(
    make_cluster: Callable[..., RaftCluster],
) -> None:
    cluster = make_cluster(AUDITED)
    leader = cluster.wait_leader()
    commands = [b64(kv_set(f"k{key}", b"%d" % key)) for key in range(WRITES)]
    results = leader.ok("propose_many", timeout=WRITES_S_MAX, commands=commands)
    assert all(result["ok"] for result in results["results"]), "some writes failed"
    cluster.wait_converged()
    time.sleep(SETTLE_S)
    entries = leader.ok("status")["commit_index"]
    for node in cluster.nodes:
        audit: dict[str, Any] = node.ok("status")["io_audit"]
        role = "leader" if node is leader else "follower"
        print(f"{node.name} ({role}): {audit}, {entries} entries")
        assert audit["violations"] == 0, f"{node.name}: {audit['examples']}"
        assert audit["syncs"] > 0
        # A follower syncs once per poll that delivered entries, so its ratio depends on how
        # busy the machine is; a sync per entry would still fail this by a factor of two.
        syncs_max = entries // 10 if node is leader else entries // 2
        assert audit["syncs"] < syncs_max, f"{node.name}: {audit['syncs']} syncs: not grouped"
        if node is leader:
            assert audit["shipped"] >= 2 * (entries - 2), "the leader shipped fewer than committed"
        else:
            assert audit["acks"] > 0
