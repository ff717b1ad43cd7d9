"""The partition harness itself (tests/chaos/netns.py): namespaces that are made and removed
whole, cuts that really cut, leftovers of a killed run cleaned, and a cluster whose nodes each
serve on their own address only, Raft included, reached across the bridge and nowhere else."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from tests.chaos import netns

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
ROOT = Path(__file__).resolve().parents[2]
# Long enough for one lost SYN to be sent again (after 1 s): what is reachable connects.
CONNECT_TIMEOUT_S = 3.0
# What is cut off is known not to connect sooner.
CUT_OFF_TIMEOUT_S = 1.0


def connects(address: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    try:
        socket.create_connection((address, port), timeout_s).close()
    except OSError:
        return False
    return True


def pieces(k: int) -> set[str]:
    """Every namespace and link of network k that exists now."""
    names = set(netns.ip("netns", "list").split())
    names |= {link["ifname"] for link in json.loads(netns.ip("-j", "link", "show"))}
    return {name for name in names if name.startswith((f"tock{k}-", f"tock{k}n", f"tock{k}br"))}


def listen_in(net: netns.Network, node: str) -> socket.socket:
    """A listening socket on the node's address (a free port), made inside its namespace."""
    return net.run_in(node, lambda: socket.create_server((net.node(node).address, 0)))


def test_a_cut_node_reaches_and_is_reached_by_nobody_until_healed(
    network: netns.Network,
) -> None:
    n1 = network.node("n1").address
    assert len(pieces(network.k)) == 1 + 3 + 3, "a bridge, three namespaces, three veths"
    with listen_in(network, "n1") as server:
        port = server.getsockname()[1]
        assert connects(n1, port), "the root namespace reaches n1 across the bridge"
        assert network.run_in("n2", lambda: connects(n1, port)), "so does n2"
        assert not connects("127.0.0.1", port), "n1 listens in its own namespace only"
        network.cut("n1")
        assert not connects(n1, port, CUT_OFF_TIMEOUT_S)
        assert not network.run_in("n2", lambda: connects(n1, port, CUT_OFF_TIMEOUT_S))
        assert not network.run_in(
            "n1", lambda: connects(network.bridge_address, port, CUT_OFF_TIMEOUT_S)
        )
        assert network.run_in("n1", lambda: connects(n1, port)), "n1 still reaches itself"
        network.heal("n1")
        assert connects(n1, port)
        assert network.run_in("n2", lambda: connects(n1, port))


def test_the_network_of_a_killed_run_is_removed_by_the_next() -> None:
    script = (
        "import sys, time\n"
        "from tests.chaos import netns\n"
        "with netns.network(['n1', 'n2']) as net:\n"
        "    print(net.k, flush=True)\n"
        "    time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        try:
            assert owner.stdout is not None
            k = int(owner.stdout.readline())
            assert pieces(k), "the run made its network"
            assert k not in netns.remove_leftovers(), "a live run's network is not a leftover"
            owner.send_signal(signal.SIGKILL)
            owner.wait(10)
            assert k in netns.remove_leftovers()
            assert not pieces(k)
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.wait(10)
            netns.remove_leftovers()


def test_each_node_serves_on_its_own_address_only_and_raft_is_reached_across_the_bridge(
    netns_cluster: tuple[netns.Network, LocalCluster],
) -> None:
    net, cluster = netns_cluster
    for node in cluster.nodes:
        assert node.pid is not None
        own = os.stat(f"/proc/{node.pid}/ns/net").st_ino
        assert own == os.stat(f"/run/netns/{net.node(node.node_id).namespace}").st_ino, (
            f"{node.node_id}'s pid is the node itself, in its namespace"
        )
        for address in (node.http, node.raft, node.grpc):
            host, port = address.rsplit(":", 1)
            assert host == net.node(node.node_id).address
            assert connects(host, int(port)), f"{address} is reached across the bridge"
            on_loopback = functools.partial(connects, "127.0.0.1", int(port))
            assert not net.run_in(node.node_id, on_loopback), (
                f"{node.node_id} listens on its own address only, not on its loopback too"
            )
    host, port = cluster.node("n1").raft.rsplit(":", 1)
    assert net.run_in("n2", lambda: connects(host, int(port)))
    net.cut("n1")
    try:
        assert not net.run_in("n2", lambda: connects(host, int(port), CUT_OFF_TIMEOUT_S))
        assert not connects(host, int(port), CUT_OFF_TIMEOUT_S)
    finally:
        net.heal("n1")
    assert net.run_in("n2", lambda: connects(host, int(port)))
    cluster.wait_ready()
