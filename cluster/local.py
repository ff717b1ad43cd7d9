"""A local cluster of N node processes on 127.0.0.1: what `tock up`, the integration and chaos
tests and the benchmarks start, stop, kill, pause and restart.

Node k (1..N) is `n{k}`, serves HTTP on `http_port + k - 1`, Raft on `raft_port + k - 1` and gRPC
on `grpc_port + k - 1`, and keeps its data in `{data_dir}/n{k}`. The cluster secret and the
admin token are generated once into `{data_dir}/secret` and `{data_dir}/admin-token` (mode 0600)
and read by every node from there, so running the same command again on the same data dir brings
back the same cluster with all its jobs, and the client commands find the admin token there.
The nodes run the Jobs API open (scope from Dapr's headers) unless `open_api` is False.

By default every node listens on 127.0.0.1. `node_hosts` gives node k its own address instead
(all three of its ports on it), and `command_prefix` a command to start its process under, e.g.
`ip netns exec NAMESPACE` to run each node in a network namespace of its own: a prefix must exec
the node's command, so that the process started is the node itself (signals reach it by pid).

The data directories are 0700 and the node logs 0600 (both tightened if an older run left
them wider).

With `tls`, a CA is generated once into `{data_dir}/tls/` and each node gets a certificate for
127.0.0.1 and localhost in `{data_dir}/n{k}/tls/` (cluster/certificates.py): the nodes serve
HTTPS and gRPC over TLS, and the cluster's own requests check them against that CA (`ca_file`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cluster.certificates import CertificateAuthority
from store.private_files import (
    PRIVATE_FILE_MODE,
    make_private_directory,
    open_private,
    tighten_files,
)

READY_TIMEOUT_S_DEFAULT = 60.0
STOP_TIMEOUT_S = 15.0
MEMBER_CHANGE_TIMEOUT_S = 20.0
# Each node takes one port of each kind after the base ports: the test harness reserves 15.
NODES_MAX = 15
SECRET_FILE = "secret"
ADMIN_TOKEN_FILE = "admin-token"
# Random bytes of each generated credential (before its URL-safe base64 text).
CREDENTIAL_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class LocalClusterConfig:
    nodes: int = 3
    data_dir: Path = Path(".tock")
    http_port: int = 3500
    raft_port: int = 7500
    grpc_port: int = 50001
    time_zone: str | None = None
    # Open mode (`tock node --open-api`): the Jobs API needs no app token. Token mode otherwise.
    open_api: bool = True
    # HTTPS and gRPC over TLS, with certificates from a CA generated into the data dir.
    tls: bool = False
    # Extra `tock node` arguments for every node (tests shorten timings with these).
    node_args: tuple[str, ...] = ()
    # Node k's address is node_hosts[k - 1]; None: every node on 127.0.0.1.
    node_hosts: tuple[str, ...] | None = None
    # What to run node `n{k}`'s command under (given its id); None: nothing.
    command_prefix: Callable[[str], list[str]] | None = None


@dataclass
class NodeProcess:
    node_id: str
    http: str
    raft: str
    grpc: str
    data_dir: Path
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.data_dir / "node.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.http}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    def __init__(self, config: LocalClusterConfig) -> None:
        if not 1 <= config.nodes <= NODES_MAX:
            raise ValueError(f"a local cluster has 1 to {NODES_MAX} nodes")
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.nodes = [self._node_process(k) for k in range(1, config.nodes + 1)]

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path | None:
        """The CA every node's certificate is checked against; None without TLS."""
        return self._authority.cert_file if self.config.tls else None

    @cached_property
    def _authority(self) -> CertificateAuthority:
        return CertificateAuthority(self.data_dir / "tls")

    @cached_property
    def _ssl(self) -> ssl.SSLContext | None:
        """The context of this cluster's own requests to its nodes."""
        ca_file = self.ca_file
        return None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))

    def start(self) -> None:
        make_private_directory(self.data_dir)
        for name in (SECRET_FILE, ADMIN_TOKEN_FILE):
            _ensure_credential(self.data_dir / name)
        tighten_files(self.data_dir, (SECRET_FILE, ADMIN_TOKEN_FILE))
        for node in self.nodes:
            self.start_node(node.node_id)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Quiesce every running node, then SIGTERM them (a clean stop), then SIGKILL whatever
        is left. Quiescing all first lets each node's last acks commit while every store still
        serves: stopped at once, the acks of the last deliveries could find no quorum left, and
        those occurrences would be delivered again after a restart."""
        running = [node for node in self.nodes if node.running()]
        for node in running:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            list(pool.map(lambda node: self._quiesce(node, timeout_s), running))
        for node in running:
            assert node.process is not None
            node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(5)

    def _quiesce(self, node: NodeProcess, timeout_s: float) -> None:
        request = urllib.request.Request(
            f"{node.url}/admin/quiesce", data=b"", headers=self.admin_headers(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=self._ssl):
                pass
        except (OSError, urllib.error.URLError) as error:
            # A node that cannot answer (crashed, partitioned) has nothing left to settle.
            print(f"{node.node_id}: not quiesced ({error}); stopping it anyway", file=sys.stderr)

    def node(self, node_id: str) -> NodeProcess:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id!r} in this cluster")

    def start_node(
        self, node_id: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> NodeProcess:
        """Start one node's process; `env` adds variables to its environment only (tests arm
        the fault points of one node this way), `args` options to its command line only
        (`--recover`)."""
        node = self.node(node_id)
        assert not node.running(), f"{node_id} is already running"
        make_private_directory(node.data_dir)
        log = os.fdopen(open_private(node.log_file, os.O_WRONLY | os.O_APPEND), "ab")
        node.process = subprocess.Popen(
            [*self._command(node), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self._environment(), **(env or {})},
        )
        log.close()
        return node

    def kill(self, node_id: str) -> None:
        """SIGKILL: a crash, with no chance to flush or say goodbye."""
        node = self.node(node_id)
        assert node.process is not None
        node.process.send_signal(signal.SIGCONT)
        node.process.kill()
        node.process.wait(10)

    def pause(self, node_id: str) -> None:
        process = self.node(node_id).process
        assert process is not None
        process.send_signal(signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        process = self.node(node_id).process
        assert process is not None
        process.send_signal(signal.SIGCONT)

    def restart(self, node_id: str, env: dict[str, str] | None = None) -> NodeProcess:
        node = self.node(node_id)
        if node.running():
            self.kill(node_id)
        return self.start_node(node_id, env)

    # -- membership changes ----------------------------------------------------------------

    def add_node(self, timeout_s: float = MEMBER_CHANGE_TIMEOUT_S) -> NodeProcess:
        """Add a node to the running cluster and start it; return it (not yet ready).

        The next number after the highest in use names it (`n{k}`, its ports as for node k).
        The members add its Raft address first (`POST /admin/members` on a running node), then
        it starts with every current member as a peer, which is what pysyncobj asks of a
        joining node. It heartbeats, and so takes partitions, only once it has caught up.
        """
        k = max(int(node.node_id.removeprefix("n")) for node in self.nodes) + 1
        if k > NODES_MAX:
            raise ValueError(f"a local cluster has at most {NODES_MAX} nodes")
        node = self._node_process(k)
        body = {"id": node.node_id, "raft": node.raft, "http": node.http}
        self._admin("POST", "/admin/members", body, timeout_s)
        self.nodes.append(node)
        return self.start_node(node.node_id)

    def remove_node(self, node_id: str, timeout_s: float = MEMBER_CHANGE_TIMEOUT_S) -> None:
        """Stop a node cleanly, then remove it from the cluster (`DELETE /admin/members/{id}`
        on another node) and forget it; its data dir stays.

        Stopping first is what makes the removal lose and repeat nothing: a clean stop ends
        the node's deliveries and commits their acks while it is still a member. Removed while
        running, its last acks could no longer commit, and the new owners would deliver those
        occurrences again.
        """
        node = self.node(node_id)
        if node.running():
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
            node.process.terminate()
            try:
                node.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(5)
        self._admin("DELETE", f"/admin/members/{node_id}", None, timeout_s, avoid=node_id)
        self.nodes.remove(node)

    # -- readiness -------------------------------------------------------------------------

    def wait_ready(
        self, timeout_s: float = READY_TIMEOUT_S_DEFAULT, nodes: list[str] | None = None
    ) -> str:
        """Wait until every (given, running) node is ready and they agree on one leader with
        every node live in the current epoch; return the leader's id."""
        wanted = [self.node(n) for n in nodes] if nodes else [n for n in self.nodes if n.process]
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            for node in wanted:
                if not node.running():
                    raise RuntimeError(f"{node.node_id} exited; see {node.log_file}")
            try:
                views = [self.cluster_status(node.node_id) for node in wanted]
            except (OSError, urllib.error.URLError, ValueError) as error:
                last = str(error)
                time.sleep(0.1)
                continue
            leader = _agreed_leader(views, {node.node_id for node in wanted})
            if leader is not None:
                return leader
            last = json.dumps([{k: v.get(k) for k in ("node", "leader", "epoch")} for v in views])
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready within {timeout_s} s: {last}")

    def cluster_status(self, node_id: str) -> dict[str, object]:
        url = f"{self.node(node_id).url}/admin/cluster"
        request = urllib.request.Request(url, headers=self.admin_headers())
        with urllib.request.urlopen(request, timeout=2, context=self._ssl) as reply:
            status: dict[str, object] = json.loads(reply.read())
        try:
            ready = f"{self.node(node_id).url}/v1.0/healthz/ready"
            with urllib.request.urlopen(ready, timeout=2, context=self._ssl) as reply:
                status["ready"] = reply.status == 204
        except urllib.error.HTTPError:
            status["ready"] = False
        return status

    def metrics(self, node_id: str) -> str:
        """The node's `GET /metrics` text."""
        url = f"{self.node(node_id).url}/metrics"
        request = urllib.request.Request(url, headers=self.admin_headers())
        with urllib.request.urlopen(request, timeout=5, context=self._ssl) as reply:
            text: str = reply.read().decode()
        return text

    # -- internals -------------------------------------------------------------------------

    def _node_process(self, k: int) -> NodeProcess:
        config = self.config
        if config.node_hosts is None:
            host = "127.0.0.1"
        elif k <= len(config.node_hosts):
            host = config.node_hosts[k - 1]
        else:
            raise ValueError(f"node_hosts names no address for node n{k}")
        return NodeProcess(
            node_id=f"n{k}",
            http=f"{host}:{config.http_port + k - 1}",
            raft=f"{host}:{config.raft_port + k - 1}",
            grpc=f"{host}:{config.grpc_port + k - 1}",
            data_dir=self.data_dir / f"n{k}",
            scheme="https" if config.tls else "http",
        )

    def _admin(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None,
        timeout_s: float,
        avoid: str | None = None,
    ) -> None:
        """Send a membership change to the first running node (not `avoid`) that takes it.

        A node that cannot answer (stopped, or no leader just now) is skipped, and the round
        is tried again until `timeout_s`; an answer other than 2xx or 503 is final.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", **self.admin_headers()}
        deadline = time.monotonic() + timeout_s
        last = "no running node"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.node_id == avoid or not node.running():
                    continue
                request = urllib.request.Request(
                    node.url + path, data=data, headers=headers, method=method
                )
                try:
                    with urllib.request.urlopen(request, timeout=timeout_s, context=self._ssl):
                        return
                except urllib.error.HTTPError as error:
                    if error.code != 503:
                        raise RuntimeError(
                            f"{method} {path}: {error.code} {error.read()!r}"
                        ) from None
                    last = f"{node.node_id}: 503"
                except OSError as error:
                    last = f"{node.node_id}: {error}"
            time.sleep(0.2)
        raise TimeoutError(f"{method} {path} not accepted within {timeout_s} s: {last}")

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / ADMIN_TOKEN_FILE

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def admin_headers(self) -> dict[str, str]:
        """What every admin route and /metrics require of a request."""
        return {"Authorization": f"Bearer {self.admin_token()}"}

    def _command(self, node: NodeProcess) -> list[str]:
        prefix = self.config.command_prefix
        command = [
            *(prefix(node.node_id) if prefix else []),
            sys.executable,
            "-m",
            "node.cli",
            "node",
            "--id",
            node.node_id,
            "--http",
            node.http,
            "--raft",
            node.raft,
            "--grpc",
            node.grpc,
            "--data-dir",
            str(node.data_dir),
            "--secret-file",
            str(self.data_dir / SECRET_FILE),
            "--admin-token-file",
            str(self.admin_token_file),
        ]
        for peer in self.nodes:
            if peer is not node:
                command += ["--peer", f"{peer.node_id}={peer.raft}"]
        if self.config.time_zone:
            command += ["--time-zone", self.config.time_zone]
        if self.config.open_api:
            command.append("--open-api")
        if self.config.tls:
            # No --tls-ca-file: each node trusts the CA that follows its certificate in its file.
            files = self._authority.issue(node.data_dir / "tls", "node")
            command += ["--tls-cert-file", str(files.cert_file)]
            command += ["--tls-key-file", str(files.key_file)]
        return command + list(self.config.node_args)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The files are the credentials: a variable left in the caller's environment must not
        # stand in for one the file does not give.
        env.pop("TOCK_CLUSTER_SECRET", None)
        env.pop("TOCK_ADMIN_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _ensure_credential(path: Path) -> None:
    """Generate a random credential into `path` (mode 0600) unless it exists already."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(CREDENTIAL_BYTES))


def _agreed_leader(views: list[dict[str, object]], wanted: set[str]) -> str | None:
    leaders = {view.get("leader") for view in views}
    epochs = {view.get("epoch") for view in views}
    if len(leaders) != 1 or len(epochs) != 1 or not all(view.get("ready") for view in views):
        return None
    leader = leaders.pop()
    members = views[0].get("members")
    if not isinstance(leader, str) or not isinstance(members, list):
        return None
    live = {m["id"] for m in members if isinstance(m, dict) and m.get("alive")}
    return leader if wanted <= live else None
