"""Files that hold payloads, tokens or secrets are 0600 in 0700 directories, as real nodes write
them: the journal, its meta file, a dump written by a forked child, a dump received from the
leader, the cluster secret and the node logs of `tock up`; and wider modes left by an older
version are tightened at start."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess, b64, wait_for
from tests.integration.raft_node import kv_incr
from tests.support.local_cluster import running_cluster

# Compact every 20 entries; one command per entry so that 300 commands make 300 entries.
COMPACTING = ["--log-compaction-entries", "20", "--batch-commands-max", "1"]
RAFT_FILES = ("raft.journal", "raft.journal.meta", "raft.dump")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def raft_file_modes(directory: Path) -> dict[str, int]:
    """The directory's mode under '.', and the mode of every file the store wrote in it."""
    modes = {
        path.name: mode_of(path) for path in directory.iterdir() if path.name.startswith("raft.")
    }
    return {".": mode_of(directory), **modes}


def assert_private(node: RaftNodeProcess) -> None:
    modes = raft_file_modes(node.data_dir)
    assert set(RAFT_FILES) <= set(modes), f"{node.name} lacks files: {modes}"
    assert modes == {".": 0o700, **dict.fromkeys(set(modes) - {"."}, 0o600)}, node.name


def test_journal_meta_and_dumps_are_private_and_wider_ones_are_tightened(tmp_path: Path) -> None:
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
            return all(n.ok("status")["snapshot_index"] > 200 for n in live)

        wait_for(compacted, 30, "dumps written by the live nodes", *live)
        # The lagging node has fewer entries than a compaction needs: its dump is the leader's.
        lagging.start()
        lagging.wait_up()
        cluster.wait_converged(timeout=30)
        assert lagging.ok("status")["snapshot_index"] > 200
        for node in cluster.nodes:
            assert_private(node)

        cluster.stop()
        for node in cluster.nodes:
            os.chmod(node.data_dir, 0o755)
            for name in RAFT_FILES:
                os.chmod(node.data_dir / name, 0o644)
        cluster.start()
        cluster.wait_leader()
        for node in cluster.nodes:
            assert_private(node)


def test_tock_up_keeps_its_data_directory_secret_and_logs_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "tock"
    data_dir.mkdir(mode=0o755)
    secret = data_dir / "secret"
    secret.write_text(secrets.token_urlsafe(32))
    secret.chmod(0o644)
    with running_cluster(data_dir, nodes=1):
        node_dir = data_dir / "n1"
        assert mode_of(data_dir) == 0o700
        assert mode_of(secret) == 0o600
        assert mode_of(node_dir) == 0o700
        assert mode_of(node_dir / "node.log") == 0o600
        modes = raft_file_modes(node_dir / "raft")
        assert {"raft.journal", "raft.journal.meta"} <= set(modes)
        assert modes == {".": 0o700, **dict.fromkeys(set(modes) - {"."}, 0o600)}
