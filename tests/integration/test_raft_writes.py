"""Three real node processes on 127.0.0.1: writes through any node are applied on every node,
in the same order; batching packs concurrent proposals into few entries; a 1 MiB command is
applied whole while every journal entry stays under 32 KiB (pysyncobj corrupts larger ones)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from store.raft.config import ENTRY_BYTES_CEILING, JOURNAL_FILE_NAME
from tests.integration.journal_format import journal_entry_sizes
from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess, b64, wait_for
from tests.integration.raft_node import kv_incr, kv_set


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaftCluster]:
    with RaftCluster(tmp_path_factory.mktemp("raft")) as started:
        started.start()
        started.wait_leader()
        yield started


def test_writes_through_any_node_are_applied_on_all(cluster: RaftCluster) -> None:
    for number, node in enumerate(cluster.nodes):
        answer = node.ok("propose", command=b64(kv_set(f"via-{node.name}", b"%d" % number)))
        assert isinstance(answer["result"], int)
    final = cluster.wait_converged()
    assert final["events_in_order"]
    for node in cluster.nodes:
        values = node.ok("get", keys=[f"via-{n.name}" for n in cluster.nodes])["values"]
        assert [base64.b64decode(v) for v in values.values()] == [b"0", b"1", b"2"]
    statuses = [node.ok("status") for node in cluster.nodes]
    assert len({s["events"] for s in statuses}) == 1
    assert all(s["events_in_order"] for s in statuses)


def test_concurrent_proposals_share_few_entries_and_get_their_own_results(
    cluster: RaftCluster,
) -> None:
    follower = next(n for n in cluster.nodes if n.ok("status")["role"] == "follower")
    before = follower.ok("status")
    commands = [b64(kv_incr("batched", 1)) for _ in range(1000)]
    results = follower.ok("propose_many", commands=commands, timeout=20)["results"]
    after = follower.ok("status")
    assert all(r["ok"] for r in results)
    # Each caller sees the counter value its own increment produced: all distinct.
    values = sorted(r["result"] for r in results)
    assert values == list(range(values[0], values[0] + 1000))
    entries = after["entries_proposed"] - before["entries_proposed"]
    assert entries <= 1000 // 10, f"{entries} entries for 1000 commands"
    cluster.wait_converged()


def holds_no_assembly(node: RaftNodeProcess) -> bool:
    return bool(node.ok("status")["chunk_assemblies"] == 0)


def test_a_one_mib_command_is_applied_whole_with_every_entry_under_32_kib(
    cluster: RaftCluster,
) -> None:
    payload = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    proposer = cluster.nodes[2]
    answer = proposer.ok("propose", command=b64(kv_set("big", payload)), timeout=30)
    assert isinstance(answer["result"], int)
    cluster.wait_converged()
    for node in cluster.nodes:
        value = node.ok("get", keys=["big"])["values"]["big"]
        assert base64.b64decode(value) == payload
        # The status is a copy the tick thread refreshes every 20 ms: on a loaded machine it
        # may still show the assembly the last chunk has just completed.
        wait_for(partial(holds_no_assembly, node), 10.0, f"{node.name} assemblies", node)
        sizes = journal_entry_sizes(Path(node.data_dir) / JOURNAL_FILE_NAME)
        assert sum(sizes) > len(payload), "the chunks are in the journal"
        assert max(sizes) < ENTRY_BYTES_CEILING
    assert proposer.ok("status")["entry_bytes_largest"] < ENTRY_BYTES_CEILING


def test_a_barrier_sees_writes_acknowledged_through_another_node(cluster: RaftCluster) -> None:
    writer, reader = cluster.nodes[0], cluster.nodes[1]
    for number in range(20):
        writer.ok("propose", command=b64(kv_set("fresh", b"%d" % number)))
        value = reader.ok("get", keys=["fresh"], barrier=True)["values"]["fresh"]
        assert base64.b64decode(value) == b"%d" % number
