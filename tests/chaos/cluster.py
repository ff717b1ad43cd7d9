"""Drive a local cluster of tests/chaos/kv_node.py processes: start, SIGKILL, restart, load, check.

Everything binds 127.0.0.1. Every wait is bounded; a timeout raises AssertionError with the
last observed state, so a failing chaos test says what it saw.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPOSITORY = Path(__file__).resolve().parents[2]
CONTROL_TIMEOUT_S = 5.0
POLL_PERIOD_S = 0.05
SUCCESS = 0
KEYS_PER_WRITE = 2
T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out and released; good enough on a test machine."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def wait_until(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_PERIOD_S)


def request(port: int, payload: dict[str, Any]) -> dict[str, Any] | None:
    """One control request on a fresh connection; None if the node does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CONTROL_TIMEOUT_S) as sock:
            sock.sendall((json.dumps(payload) + "\n").encode())
            with sock.makefile("rb") as reader:
                line = reader.readline()
        return json.loads(line) if line else None
    except OSError:
        return None


@dataclass
class Node:
    index: int
    raft_port: int
    control_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        answer = request(self.control_port, {"op": "status"}) if self.alive else None
        return answer["status"] if answer else None

    def data(self) -> dict[str, int]:
        answer = request(self.control_port, {"op": "data"})
        assert answer is not None, f"node {self.index} did not return its data"
        return {key: int(value) for key, value in answer["data"].items()}


class Cluster:
    """N kv_node processes with their data directories under `root`."""

    def __init__(self, root: Path, size: int, extra_arguments: list[str]) -> None:
        ports = free_ports(2 * size)
        self.nodes = [
            Node(i, ports[i], ports[size + i], root / f"node{i}", root / f"node{i}.log")
            for i in range(size)
        ]
        self._extra_arguments = extra_arguments
        for node in self.nodes:
            node.data_dir.mkdir(parents=True)

    def start(self, node: Node) -> None:
        assert not node.alive
        peers = ",".join(other.address for other in self.nodes if other is not node)
        command = [
            sys.executable,
            "-m",
            "tests.chaos.kv_node",
            f"--self={node.address}",
            f"--peers={peers}",
            f"--data={node.data_dir}",
            f"--control={node.control_port}",
            *self._extra_arguments,
        ]
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(command, cwd=REPOSITORY, stdout=log, stderr=log)
        wait_until(f"node {node.index} control port", node.status, 20.0)

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)

    def kill(self, nodes: list[Node]) -> None:
        """SIGKILL the nodes back to back (a few microseconds apart), then reap them."""
        running = [node.process for node in nodes if node.process is not None and node.alive]
        for process in running:
            os.kill(process.pid, signal.SIGKILL)
        for process in running:
            process.wait(timeout=10)

    def stop(self) -> None:
        self.kill(self.nodes)

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def statuses(self) -> dict[int, dict[str, Any] | None]:
        return {node.index: node.status() for node in self.alive()}

    def leader(self, timeout_s: float) -> Node:
        """The node that the alive nodes agree leads, once they do."""

        def probe() -> Node | None:
            statuses = self.statuses()
            leaders = {s["leader"] for s in statuses.values() if s is not None}
            if len(leaders) != 1 or None in leaders or None in statuses.values():
                return None
            (address,) = leaders
            return next((n for n in self.alive() if n.address == address), None)

        return wait_until("one leader agreed by every alive node", probe, timeout_s)

    def converged(self, timeout_s: float) -> dict[int, dict[str, Any]]:
        """Wait until every alive node has applied the same, fully committed log."""

        def probe() -> dict[int, dict[str, Any]] | None:
            statuses = self.statuses()
            if any(s is None for s in statuses.values()):
                return None
            ready = {i: s for i, s in statuses.items() if s is not None}
            applied = {s["applied"] for s in ready.values()}
            commits = {s["commit"] for s in ready.values()}
            if len(applied) == 1 and applied == commits:
                return ready
            return None

        return wait_until("alive nodes to converge", probe, timeout_s)


