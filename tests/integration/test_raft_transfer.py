"""Leadership transfer on three real node processes: a leader that asks to hand leadership on
(as one whose clock is off does, cluster/membership.py) stops leading within a couple of
seconds, even when it asks right after proposing an entry no follower holds yet, and while a
writer keeps entries coming through it. pysyncobj sends Raft's TimeoutNow only to a follower
that holds the leader's whole log and refuses otherwise; the store asks again until it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess, b64, wait_for
from tests.integration.raft_node import kv_set
from tests.integration.raft_writer import PipelinedWriter, check_writes, node_writes

# A TimeoutNow elects its receiver in one round trip; the rest is the followers catching up.
HANDED_ON_S_MAX = 5.0
TRANSFERS = 3
WRITES_IN_FLIGHT = 16
# The value of the test's own entry: an int, as the writer's checks read every value, and no
# write id the writer issues.
OWN_VALUE = b"-1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RaftCluster]:
    with RaftCluster(tmp_path) as started:
        started.start()
        started.wait_leader()
        yield started


def hand_on(cluster: RaftCluster, leader: RaftNodeProcess, key: str) -> RaftNodeProcess:
    """Ask `leader` to transfer right after a proposal of its own; the leader after it."""
    leader.ok("propose_and_transfer", command=b64(kv_set(key, OWN_VALUE)))
    after: list[RaftNodeProcess] = []

    def another_leads() -> bool:
        statuses = [n.status() for n in cluster.nodes]
        leaders = {s["leader"] for s in statuses if s is not None}
        after[:] = [n for n in cluster.nodes if {n.address} == leaders and n is not leader]
        return bool(after)

    wait_for(another_leads, HANDED_ON_S_MAX, f"{leader.name} to hand leadership on", *cluster.nodes)
    return after[0]


def test_a_leader_asked_to_transfer_right_after_a_proposal_stops_leading(
    cluster: RaftCluster,
) -> None:
    leader = cluster.wait_leader()
    for transfer in range(TRANSFERS):
        successor = hand_on(cluster, leader, f"transfer-{transfer}")
        print(f"transfer {transfer}: {leader.name} -> {successor.name}")
        leader = cluster.wait_leader()
    cluster.wait_converged()


def test_a_leader_hands_on_while_writes_keep_coming(cluster: RaftCluster) -> None:
    leader = cluster.wait_leader()
    writer = PipelinedWriter(cluster, WRITES_IN_FLIGHT, prefer=leader)
    writer.start()
    try:
        successor = hand_on(cluster, leader, "under-load")
        print(f"under load: {leader.name} -> {successor.name}")
    finally:
        log = writer.stop()
    cluster.wait_converged()
    assert log.acked, "the writer committed nothing"
    writes = {node.name: node_writes(node) for node in cluster.nodes}
    for data in writes.values():
        assert data.pop("under-load") == int(OWN_VALUE)
    check_writes(log, writes)
