"""Real network partitions: one network namespace per node, joined by a bridge, each cut off
and healed by setting its link down and up.

Layout of one network (k is its number, 0..511):
- a bridge `tock{k}br` in the root namespace, address 198.18.{k}.1 in the benchmarking range
  198.18.0.0/15 (k over 255 continues into 198.19), where the test's app listens;
- per node `n{i}` a namespace `tock{k}-n{i}` holding its own loopback and one end of a veth pair,
  `tock{k}n{i}p`, with the address 198.18.{k}.{10 + i}/24; the other end, `tock{k}n{i}`, is a
  port of the bridge. Nothing else is routed: a node reaches the bridge's subnet and its own
  loopback, no other address.

`cut(node)` sets both ends of the node's veth down. With the namespace's end down its route to
the subnet is gone, so what the node sends fails at once (ENETUNREACH) instead of waiting in a
queue, and with the bridge's end down nothing reaches it; TCP data already in flight is
retransmitted once the link is back, as on a real network. `heal(node)` sets both ends up again.

Each network belongs to one test process: the bridge is created first and carries the owner's
pid in its alias, so creating it is the lock on k (a second process finds it taken and moves
on), and everything of a network whose owner is dead is a leftover of a crashed run, removed
before a new network is made. `network(...)` removes everything it created, even when the test
fails. It needs root and /usr/sbin/ip.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

T = TypeVar("T")
IP = "/usr/sbin/ip"
BENCHMARK_RANGE = IPv4Network("198.18.0.0/15")
NETWORKS = 512
# Workers of one pytest-xdist run start their search this far apart, so they rarely meet.
NETWORKS_PER_WORKER = 64
BRIDGE_HOST = 1
NODE_HOST_BASE = 10
OWNER_PREFIX = "tock chaos pid "
IP_TIMEOUT_S = 10.0
LINK_UP_TIMEOUT_S = 5.0
LINK_POLL_S = 0.01
CLONE_NEWNET = 0x40000000
_NODE_NAME = re.compile(r"n\d{1,2}")
_BRIDGE = re.compile(r"^tock(\d+)br$")
_NAMESPACE = re.compile(r"^tock(\d+)-")
_VETH = re.compile(r"^tock(\d+)n\d+$")


class NetnsError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; its output. A failure raises NetnsError unless `check` is False."""
    done = subprocess.run(
        [IP, *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class NetNode:
    name: str
    namespace: str
    address: str
    # The veth end on the bridge (root namespace), and the one inside the namespace.
    host_veth: str
    peer_veth: str


class Network:
    """The namespaces, bridge and veth pairs of one test run; build with `network(...)`."""

    def __init__(self, k: int, names: Sequence[str]) -> None:
        # Interface names hold 15 characters at most, and leftovers are found by their form.
        if bad := [name for name in names if not _NODE_NAME.fullmatch(name)]:
            raise ValueError(f"node names are n1..n99, not {bad}")
        self.k = k
        self.subnet = IPv4Network((int(BENCHMARK_RANGE.network_address) + 256 * k, 24))
        self.bridge = f"tock{k}br"
        self.bridge_address = str(self.subnet[BRIDGE_HOST])
        self.nodes = {
            name: NetNode(
                name=name,
                namespace=f"tock{k}-{name}",
                address=str(self.subnet[NODE_HOST_BASE + i]),
                host_veth=f"tock{k}{name}",
                peer_veth=f"tock{k}{name}p",
            )
            for i, name in enumerate(names, start=1)
        }

    def node(self, name: str) -> NetNode:
        return self.nodes[name]

    def command_prefix(self, name: str) -> list[str]:
        """What runs a command inside the node's namespace. `ip netns exec` execs it, so the
        process keeps the pid it was started with and signals by pid reach it."""
        return [IP, "netns", "exec", self.node(name).namespace]

    def cut(self, name: str) -> None:
        """Both ends down: at once, nothing leaves the node and nothing reaches it."""
        node = self.node(name)
        ip("link", "set", node.host_veth, "down")
        ip("-n", node.namespace, "link", "set", node.peer_veth, "down")

    def heal(self, name: str) -> None:
        """Both ends up, and back only once the kernel says so: the carrier comes on later,
        from a kernel work queue, and until then the link still drops what it is given."""
        node = self.node(name)
        ip("-n", node.namespace, "link", "set", node.peer_veth, "up")
        ip("link", "set", node.host_veth, "up")
        deadline = time.monotonic() + LINK_UP_TIMEOUT_S
        while not (_up(node.host_veth) and _up(node.peer_veth, node.namespace)):
            if time.monotonic() >= deadline:
                raise NetnsError(f"{name}'s link not up within {LINK_UP_TIMEOUT_S} s")
            time.sleep(LINK_POLL_S)

    def run_in(self, name: str, action: Callable[[], T]) -> T:
        """Run `action` in a thread of this process that has entered the node's namespace, so
        its sockets are the node's neighbours' (a client on the node's side of a cut)."""
        result: list[T] = []
        errors: list[BaseException] = []

        def enter_and_run() -> None:
            try:
                _enter_namespace(self.node(name).namespace)
                result.append(action())
            except BaseException as error:  # handed to the caller's thread
                errors.append(error)

        # The thread ends with the namespace it entered; no other code ever runs on it.
        thread = threading.Thread(target=enter_and_run, name=f"in-{name}", daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return result[0]

    def build(self) -> None:
        """Everything but the bridge (made first, as the lock): namespaces, veths, addresses."""
        ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for node in self.nodes.values():
            ip("netns", "add", node.namespace)
            ip("-n", node.namespace, "link", "set", "lo", "up")
            ip("link", "add", node.host_veth, "type", "veth", "peer", "name", node.peer_veth)
            ip("link", "set", node.peer_veth, "netns", node.namespace)
            ip("link", "set", node.host_veth, "master", self.bridge, "up")
            ip("-n", node.namespace, "addr", "add", f"{node.address}/24", "dev", node.peer_veth)
            ip("-n", node.namespace, "link", "set", node.peer_veth, "up")

    def teardown(self) -> None:
        """Remove what the network may hold, whatever exists of it, bridge (the lock) last."""
        remove(self.k)


def unavailable() -> str | None:
    """Why this machine cannot make networks (not root, no `ip`), or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.access(IP, os.X_OK):
        return f"no {IP}"
    return None


def _enter_namespace(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def remove(k: int) -> None:
    """Delete network k's veths (synchronously: a deleted namespace frees its devices only
    later), then its namespaces, then its bridge. Missing pieces are skipped."""
    for link in _links():
        if (match := _VETH.match(link["ifname"])) and int(match[1]) == k:
            ip("link", "del", link["ifname"], check=False)
    for namespace in _namespaces():
        if (match := _NAMESPACE.match(namespace)) and int(match[1]) == k:
            ip("netns", "del", namespace, check=False)
    ip("link", "del", f"tock{k}br", check=False)


def _up(link: str, namespace: str | None = None) -> bool:
    where = ["-n", namespace] if namespace else []
    shown: list[dict[str, str]] = json.loads(ip(*where, "-j", "link", "show", "dev", link))
    return shown[0].get("operstate") == "UP"


def _links() -> list[dict[str, str]]:
    links: list[dict[str, str]] = json.loads(ip("-j", "link", "show") or "[]")
    return links


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owners() -> dict[int, int | None]:
    """Every network's owner pid by k (None: the bridge is being made, no owner yet)."""
    owners: dict[int, int | None] = {}
    for link in _links():
        if match := _BRIDGE.match(link["ifname"]):
            alias = link.get("ifalias", "")
            owner = alias.removeprefix(OWNER_PREFIX)
            owners[int(match[1])] = int(owner) if owner.isdigit() else None
    return owners


def remove_leftovers() -> list[int]:
    """Remove the networks of test processes that died without tearing theirs down; their ks.

    Namespaces are listed before bridges: a live run makes its bridge first and removes it
    last, so a namespace seen with no bridge after it is never one that is being made."""
    namespaced = {int(m[1]) for ns in _namespaces() if (m := _NAMESPACE.match(ns))}
    owners = _owners()
    dead = {k for k, pid in owners.items() if pid is not None and not _alive(pid)}
    dead |= namespaced - set(owners)
    for k in sorted(dead):
        remove(k)
    return sorted(dead)


def _subnet_in_use(subnet: IPv4Network) -> bool:
    """Whether any address of the root namespace lies in `subnet` (someone else's network)."""
    for entry in json.loads(ip("-j", "-4", "addr", "show") or "[]"):
        for info in entry.get("addr_info", []):
            if IPv4Address(info["local"]) in subnet:
                return True
    return False


def first_choice() -> int:
    """Where this process starts looking for a free k: a block per pytest-xdist worker, a
    place in it from the pid, so parallel workers and parallel runs start apart."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0
    return (index * NETWORKS_PER_WORKER + os.getpid() % NETWORKS_PER_WORKER) % NETWORKS


@contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """A network with one namespace per name, removed at the end whatever happens."""
    remove_leftovers()
    start = first_choice()
    for step in range(NETWORKS):
        k = (start + step) % NETWORKS
        net = Network(k, names)
        if _subnet_in_use(net.subnet):
            continue
        # Creating the bridge is atomic: of two processes that pick the same k, one fails.
        created = subprocess.run(
            [IP, "link", "add", net.bridge, "type", "bridge"],
            capture_output=True,
            timeout=IP_TIMEOUT_S,
            check=False,
        )
        if created.returncode == 0:
            break
    else:
        raise NetnsError("no free network in 198.18.0.0/15")
    try:
        ip("link", "set", "dev", net.bridge, "alias", f"{OWNER_PREFIX}{os.getpid()}")
        net.build()
        yield net
    finally:
        net.teardown()
