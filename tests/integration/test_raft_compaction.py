"""Log compaction with msgpack dumps: a node that missed compacted entries catches up from the
leader's dump, and every node restarts from its own dump plus journal with nothing lost."""

from __future__ import annotations

from pathlib import Path

from tests.integration.raft_cluster import RaftCluster, b64, wait_for
from tests.integration.raft_node import kv_incr

# Compact every 20 entries; one command per entry so that 300 commands make 300 entries.
COMPACTING = ["--log-compaction-entries", "20", "--batch-commands-max", "1"]


def test_a_node_restarted_after_compaction_catches_up_fully(tmp_path: Path) -> None:
    with RaftCluster(tmp_path, extra_args=COMPACTING) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        lagging = next(n for n in cluster.nodes if n is not leader)
        lagging.stop()
        commands = [b64(kv_incr(f"k{i % 7}", 1)) for i in range(300)]
        results = leader.ok("propose_many", commands=commands, timeout=30)["results"]
        assert all(r["ok"] for r in results)
        live = [n for n in cluster.nodes if n is not lagging]

        def compacted() -> bool:
            statuses = [n.ok("status") for n in live]
            return all(s["snapshot_index"] > 200 and s["log_entries"] < 100 for s in statuses)

        wait_for(compacted, 30, "compaction on the live nodes", *live)
        assert (Path(leader.data_dir) / "raft.dump").exists()
        assert not (Path(lagging.data_dir) / "raft.dump").exists()

        lagging.start()
        lagging.wait_up()
        caught_up = cluster.wait_converged(timeout=30)
        assert caught_up["applied_index"] > 300
        # It installed the leader's dump, and its subscribers heard so (no command told them).
        assert lagging.ok("status")["restores"] == 1

        cluster.stop()
        cluster.start()
        cluster.wait_leader()
        restarted = cluster.wait_converged(timeout=30)
        assert restarted["digest"] == caught_up["digest"]
        assert restarted["applied_index"] >= caught_up["applied_index"]
        values = leader.ok("get", keys=[f"k{i}" for i in range(7)])["values"]
        assert sum(values.values()) == 300
