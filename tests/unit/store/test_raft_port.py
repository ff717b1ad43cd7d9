"""The Raft port's guards (store/raft/port.py), each against a real pysyncobj node and real sockets.

Every scenario also runs against the stock TCPTransport, which shows the defect the guard
removes: so each test is known to be able to fail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.transport import TCPTransport

from store.raft.transport import HardenedTransport, HardeningConfig
from tests.chaos.cluster import free_ports
from tests.support.listeners import listening_hosts

TICK_S = 0.01
RECV_BUFFER_BYTES = SyncObjConf().recvBufferSize


class PortNode(SyncObj):  # type: ignore[misc]
    """A SyncObj whose hardened transport runs with the given knobs."""

    def __init__(self, hardening: HardeningConfig, *args: Any, **kwargs: Any) -> None:
        self.hardening = hardening
        super().__init__(*args, **kwargs)


@pytest.fixture
def make_node() -> Iterator[Callable[..., SyncObj]]:
    made: list[SyncObj] = []

    def make(
        transport: type,
        host: str = "127.0.0.1",
        peers: tuple[str, ...] = (),
        **hardening: Any,
    ) -> SyncObj:
        (port,) = free_ports(1)
        conf = SyncObjConf(autoTick=False)
        node = PortNode(
            HardeningConfig(**hardening),
            f"{host}:{port}",
            list(peers),
            conf,
            transportClass=transport,
        )
        made.append(node)
        ticks_until(node, lambda: transport_of(node).ready, "the port is bound")
        return node

    yield make
    for node in made:
        node.destroy()


def transport_of(node: SyncObj) -> Any:
    return node._SyncObj__transport


def address_of(node: SyncObj) -> tuple[str, int]:
    host, port = node.selfNode.address.rsplit(":", 1)
    return host, int(port)


def ticks_until(node: SyncObj, done: Callable[[], bool], what: str, timeout_s: float = 5) -> float:
    """Tick the node until done(); the seconds it took."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        node.doTick(TICK_S)
    return time.monotonic() - started


def tick_for(node: SyncObj, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        node.doTick(TICK_S)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end closed the connection; never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    ("transport", "bound_on"), [(HardenedTransport, {"127.0.0.2"}), (TCPTransport, {"0.0.0.0"})]
)
def test_the_port_listens_on_the_host_of_the_node_address_only(
    make_node: Callable[..., SyncObj], transport: type, bound_on: set[str]
) -> None:
    node = make_node(transport, host="127.0.0.2")
    assert listening_hosts(address_of(node)[1]) == bound_on


