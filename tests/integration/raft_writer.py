"""A pipelined writer against a RaftCluster, recording what it knows of every write's outcome.

Each write sets KEYS_PER_WRITE keys of its own to its id, in one command (kv "set_many"), so on
every node it is wholly present or wholly absent. The writer keeps `in_flight` writes
outstanding on one node's control connection and records each answer:
- acked: the store answered ok, so the write is committed and must survive any fault;
- refused: the store answered Unavailable, so the write certainly was not applied;
- unknown: OutcomeUnknown, any other error, or no answer before the node died or the writer
  stopped; the write may or may not be applied.
When the node dies it moves on to another running node. check_writes holds the nodes to it.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field

from tests.integration.raft_cluster import RaftCluster, RaftNodeProcess
from tests.integration.raft_node import kv_set_many

KEYS_PER_WRITE = 2
# The store's own deadline for one write; past it the answer is Unavailable or OutcomeUnknown.
PROPOSE_TIMEOUT_S = 10.0
# After a refusal (no leader known, typically) the writer pauses, so that it does not spin.
REFUSAL_PAUSE_S = 0.1
# When the writer stops or its node dies, outstanding writes get this long to be answered.
DRAIN_S_MAX = 3.0
POLL_PERIOD_S = 0.05
CONNECT_TIMEOUT_S = 2.0


@dataclass
class WriteLog:
    keys: dict[int, list[str]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)

    def summary(self) -> str:
        return (
            f"{len(self.keys)} writes: {len(self.acked)} acked, {len(self.refused)} refused, "
            f"{len(self.unknown)} unknown"
        )


class _Connection:
    """One control connection with its outstanding writes and the thread reading answers."""

    def __init__(self, sock: socket.socket, in_flight: int) -> None:
        self.sock = sock
        self.outstanding: set[int] = set()
        self.window = threading.Semaphore(in_flight)
        self.paused_until = 0.0


class PipelinedWriter:
    """Keeps `in_flight` writes outstanding against one running node, moving on when it dies.

    With `prefer`, that node takes the writes whenever it runs; otherwise the running nodes
    take turns, one connection each.
    """

    def __init__(
        self,
        cluster: RaftCluster,
        in_flight: int,
        log: WriteLog | None = None,
        prefer: RaftNodeProcess | None = None,
    ) -> None:
        self.cluster = cluster
        self.log = log if log is not None else WriteLog()
        self._in_flight = in_flight
        self._prefer = prefer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_id = max(self.log.keys, default=-1) + 1
        self._thread = threading.Thread(target=self._run, name="raft-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> WriteLog:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the writer did not stop"
        return self.log

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            running = list(self.cluster.running())
            if not running:
                time.sleep(POLL_PERIOD_S)
                continue
            node = running[turn % len(running)]
            if self._prefer is not None and self._prefer.running:
                node = self._prefer
            turn += 1
            self._write_through(node)

    def _write_through(self, node: RaftNodeProcess) -> None:
        """Pipeline writes to one node until it fails or the writer stops."""
        try:
            sock = socket.create_connection(("127.0.0.1", node.control_port), CONNECT_TIMEOUT_S)
        except OSError:
            time.sleep(POLL_PERIOD_S)
            return
        sock.settimeout(None)
        connection = _Connection(sock, self._in_flight)
        reader = threading.Thread(target=self._read_answers, args=(connection,), daemon=True)
        reader.start()
        try:
            while not self._stop.is_set() and reader.is_alive():
                self._send_one(connection)
        except OSError:
            pass
        finally:
            self._drain(connection, reader)

    def _send_one(self, connection: _Connection) -> None:
        pause_s = connection.paused_until - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        if not connection.window.acquire(timeout=0.2):
            return
        with self._lock:
            write_id = self._next_id
            self._next_id += 1
            keys = [f"w{write_id}k{k}" for k in range(KEYS_PER_WRITE)]
            self.log.keys[write_id] = keys
            connection.outstanding.add(write_id)
        command = base64.b64encode(kv_set_many(keys, str(write_id).encode())).decode()
        request = {
            "op": "propose",
            "id": write_id,
            "command": command,
            "timeout": PROPOSE_TIMEOUT_S,
        }
        connection.sock.sendall(json.dumps(request).encode() + b"\n")

    def _read_answers(self, connection: _Connection) -> None:
        try:
            with connection.sock.makefile("rb") as answers:
                for line in answers:
                    self._record(connection, json.loads(line))
        except (OSError, ValueError):
            pass

    def _record(self, connection: _Connection, answer: dict[str, object]) -> None:
        write_id = answer["id"]
        assert isinstance(write_id, int)
        with self._lock:
            connection.outstanding.discard(write_id)
            if answer["ok"]:
                self.log.acked.add(write_id)
            elif answer["error"] == "Unavailable":
                self.log.refused.add(write_id)
                connection.paused_until = time.monotonic() + REFUSAL_PAUSE_S
            else:
                self.log.unknown.add(write_id)
        connection.window.release()

    def _drain(self, connection: _Connection, reader: threading.Thread) -> None:
        """Give outstanding writes a moment to be answered, then count the rest as unknown."""
        deadline = time.monotonic() + DRAIN_S_MAX
        while connection.outstanding and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(POLL_PERIOD_S)
        connection.sock.close()
        reader.join(timeout=10)
        with self._lock:
            self.log.unknown |= connection.outstanding
            connection.outstanding.clear()


def node_writes(node: RaftNodeProcess) -> dict[str, int]:
    """The node's kv map as key -> id of the write that set it."""
    items = node.ok("items")["items"]
    return {key: int(base64.b64decode(value)) for key, value in items.items()}


def check_writes(log: WriteLog, data_by_node: dict[str, dict[str, int]]) -> None:
    """Every acked write on every node, no refused one anywhere, every write wholly present or
    wholly absent, nothing never written, and all nodes equal."""
    for name, data in data_by_node.items():
        missing = [w for w in log.acked if any(data.get(k) != w for k in log.keys[w])]
        assert not missing, f"{name} lost {len(missing)} acked writes, e.g. {missing[:5]}"
        applied = [w for w in log.refused if any(k in data for k in log.keys[w])]
        assert not applied, f"{name} applied {len(applied)} refused writes, e.g. {applied[:5]}"
        half = [w for w in log.keys if len({k in data for k in log.keys[w]}) != 1]
        assert not half, f"{name} holds half of writes {half[:5]}"
        invented = set(data.values()) - set(log.keys)
        assert not invented, f"{name} holds writes never issued: {sorted(invented)[:5]}"
    first = min(data_by_node)
    for name, data in data_by_node.items():
        assert data == data_by_node[first], f"{name} diverged from {first}"
