"""Three real node processes: one owner per partition in every view, owners fire what they own.

Method: one cluster for the module (the tests only read it or add jobs). Every node's
/admin/cluster must describe the same epoch with the same members, all live, whose partition
counts sum to 1024 and match the ring rebuilt from the live set; jobs spread over the
partitions must each be delivered by the owner the ring names (the `tock-node` header); `tock
status` prints that view as a table; and no status poll ever shows two leaders in one term.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from tests.support.cluster_watch import (
    PARTITIONS,
    ElectionLog,
    create_job,
    owner_of,
    owners,
    register_app,
)
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink

NODES = ["n1", "n2", "n3"]
AGREE_TIMEOUT_S = 20.0
FIRE_TIMEOUT_S = 15.0
JOBS = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("ownership")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


def test_every_partition_has_exactly_one_owner_in_every_view(cluster: LocalCluster) -> None:
    log = ElectionLog()
    views = log.agreed(cluster, NODES, AGREE_TIMEOUT_S)
    table = owners(next(iter(views.values())))
    assert len(table) == PARTITIONS
    assert set(table) == set(NODES)
    expected = Counter(table)
    for node_id, view in views.items():
        counts = {member["id"]: member["partitions"] for member in view["members"]}
        assert counts == expected, node_id
        assert sum(counts.values()) == PARTITIONS
        assert view["partitions"] == expected[node_id]
        assert view["node"] == node_id
    log.assert_one_leader_per_term()


def test_each_job_is_delivered_by_the_owner_of_its_partition(
    cluster: LocalCluster, sink: Sink
) -> None:
    log = ElectionLog()
    views = log.agreed(cluster, NODES, AGREE_TIMEOUT_S)
    register_app(cluster.node("n1").url, sink.url)
    names = [f"own-{k}" for k in range(JOBS)]
    for k, name in enumerate(names):
        create_job(cluster.nodes[k % len(NODES)].url, name, dueTime="1s")
    view = next(iter(views.values()))
    expected = {name: owner_of(view, name) for name in names}
    assert len(set(expected.values())) == len(NODES), "the jobs should reach every node"
    for name in names:
        calls = sink.wait_for(name, 1, FIRE_TIMEOUT_S)
        assert [call.headers.get("tock-node") for call in calls] == [expected[name]], name
    after = log.agreed(cluster, NODES, AGREE_TIMEOUT_S)
    assert {v["epoch"] for v in after.values()} == {view["epoch"]}, "no epoch change expected"
    log.assert_one_leader_per_term()


def test_tock_status_prints_the_cluster_as_a_table(cluster: LocalCluster) -> None:
    views = ElectionLog().agreed(cluster, NODES, AGREE_TIMEOUT_S)
    node = cluster.node("n2")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "node.cli", "status", "--node", node.url),
            *("--admin-token-file", str(cluster.admin_token_file)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    view = views["n2"]
    assert ["node", "n2"] in rows
    assert ["epoch", str(view["epoch"])] in rows
    for m in view["members"]:
        assert [m["id"], m["http"], m["raft"], "yes", str(m["partitions"])] in rows, rows