@pytest.mark.parametrize(
    ("transport", "closes"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_idle_unauthenticated_connections_are_closed_after_the_handshake_deadline(
    make_node: Callable[..., SyncObj], transport: type, closes: bool
) -> None:
    deadline_s = 0.5
    node = make_node(transport, handshake_s_max=deadline_s)
    with ExitStack() as stack:
        idle = accepted_connections(node, 10, stack)
        if closes:
            took = ticks_until(node, lambda: all(map(closed_by_peer, idle)), "idle sockets closed")
            assert took >= deadline_s * 0.9
            assert transport_of(node).stats().handshakes_timed_out == 10
        else:
            tick_for(node, 3 * deadline_s)
            assert not any(map(closed_by_peer, idle))


@pytest.mark.parametrize(
    ("transport", "closes"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_unauthenticated_connections_over_the_cap_close_the_oldest_at_once(
    make_node: Callable[..., SyncObj], transport: type, closes: bool
) -> None:
    node = make_node(transport, handshakes_max=8, handshake_s_max=10.0)
    with ExitStack() as stack:
        clients = accepted_connections(node, 20, stack)
        tick_for(node, 0.3)
        closed = [closed_by_peer(client) for client in clients]
    assert closed == ([True] * 12 + [False] * 8 if closes else [False] * 20)


def accepted_connections(node: SyncObj, count: int, stack: ExitStack) -> list[socket.socket]:
    """`count` client connections, each accepted by the node before the next one is made (the
    listen backlog is 5, and the node accepts them in this order)."""
    clients: list[socket.socket] = []
    for _ in range(count):
        clients.append(stack.enter_context(socket.create_connection(address_of(node))))
        ticks_until(node, lambda: connections_seen(node) == len(clients), "the accept")
    return clients


def connections_seen(node: SyncObj) -> int:
    """Incoming connections the node accepted that have not authenticated (or were evicted)."""
    transport = transport_of(node)
    hardened = isinstance(transport, HardenedTransport)
    evicted = transport.stats().handshakes_evicted if hardened else 0
    return len(transport._unknownConnections) + evicted


@pytest.mark.parametrize(
    ("transport", "all_in"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_a_burst_of_connections_waits_in_the_backlog(
    make_node: Callable[..., SyncObj], transport: type, all_in: bool
) -> None:
    """With pysyncobj's backlog of 5, the sixth connection made before the node polls has its
    SYN dropped, and is retried a second later: a burst of strangers delays a peer that way."""
    node = make_node(transport)
    with ExitStack() as stack:
        connected = 0
        for _ in range(40):
            try:
                stack.enter_context(socket.create_connection(address_of(node), timeout=0.3))
            except TimeoutError:
                break
            connected += 1
    assert (connected == 40) == all_in


class CountingSocket:
    """A socket that counts the bytes recv() returned (the node's reads of one connection)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.received = 0

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.parametrize("transport", [HardenedTransport, TCPTransport])
def test_a_stream_is_refused_as_soon_as_its_length_prefix_is_in(
    make_node: Callable[..., SyncObj], transport: type
) -> None:
    """1 MiB announced (and streamed) by a connection that has not authenticated: the frame is
    under the cap of peers but over the cap of handshakes, and the node reads hardly more than
    the prefix. The stock transport reads all of it, and would read any amount."""
    node = make_node(transport)
    announced = 1024 * 1024
    with socket.create_connection(address_of(node)) as client:
        ticks_until(node, lambda: connections_seen(node) == 1, "the accept")
        (connection,) = transport_of(node)._unknownConnections
        counting = CountingSocket(connection._TcpConnection__socket)
        connection._TcpConnection__socket = counting
        sender = threading.Thread(target=send_ignoring_resets, args=(client, announced))
        sender.start()
        # The kernel may take the whole stream into its buffers at once: wait for the node.
        if transport is HardenedTransport:
            ticks_until(node, lambda: frames_rejected(node) == 1, "the frame refused")
            assert counting.received <= struct.calcsize("i") + RECV_BUFFER_BYTES
            assert closed_by_peer(client)
        else:
            whole = struct.calcsize("i") + announced
            ticks_until(node, lambda: counting.received == whole, "the whole frame read")
        sender.join(timeout=10)
        assert not sender.is_alive()


def frames_rejected(node: SyncObj) -> int:
    rejected: int = transport_of(node).stats().frames_rejected
    return rejected


def send_ignoring_resets(client: socket.socket, length: int) -> None:
    # The node closing the connection mid-way is what the guard does.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.sendall(struct.pack("i", length) + b"x" * length)


@contextmanager
def no_descriptor_left() -> Iterator[None]:
    """Until exit, this process cannot open one more descriptor (EMFILE): the soft limit is cut
    to the highest one open, and every free number below it is taken."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as error:
                assert error.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("transport", "survives"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_the_listener_survives_running_out_of_descriptors(
    make_node: Callable[..., SyncObj], transport: type, survives: bool
) -> None:
    node = make_node(transport, accept_pause_s=0.05)
    port = address_of(node)[1]
    with ExitStack() as stack:
        # Client sockets made before the descriptors run out: connect() needs no new one.
        clients = [stack.enter_context(socket.socket()) for _ in range(4)]
        with no_descriptor_left():
            for client in clients:
                client.connect(address_of(node))
            tick_for(node, 0.2)
        if survives:
            ticks_until(node, lambda: connections_seen(node) == 4, "the pending accepts")
            assert transport_of(node).stats().accept_errors >= 1
            assert listening_hosts(port) == {"127.0.0.1"}
        else:
            tick_for(node, 0.2)
            assert listening_hosts(port) == set()


class AbortingListener:
    """The listening socket, whose next accept() fails as if the client had reset first."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.aborted = False

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.aborted:
            self.aborted = True
            raise ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort")
        return self._sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.parametrize(
    ("transport", "survives"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_the_listener_survives_any_other_accept_error(
    make_node: Callable[..., SyncObj], transport: type, survives: bool
) -> None:
    node = make_node(transport)
    server = transport_of(node)._server
    server._TcpServer__socket = AbortingListener(server._TcpServer__socket)
    with socket.create_connection(address_of(node)):
        tick_for(node, 0.2)
        assert server._TcpServer__socket.aborted
        assert (listening_hosts(address_of(node)[1]) == {"127.0.0.1"}) == survives
        assert (connections_seen(node) == 1) == survives


@pytest.mark.parametrize("transport", [HardenedTransport, TCPTransport])
def test_dialing_a_peer_without_descriptors_fails_that_attempt_only(
    make_node: Callable[..., SyncObj], transport: type
) -> None:
    """pysyncobj's dial raises EMFILE out of the tick, before the tick polls anything."""
    (peer_port,) = free_ports(1)
    # A node dials the peers whose address sorts below its own.
    node = make_node(transport, host="127.0.0.2", peers=(f"127.0.0.1:{peer_port}",))
    tick_for(node, 0.1)  # the first dial is refused: nobody listens there
    transport_of(node)._lastConnectAttempt.clear()
    with no_descriptor_left():
        if transport is HardenedTransport:
            node.doTick(TICK_S)
        else:
            with pytest.raises(OSError, match="Too many open files"):
                node.doTick(TICK_S)


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = min(256, hard)
    program = (
        "import logging, resource\n"
        "from store.raft.port import raise_open_files_limit\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "raise_open_files_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    assert finished.stdout.split() == [str(hard), str(hard)]
    if soft < hard:
        assert f"open files limit raised from {soft} to {hard}" in finished.stderr
