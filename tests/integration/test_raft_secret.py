"""The cluster secret is mandatory (pysyncobj's wire format is pickle): a node without it
refuses to start, and a node with the wrong one cannot join the cluster."""

from __future__ import annotations

from pathlib import Path

from tests.integration.raft_cluster import RaftCluster, b64, wait_for
from tests.integration.raft_node import EXIT_CONFIG_REFUSED, kv_set


def test_a_node_without_the_secret_refuses_to_start(tmp_path: Path) -> None:
    cluster = RaftCluster(tmp_path, size=1, secret=None)
    node = cluster.nodes[0]
    node.start()
    assert node.exit_code(timeout=20) == EXIT_CONFIG_REFUSED
    assert "secret is empty" in node.log_tail()


def test_a_peer_with_a_wrong_secret_cannot_join(tmp_path: Path) -> None:
    with RaftCluster(tmp_path) as cluster:
        intruder = cluster.nodes[2]
        intruder.secret = "not-the-cluster-secret-but-as-long-as-one"
        cluster.start()
        members = cluster.nodes[:2]
        leader_status: list[str] = []

        def two_agree() -> bool:
            statuses = [n.ok("status") for n in members]
            leaders = {s["leader"] for s in statuses}
            leader_status[:] = [s for s in leaders if s is not None]
            return all(s["ready"] for s in statuses) and len(leaders) == 1 and None not in leaders

        wait_for(two_agree, 30, "a leader among the two nodes sharing the secret", *members)
        for number in range(5):
            members[number % 2].ok("propose", command=b64(kv_set("k", b"%d" % number)))
        intruder_status = intruder.ok("status")
        assert intruder_status["leader"] is None
        assert intruder_status["events"] == 0
        assert intruder.call("propose", command=b64(kv_set("x", b"1")))["error"] == "Unavailable"
        assert intruder_status["leader"] not in leader_status
