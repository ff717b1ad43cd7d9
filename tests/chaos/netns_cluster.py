"""A local tock cluster with one network namespace per node, next to the loopback one
(tests/support/local_cluster.py): node n{k} runs under `ip netns exec` in its own namespace and
serves HTTP, Raft and gRPC on its own address there, and the nodes reach each other, and the
test's app on the bridge's address, across one bridge (tests/chaos/netns.py), so a test can cut
any node off the network and heal it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster.local import LocalCluster
from tests.chaos import netns
from tests.support.local_cluster import running_cluster


@contextmanager
def netns_cluster(
    data_dir: Path, nodes: tuple[str, ...] = ("n1", "n2", "n3")
) -> Iterator[tuple[netns.Network, LocalCluster]]:
    """A ready cluster of `nodes` (n1, n2, ... in order) and its network; the cluster stops
    before the network goes, and both always go."""
    with netns.network(nodes) as net:
        hosts = tuple(net.node(node).address for node in nodes)
        with running_cluster(
            data_dir, nodes=len(nodes), node_hosts=hosts, command_prefix=net.command_prefix
        ) as cluster:
            yield net, cluster
