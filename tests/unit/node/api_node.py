"""A real one-node tock HTTP server for the API tests: RaftStore, JobService and build_app (with
the job operations and backup routes) on an event loop in a thread of its own, serving on a free
127.0.0.1 port. No engine runs: nothing fires.

`call` is a plain http.client request, so the server is tested independently of the
client in node/client/. The node runs the Jobs API open unless told otherwise; its admin routes
need ADMIN_TOKEN (`ADMIN` holds the header).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from cluster.ring import Ring
from node.access import Access
from node.app_tokens import AppTokenService
from node.backup import Backup
from node.engine.metrics import EngineMetrics
from node.http.admin import ClusterStatus, MemberStatus, StateDigest, raft_not_ready_reason
from node.http.api import ApiConfig, build_app
from node.http.backup import BackupRoutes
from node.http.metrics import MetricsSources, node_registry, render_metrics
from node.http.operations import OperationRoutes
from node.http.stats import NodeStats, node_stats
from node.http.tokens import AppTokenRoutes
from node.service import JobService, ServiceConfig
from store.clock import SystemClock
from store.codec import (
    Ack,
    AckEntry,
    Command,
    EntryKind,
    Member,
    Outcome,
    SetMembers,
    encode_command,
)
from store.jobs import Job, JobLimits
from store.machine import JobMachine, Result
from store.raft.config import RaftConfig
from store.raft.store import RaftStore
from store.shared_machine import SharedMachine
from tests.support.cluster_secret import TEST_CLUSTER_SECRET

T = TypeVar("T")

STARTUP_S_MAX = 20.0
LEADER_POLL_S = 0.02
PROPOSE_TIMEOUT_S = 5.0
PARTITIONS = 16
LIST_LIMIT_MAX = 50
# Small limits, so that the tests of "too large" send kilobytes, not megabytes.
DATA_BYTES_MAX = 2048
JOBS_MAX_PER_APP = 40
DATA_BYTES_MAX_PER_APP = 32 * DATA_BYTES_MAX
# Small, so that the tests' deletes by prefix take several chunks.
DELETE_PREFIX_CHUNK_MAX = 3
BODY_BYTES_MAX = 16 * 1024
# A page holds at most this many bytes of jobs: about 21 jobs with full data, 64 without.
LIST_BYTES_MAX = 64 * 1024
# The member id whose removal makes the view fail unexpectedly (the 500 test).
FAILING_MEMBER = "explodes"
ADMIN_TOKEN = "api-node-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The one member and its epoch, once become_owner made it the owner of every partition.
OWNER = "n1"
OWNER_EPOCH = 1
# How the attempts that `ack` reports went: started this long after the occurrence, took this
# long, acked this long after it; the app answered 200 (500 when it failed).
ACK_STARTED_AFTER_MS = 5
ACK_DURATION_MS = 3
ACK_AFTER_MS = 10
# The bounds the acks carry, as a node's configuration would give them.
HISTORY_MAX = 20
DEAD_LETTERS_MAX = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class StoreView:
    """An AdminView over one store: a single member owning every partition."""

    store: RaftStore
    machine: SharedMachine
    http: str
    raft: str
    metrics: CollectorRegistry
    added: list[tuple[str, str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    quiesced: int = 0

    def not_ready_reason(self) -> str | None:
        return raft_not_ready_reason(self.store)

    def cluster_status(self) -> ClusterStatus:
        status = self.store.status()
        member = MemberStatus(
            id="n1", http=self.http, raft=self.raft, alive=True, partitions=PARTITIONS
        )
        return ClusterStatus(
            node="n1",
            role=str(status.role),
            leader="n1" if status.leader else None,
            term=status.term,
            commitIndex=status.commit_index,
            appliedIndex=status.applied_index,
            epoch=1,
            partitions=PARTITIONS,
            jobs=self.machine.read(lambda m: m.count()),
            members=[member],
        )

    def node_stats(self) -> NodeStats:
        return node_stats("n1", EngineMetrics())

    def live_peers(self) -> list[tuple[str, str]]:
        return []

    def metrics_body(self) -> bytes:
        return render_metrics(self.metrics)

    async def state_digest(self) -> StateDigest:
        await self.store.barrier(STARTUP_S_MAX)
        digest = self.machine.read(lambda m: m.digest())
        return StateDigest(digest=digest, appliedIndex=self.store.status().applied_index)

    async def add_member(self, node_id: str, raft: str, http: str) -> None:
        self.added.append((node_id, raft, http))

    async def remove_member(self, node_id: str) -> None:
        if node_id == FAILING_MEMBER:
            raise RuntimeError("a bug in the view")
        self.removed.append(node_id)

    async def quiesce(self) -> None:
        self.quiesced += 1


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class LiveNode:
    """One tock node's HTTP face over a real single-node Raft store, in a background thread."""

    def __init__(self, data_dir: Path, open_api: bool = True) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api = ApiConfig()
        self.open_api = open_api
        self.raft = RaftConfig(
            self_address=f"127.0.0.1:{free_port()}",
            peer_addresses=(),
            data_dir=data_dir,
            secret=TEST_CLUSTER_SECRET,
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.store: RaftStore | None = None
        self.service: JobService | None = None
        self.view: StoreView | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> LiveNode:
        self._thread.start()
        self.run(self._start())
        return self

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STARTUP_S_MAX)
        self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the node's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(STARTUP_S_MAX)

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; a body that is not bytes is sent as JSON."""
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=STARTUP_S_MAX)
        try:
            connection.request(method, path, body=raw, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def propose(self, command: Command) -> Result:
        """Put a command through the log as the node's own machinery would (the leader's
        membership, the engine's acks): no engine runs here to do it."""
        assert self.store is not None
        result = self.run(self.store.propose(encode_command(command), STARTUP_S_MAX))
        assert isinstance(result, Result), result
        return result

    def become_owner(self) -> None:
        """Make this node (n1) the owner of every partition, in epoch 1, as a cluster's leader
        would: acks from n1 count from then on."""
        raft = self.raft.self_address
        member = Member(OWNER, raft, f"127.0.0.1:{self.port}")
        assert self.propose(SetMembers(OWNER_EPOCH, (member,), (OWNER,))).ok

    def ack(
        self,
        namespace: str,
        app: str,
        name: str,
        outcome: Outcome,
        kind: EntryKind = EntryKind.OCCURRENCE,
    ) -> int:
        """Report an attempt at the job's current occurrence (or its pending manual run) as its
        owner's engine would, once become_owner ran; the scheduled time it was for."""
        job = self.job(namespace, app, name)
        at = job.manual_ms if kind is EntryKind.MANUAL else job.next_ms
        assert at is not None, "no run pending"
        status = 200 if outcome is Outcome.SUCCESS else 500
        started_ms = at + ACK_STARTED_AFTER_MS
        entry = AckEntry(job.uid, at, outcome, kind, started_ms, ACK_DURATION_MS, status)
        ack = Ack(OWNER_EPOCH, OWNER, at + ACK_AFTER_MS, (entry,), HISTORY_MAX, DEAD_LETTERS_MAX)
        counts = self.propose(ack).value
        assert counts == (1, 0), counts
        return at

    def job(self, namespace: str, app: str, name: str) -> Job:
        """The job as this node's replica holds it."""
        assert self.view is not None
        job = self.view.machine.read(lambda m: m.get(namespace, app, name))
        assert job is not None, (namespace, app, name)
        return job

    async def _start(self) -> None:
        machine = SharedMachine(JobMachine(PARTITIONS, Ring))
        store = self.store = RaftStore(self.raft, machine)
        store.start()
        await store.wait_ready(STARTUP_S_MAX)
        # No event tells when the status snapshot first names the leader: poll it, bounded.
        for _ in range(int(STARTUP_S_MAX / LEADER_POLL_S)):
            if raft_not_ready_reason(store) is None:
                break
            await asyncio.sleep(LEADER_POLL_S)
        assert raft_not_ready_reason(store) is None, "the one-node store elected no leader"
        service_config = ServiceConfig(
            list_limit_max=LIST_LIMIT_MAX,
            list_bytes_max=LIST_BYTES_MAX,
            job_limits=JobLimits(data_bytes_max=DATA_BYTES_MAX),
            jobs_max_per_app=JOBS_MAX_PER_APP,
            data_bytes_max_per_app=DATA_BYTES_MAX_PER_APP,
            delete_prefix_chunk_max=DELETE_PREFIX_CHUNK_MAX,
        )
        service = self.service = JobService(
            store, machine, SystemClock(), service_config, propose_timeout_s=PROPOSE_TIMEOUT_S
        )
        metrics = node_registry(
            MetricsSources(
                raft=store.status,
                engine=EngineMetrics(),
                machine=machine,
                tasks=list,
                created=service.created,
            )
        )
        self.view = StoreView(
            store, machine, f"127.0.0.1:{self.port}", self.raft.self_address, metrics
        )
        tokens = AppTokenService(
            service, store, machine, SystemClock(), propose_timeout_s=PROPOSE_TIMEOUT_S
        )
        backup = Backup(store, machine, PROPOSE_TIMEOUT_S)
        routes = (
            OperationRoutes(service),
            BackupRoutes(backup, PROPOSE_TIMEOUT_S),
            AppTokenRoutes(tokens),
        )
        app = build_app(
            service,
            self.view,
            self.api,
            routes,
            body_bytes_max=BODY_BYTES_MAX,
            access=Access(ADMIN_TOKEN, open_api=self.open_api, tokens=tokens),
        )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            await self.store.stop()
        # A handler that answered before its request body ended (an import's bad line) reads
        # the rest for aiohttp's lingering time, past the cleanup: it must not outlive the loop.
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
