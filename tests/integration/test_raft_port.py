"""Strangers on the Raft port, against real node processes: it listens on the configured host only;
hundreds of idle sockets, a garbage stream, a peer with the wrong secret and a node out of file
descriptors neither close the listener nor stop the cluster from committing, and the node itself
closes the idle sockets within the handshake deadline.

tests/unit/store/test_raft_port.py runs each guard against the stock transport as well, which
shows the defect without it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from store.raft.transport import HardeningConfig
from tests.integration.raft_cluster import (
    NodeError,
    RaftCluster,
    RaftNodeProcess,
    b64,
    free_ports,
    wait_for,
)
from tests.integration.raft_node import kv_set
from tests.support.listeners import listening_hosts

HANDSHAKE_S_MAX = HardeningConfig().handshake_s_max
# How long after the deadline a node may take to close an idle socket (ticks, a loaded machine).
CLOSE_SLACK_S = 3.0
# Descriptors a node out of them still has once the test cut its limit (few, but enough for the
# flood's connections to drain fast once it ends).
SPARE_DESCRIPTORS = 16
# Bound on waiting for a journal to fail for want of descriptors, and to recover.
JOURNAL_FAILURE_WAIT_S = 30.0
# A write through a survivor that cannot commit yet (the victim led, and the others have not
# elected another) is given up after this long, and the next one tried.
TRY_WRITE_S = 2.0


def raft_endpoint(node: RaftNodeProcess) -> tuple[str, int]:
    return node.host, node.raft_port


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the node closed the connection; never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def wait_closed_by_node(
    sockets: list[socket.socket], since: float, *nodes: RaftNodeProcess
) -> None:
    """Every socket is closed by the node within the handshake deadline (plus slack)."""
    budget = HANDSHAKE_S_MAX + CLOSE_SLACK_S - (time.monotonic() - since)
    wait_for(
        lambda: all(map(closed_by_peer, sockets)), budget, "the node closing idle sockets", *nodes
    )


def write(node: RaftNodeProcess, key: str) -> None:
    node.ok("propose", command=b64(kv_set(key, b"v")), timeout=10)


def wrote(node: RaftNodeProcess, key: str) -> bool:
    """Whether a write through `node` committed within TRY_WRITE_S."""
    try:
        node.ok("propose", command=b64(kv_set(key, b"v")), timeout=TRY_WRITE_S)
    except (OSError, NodeError):
        return False
    return True


def test_every_node_listens_on_its_own_host_only(tmp_path: Path) -> None:
    with RaftCluster(tmp_path, host="127.0.0.2") as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        write(leader, "k")
        for node in cluster.nodes:
            assert listening_hosts(node.raft_port) == {"127.0.0.2"}, node.name


@contextlib.contextmanager
def garbage_stream(node: RaftNodeProcess) -> Iterator[list[int]]:
    """Random bytes streamed to the node's Raft port, reconnecting each time it hangs up; the
    list counts the connections the node closed."""
    closed: list[int] = [0]
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(raft_endpoint(node), timeout=2) as sock:
                    while not stop.is_set():
                        sock.sendall(os.urandom(64 * 1024))
            except OSError:
                closed[0] += 1
                time.sleep(0.01)

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    try:
        yield closed
    finally:
        stop.set()
        sender.join(timeout=10)


def test_strangers_neither_hold_the_port_nor_stop_the_commits(tmp_path: Path) -> None:
    with RaftCluster(tmp_path) as cluster, ExitStack() as stack:
        cluster.start()
        leader = cluster.wait_leader()
        # A peer with the wrong secret, on a host that sorts after the others' so that it dials
        # every one of them (a pysyncobj node dials the peers whose address sorts below its own).
        (intruder_raft, intruder_control) = free_ports(2)
        intruder = RaftNodeProcess(
            name="intruder",
            raft_port=intruder_raft,
            control_port=intruder_control,
            data_dir=tmp_path / "intruder",
            peers=[node.address for node in cluster.nodes],
            secret="a-wrong-cluster-secret-just-as-long-as-the-right-one",
            host="127.0.0.9",
        )
        stack.callback(intruder.stop)
        intruder.start()
        opened_at = time.monotonic()
        idle = [
            stack.enter_context(socket.create_connection(raft_endpoint(node), timeout=5))
            for node in cluster.nodes
            for _ in range(100)
        ]
        with garbage_stream(leader) as garbage_closed:
            for number in range(100):
                write(cluster.nodes[number % 3], f"under-attack-{number}")
            wait_closed_by_node(idle, opened_at, *cluster.nodes)
            assert garbage_closed[0] >= 1
        wait_for(lambda: intruder.status() is not None, 20, "the intruder's control port", intruder)
        assert intruder.ok("status")["leader"] is None
        assert leader.ok("status")["transport"]["frames_rejected"] >= 1
        assert all(listening_hosts(node.raft_port) == {"127.0.0.1"} for node in cluster.nodes)
        cluster.wait_converged()
        write(leader, "after")


def lowest_address(cluster: RaftCluster) -> RaftNodeProcess:
    """The node every other node dials: all its peer links go through its listener."""
    return min(cluster.nodes, key=lambda node: node.address)


def connect_without_waiting(endpoint: tuple[str, int]) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(endpoint)
    return sock


def starved_victim(cluster: RaftCluster) -> tuple[RaftNodeProcess, list[RaftNodeProcess]]:
    """The node every other dials, its soft limit cut to a few descriptors above its highest (a
    flood exhausts them), and the other nodes."""
    victim = lowest_address(cluster)
    pid = victim.ok("status")["pid"]
    highest = max(int(name) for name in os.listdir(f"/proc/{pid}/fd"))
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (highest + 1 + SPARE_DESCRIPTORS, hard))
    return victim, [node for node in cluster.nodes if node is not victim]


def test_a_node_out_of_descriptors_keeps_its_listener_and_the_cluster_commits(
    tmp_path: Path,
) -> None:
    with RaftCluster(tmp_path) as cluster:
        cluster.start()
        cluster.wait_leader()
        victim, others = starved_victim(cluster)
        with ExitStack() as stack:
            flood = [
                stack.enter_context(connect_without_waiting(raft_endpoint(victim)))
                for _ in range(4 * SPARE_DESCRIPTORS)
            ]
            wait_for(
                lambda: "accept() failed" in victim.log_path.read_text(errors="replace"),
                20,
                "the victim running out of descriptors",
                victim,
            )
            for number in range(20):
                write(others[number % 2], f"exhausted-{number}")
            assert not any(map(closed_by_peer, flood[-5:])), "the flood never waited for accept"
        # The strangers left; the listener still takes a connection, and times it out.
        assert listening_hosts(victim.raft_port) == {"127.0.0.1"}
        opened_at = time.monotonic()
        with socket.create_connection(raft_endpoint(victim), timeout=5) as late:
            wait_closed_by_node([late], opened_at, victim)
        # Its peers reconnect through its listener after a restart, and it catches up.
        for node in others:
            node.stop()
        for node in others:
            node.start()
        cluster.wait_leader()
        write(others[0], "after-restart")
        cluster.wait_converged()
        status = victim.ok("status")
        assert status["transport"]["accept_errors"] >= 1


def test_a_journal_failed_for_want_of_descriptors_gets_them_back_from_the_strangers(
    tmp_path: Path,
) -> None:
    """While its journal cannot be written, a node skips its ticks, so nothing polled the
    strangers' sockets: the descriptors they held were the ones the journal needed, and the node
    stayed deaf for good. Now the skipped ticks close them, and the node writes and commits again.
    The victim may be the leader: then the writes through the others fail until they elect
    another, and are simply tried again."""
    with RaftCluster(tmp_path) as cluster:
        cluster.start()
        cluster.wait_leader()
        victim, others = starved_victim(cluster)
        with ExitStack() as stack:
            for _ in range(4 * SPARE_DESCRIPTORS):
                stack.enter_context(connect_without_waiting(raft_endpoint(victim)))
            # Commits reach the victim while it is out of descriptors: within a second it saves
            # its journal's meta (a new file), and that fails.
            deadline = time.monotonic() + JOURNAL_FAILURE_WAIT_S
            number = 0
            while "cannot be written" not in victim.log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, "the victim's journal never failed"
                wrote(others[number % 2], f"starved-{number}")
                number += 1
        # The strangers have hung up, but only the node can give their descriptors back.
        wait_for(
            lambda: "is writable again" in victim.log_path.read_text(errors="replace"),
            JOURNAL_FAILURE_WAIT_S,
            "the victim's journal writable again",
            victim,
        )
        wait_for(
            lambda: any(wrote(node, "after") for node in others),
            JOURNAL_FAILURE_WAIT_S,
            "a write through a survivor",
            *others,
        )
        wait_for(
            lambda: victim.ok("get", keys=["after"])["values"]["after"] is not None,
            JOURNAL_FAILURE_WAIT_S,
            "the victim applying a write made after",
            victim,
        )
