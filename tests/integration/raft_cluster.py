"""Start, drive, kill and inspect raft_node.py processes on 127.0.0.1, from plain sync tests.

    with RaftCluster(tmp_path, size=3) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        leader.call("propose", command=b64(kv_set("k", b"v")))
        cluster.wait_converged()

Fault tests add kill_all() (every node SIGKILLed back to back), wait_dump_renamed() (to
time a kill to log compaction) and a node's pause() and resume() (SIGSTOP, SIGCONT);
raft_writer.py keeps writes in flight through the cluster.
Ports come from the kernel (bind to port 0), so tests run in parallel under pytest -n auto.
Every wait is bounded; every failure names the node and shows the tail of its log.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from store.raft.config import DUMP_FILE_NAME
from tests.support.cluster_secret import TEST_CLUSTER_SECRET

ROOT = Path(__file__).resolve().parents[2]
# A dump is renamed into place in a moment: the files are polled this often to catch it.
DUMP_POLL_S = 0.001


class NodeError(AssertionError):
    """A node did not answer or did not get where a test waited for it to be."""


def free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1 (all held open together, so they are distinct)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def ticked(status: dict[str, Any]) -> bool:
    """Whether a node's status comes from its tick thread: until the first tick (it loads the
    dump then) the store reports the role it had before starting, "stopped"."""
    return bool(status["role"] != "stopped")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class RaftNodeProcess:
    name: str
    raft_port: int
    control_port: int
    data_dir: Path
    peers: list[str]
    secret: str | None = TEST_CLUSTER_SECRET
    extra_args: list[str] = field(default_factory=list)
    # Variables added to the node's environment (test hooks such as TOCK_TEST_DISK_LOG).
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # The host of the Raft address (the control port is on 127.0.0.1 whatever it is).
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"

    def command_line(self) -> list[str]:
        args = [sys.executable, "-m", "tests.integration.raft_node", "--self", self.address]
        args += ["--peers", ",".join(self.peers), "--data-dir", str(self.data_dir)]
        args += ["--control-port", str(self.control_port), *self.extra_args]
        return args

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "TOCK_RAFT_SECRET"}
        if self.secret is not None:
            env["TOCK_RAFT_SECRET"] = self.secret
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command_line(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def call(self, op: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """Send one control request and return the answer (ok or not)."""
        request = json.dumps({"op": op, **fields}).encode() + b"\n"
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=timeout) as sock:
            sock.sendall(request)
            with sock.makefile("rb") as answers:
                line = answers.readline()
        if not line:
            raise NodeError(f"{self.name}: no answer to {op}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ok(self, op: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """call(), asserting that the answer is ok."""
        answer = self.call(op, timeout, **fields)
        if not answer["ok"]:
            raise NodeError(f"{self.name}: {op} failed: {answer}")
        return answer

    def status(self) -> dict[str, Any] | None:
        """The node's status, or None if its control socket does not answer."""
        try:
            return self.ok("status", timeout=2.0)
        except (OSError, NodeError, json.JSONDecodeError):
            return None

    def wait_up(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.status() is not None, timeout, f"{self.name} control socket", self)

    def exit_code(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeError(f"{self.name} did not exit within {timeout} s") from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the node holds its ports but answers nothing until resume()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the node to stop cleanly; kill it if it does not."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.call("stop", timeout=timeout)
            self.process.wait(timeout)
        except (OSError, NodeError, subprocess.TimeoutExpired, json.JSONDecodeError):
            self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def dump_identity(self) -> tuple[int, int] | None:
        """Inode and mtime of the node's dump file: they change when a new dump is renamed in."""
        try:
            stat = (self.data_dir / DUMP_FILE_NAME).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    *nodes: RaftNodeProcess,
    poll_s: float = 0.05,
) -> None:
    """Poll predicate every poll_s until it is true; NodeError with the nodes' logs if not."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in nodes)
            raise NodeError(f"timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(poll_s)


class RaftCluster:
    """size nodes under base_dir, each knowing all the others, started and stopped together."""

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        extra_args: list[str] | None = None,
        secret: str | None = TEST_CLUSTER_SECRET,
        host: str = "127.0.0.1",
    ) -> None:
        ports = free_ports(2 * size)
        raft_ports, control_ports = ports[:size], ports[size:]
        addresses = [f"{host}:{p}" for p in raft_ports]
        self.nodes = [
            RaftNodeProcess(
                name=f"n{i}",
                raft_port=raft_ports[i],
                control_port=control_ports[i],
                data_dir=base_dir / f"n{i}",
                peers=[a for a in addresses if a != addresses[i]],
                secret=secret,
                extra_args=list(extra_args or []),
                host=host,
            )
            for i in range(size)
        ]

    def __enter__(self) -> RaftCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def running(self) -> Iterator[RaftNodeProcess]:
        return (n for n in self.nodes if n.running)

    def kill_all(self) -> None:
        """SIGKILL every running node back to back (microseconds apart), then reap them all.

        Killing them one by one with a wait in between would let the survivors move on.
        """
        processes = [n.process for n in self.nodes if n.running and n.process is not None]
        for process in processes:
            process.send_signal(signal.SIGKILL)
        for process in processes:
            process.wait(10)

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        """The status of every running node by name (None for one that does not answer)."""
        return {n.name: n.status() for n in self.running()}

    def wait_dump_renamed(self, timeout: float = 20.0) -> RaftNodeProcess:
        """Poll the dump files every millisecond; the first node whose dump was renamed in.

        That moment is when pysyncobj compacts its journal, the window a kill aims at.
        """
        before = [n.dump_identity() for n in self.nodes]
        renamed: list[RaftNodeProcess] = []

        def one_renamed() -> bool:
            renamed[:] = [
                n for n, b in zip(self.nodes, before, strict=True) if n.dump_identity() != b
            ]
            return bool(renamed)

        wait_for(one_renamed, timeout, "a dump renamed into place", *self.nodes, poll_s=DUMP_POLL_S)
        return renamed[0]

    def wait_leader(self, timeout: float = 30.0) -> RaftNodeProcess:
        """The running node every running node names as leader, once they agree and are ready."""
        found: list[RaftNodeProcess] = []

        def agreed() -> bool:
            statuses = [n.status() for n in self.running()]
            if not statuses or any(s is None or not s["ready"] for s in statuses):
                return False
            leaders = {s["leader"] for s in statuses if s is not None}
            leader = next((n for n in self.running() if {n.address} == leaders), None)
            found[:] = [leader] if leader is not None else []
            return bool(found)

        wait_for(agreed, timeout, "an agreed leader", *self.nodes)
        return found[0]

    def wait_converged(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until every running node applied the same index and holds the same digest, with
        no proposal of its own still queued or in flight (one could still change the state)."""
        last: list[dict[str, Any]] = []

        def converged() -> bool:
            statuses = [n.status() for n in self.running()]
            if any(s is None or not ticked(s) for s in statuses):
                return False
            last[:] = [s for s in statuses if s is not None]
            applied = {s["applied_index"] for s in last}
            digests = {s["digest"] for s in last}
            commits = {s["commit_index"] for s in last}
            idle = all(s["queued_commands"] == s["entries_in_flight"] == 0 for s in last)
            return idle and len(applied) == 1 and len(digests) == 1 and applied == commits

        wait_for(converged, timeout, "equal applied index and digest", *self.nodes)
        return last[0]