@dataclass
class WriteLog:
    """What the writer knows: writes acknowledged as committed, and writes of unknown outcome."""

    keys: dict[int, list[str]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)


class Writer:
    """Keeps `in_flight` writes outstanding against one alive node, moving on when it dies."""

    def __init__(
        self,
        cluster: Cluster,
        in_flight: int,
        log: WriteLog | None = None,
        prefer: Node | None = None,
    ) -> None:
        self.cluster = cluster
        self.log = log if log is not None else WriteLog()
        self._in_flight = in_flight
        self._prefer = prefer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_id = len(self.log.keys)
        self._thread = threading.Thread(target=self._run, name="chaos-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> WriteLog:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the writer did not stop"
        return self.log

    def _run(self) -> None:
        target = 0
        while not self._stop.is_set():
            alive = self.cluster.alive()
            if not alive:
                time.sleep(POLL_PERIOD_S)
                continue
            node = alive[target % len(alive)]
            if self._prefer is not None and self._prefer.alive:
                node = self._prefer
            target += 1
            self._write_through(node)

    def _write_through(self, node: Node) -> None:
        """Pipeline writes to one node until it fails or the writer stops."""
        outstanding: set[int] = set()
        window = threading.Semaphore(self._in_flight)
        try:
            sock = socket.create_connection(("127.0.0.1", node.control_port), timeout=2.0)
        except OSError:
            time.sleep(POLL_PERIOD_S)
            return
        sock.settimeout(None)
        reader = threading.Thread(target=self._read_replies, args=(sock, outstanding, window))
        reader.start()
        try:
            while not self._stop.is_set() and reader.is_alive():
                if not window.acquire(timeout=0.2):
                    continue
                write_id = self._record_new_write(outstanding)
                keys = self.log.keys[write_id]
                line = json.dumps({"op": "put", "id": write_id, "keys": keys}) + "\n"
                sock.sendall(line.encode())
        except OSError:
            pass
        finally:
            self._drain(sock, reader, outstanding)

    def _record_new_write(self, outstanding: set[int]) -> int:
        with self._lock:
            write_id = self._next_id
            self._next_id += 1
            self.log.keys[write_id] = [f"w{write_id}k{k}" for k in range(KEYS_PER_WRITE)]
            outstanding.add(write_id)
        return write_id

    def _drain(self, sock: socket.socket, reader: threading.Thread, outstanding: set[int]) -> None:
        """Give in-flight writes a moment to answer, then count the rest as unknown."""
        deadline = time.monotonic() + 3.0
        while outstanding and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(POLL_PERIOD_S)
        sock.close()
        reader.join(timeout=10)
        with self._lock:
            self.log.unknown |= outstanding
            outstanding.clear()

    def _read_replies(
        self, sock: socket.socket, outstanding: set[int], window: threading.Semaphore
    ) -> None:
        try:
            with sock.makefile("rb") as replies:
                for line in replies:
                    reply = json.loads(line)
                    with self._lock:
                        outstanding.discard(reply["id"])
                        if reply["err"] == SUCCESS:
                            self.log.acked.add(reply["id"])
                        else:
                            self.log.unknown.add(reply["id"])
                    window.release()
        except (OSError, ValueError):
            pass


def check_writes(log: WriteLog, data_by_node: dict[int, dict[str, int]]) -> None:
    """Every acked write on every node; every write wholly present or wholly absent; equal nodes."""
    for index, data in data_by_node.items():
        missing = [w for w in log.acked if any(data.get(k) != w for k in log.keys[w])]
        assert not missing, f"node {index} lost {len(missing)} acked writes, e.g. {missing[:5]}"
        half = [w for w in log.keys if len({k in data for k in log.keys[w]}) != 1]
        assert not half, f"node {index} holds half of writes {half[:5]}"
        invented = set(data.values()) - set(log.keys)
        assert not invented, f"node {index} holds writes never issued: {sorted(invented)[:5]}"
    reference = next(iter(data_by_node.values()))
    for index, data in data_by_node.items():
        assert data == reference, f"node {index} diverged from node {min(data_by_node)}"
