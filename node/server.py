"""One tock node: wires the Raft store, membership, the trigger engine and the HTTP and gRPC APIs.

Start order matters: the store first (it replays the journal, and every later part reads the
machine), then membership (heartbeats give this node its lease), then the watch registry's
copy and announcer, then the engine (it fires only under a lease), then the HTTP and gRPC
listeners. Stop runs the other way round: the watch streams close first (their unacked triggers
go back to their owners), and the engine finishes or hands back its in-flight deliveries and
flushes its acks before the store goes.

Every long-lived task runs under the node's Supervisor, and the store's batcher and snapshot
hooks report to the same HealthBoard: a node whose engine does not run, or one of whose tasks
keeps crashing, is not ready (503) and gives up its lease, so its partitions move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

import uvloop
from aiohttp import web

from cluster.membership import Membership
from cluster.ring import Ring
from node.access import Access
from node.app_tokens import AppTokenService
from node.backup import Backup
from node.config import NodeConfig
from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.dispatch import Deliverer
from node.delivery.grpc import GrpcDelivery
from node.delivery.http import HttpDelivery
from node.engine.engine import EngineConfig, TriggerEngine
from node.grpc.api import GrpcApi
from node.http.admin import ClusterStatus, StateDigest, raft_not_ready_reason
from node.http.api import build_app
from node.http.backup import BackupRoutes
from node.http.metrics import MetricsSources, node_registry, render_metrics
from node.http.operations import OperationRoutes
from node.http.stats import NodeStats, node_stats
from node.http.tokens import AppTokenRoutes
from node.internal_auth import RequestSigner, SignatureCheck
from node.service import JobService
from node.supervisor import Supervisor
from node.watch.announcer import WatchAnnouncer
from node.watch.delivery import WatchDelivery
from node.watch.forward import Forwarder, ForwardRoute
from node.watch.route import LocalWatchers, WatchRoute
from store.clock import Clock, SystemClock
from store.codec import Member
from store.errors import ValidationError
from store.fault_points import arm_from_environment
from store.machine import JobMachine
from store.private_files import make_private_directory
from store.raft.config import RaftConfig
from store.raft.store import RaftStore
from store.shared_machine import SharedMachine
from store.supervision import HealthBoard

log = logging.getLogger(__name__)


class Node:
    def __init__(self, config: NodeConfig, clock: Clock | None = None) -> None:
        config.validate()
        self.config = config
        self.clock = clock or SystemClock()
        self.me = Member(config.node_id, config.raft, config.http)
        self.machine = SharedMachine(JobMachine(config.partitions, Ring))
        self.supervisor = Supervisor(HealthBoard(self.clock, config.supervision))
        self.store = RaftStore(
            RaftConfig(
                self_address=config.raft,
                peer_addresses=tuple(config.peers.values()),
                data_dir=config.data_dir / "raft",
                secret=config.secret,
                tuning=config.raft_store,
                recover=config.recover,
            ),
            self.machine,
            self.clock,
            self.supervisor.board,
        )
        self.membership = Membership(
            self.me,
            self.store,
            self.machine,
            self.clock,
            config.membership,
            spawn=self.supervisor.spawn,
            healthy=lambda: self.supervisor.unhealthy_reason() is None,
        )
        self.watchers = LocalWatchers(
            config.watch,
            on_change=lambda: self.announcer.changed(),
            ack_timeout_s=config.delivery_timeout_s,
        )
        self.announcer = WatchAnnouncer(
            config.node_id,
            self.store,
            self.machine,
            self.clock,
            self.watchers.counts,
            config.announcer,
            self.supervisor,
            propose_timeout_s=config.propose_timeout_s,
        )
        # Built here, so that an unreadable certificate or key stops the node at start.
        self._http_ssl = config.tls.server_context()
        self.forwarder = Forwarder(
            config.forward,
            config.delivery_timeout_s,
            RequestSigner(config.secret, self.clock),
            self.supervisor,
            tls=config.tls.client_context(),
        )
        self.watch_delivery = WatchDelivery(
            config.node_id, self.store, self.machine, self.watchers, self.forwarder
        )
        app_hosts = AllowedHosts(config.app_host_allow)
        self.delivery = Deliverer(
            HttpDelivery(
                config.http_delivery,
                attempt_timeout_s=config.delivery_timeout_s,
                node_id=config.node_id,
                hosts=app_hosts,
            ),
            GrpcDelivery(
                config.grpc_delivery,
                attempt_timeout_s=config.delivery_timeout_s,
                node_id=config.node_id,
                hosts=app_hosts,
            ),
            self.watch_delivery,
        )
        self.engine = TriggerEngine(
            config.node_id,
            self.store,
            self.machine,
            self.delivery,
            self.clock,
            self.membership.holds_lease,
            self.membership.may_fire,
            engine_config_of(config),
            self.supervisor,
        )
        self.service = JobService(
            self.store,
            self.machine,
            self.clock,
            config.service,
            propose_timeout_s=config.propose_timeout_s,
            app_hosts=app_hosts,
        )
        self.app_tokens = AppTokenService(
            self.service,
            self.store,
            self.machine,
            self.clock,
            propose_timeout_s=config.propose_timeout_s,
        )
        self.access = Access(config.admin_token, open_api=config.open_api, tokens=self.app_tokens)
        self.grpc_api = (
            None
            if config.grpc is None
            else GrpcApi(
                self.service,
                config.grpc_api,
                address=config.grpc,
                message_bytes_max=config.body_bytes_max,
                access=self.access,
                credentials=config.tls.grpc_credentials(),
            )
        )
        self.metrics = node_registry(
            MetricsSources(
                raft=self.store.status,
                engine=self.engine.metrics,
                machine=self.machine,
                tasks=self.supervisor.board.reports,
                created=self.service.created,
            )
        )
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        make_private_directory(self.config.data_dir)  # it holds the store's files, and secrets
        self.store.start()
        await self.store.wait_bound()
        self.membership.start()
        self.watch_delivery.start()
        self.announcer.start()
        self.engine.start()
        config = self.config
        signatures = SignatureCheck(
            config.secret,
            self.clock,
            audience=config.http,
            window_s=config.forward.signature_window_s,
            replay_cache_max=config.forward.replay_cache_max,
        )
        backup = Backup(self.store, self.machine, config.propose_timeout_s)
        routes = (
            OperationRoutes(self.service),
            BackupRoutes(backup, config.propose_timeout_s),
            WatchRoute(self.watchers, self.announcer.registered, self.access.stands),
            ForwardRoute(self.watchers, signatures, config.body_bytes_max),
            AppTokenRoutes(self.app_tokens),
        )
        app = build_app(
            self.service,
            self,
            config.http_api,
            routes,
            body_bytes_max=config.body_bytes_max,
            access=self.access,
        )
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=config.http_api.stop_grace_s
        )
        await self._runner.setup()
        host, _, port = self.config.http.rpartition(":")
        await web.TCPSite(self._runner, host, int(port), ssl_context=self._http_ssl).start()
        if self.grpc_api is not None:
            await self.grpc_api.start()
        log.info(
            "node %s serving http %s grpc %s raft %s",
            self.me.id,
            self.me.http,
            self.config.grpc,
            self.me.raft,
        )

    async def quiesce(self) -> None:
        """Stop firing, finish the deliveries in flight and commit their acks, stop heartbeats
        (so the partitions move once the leader declares this node dead); the store and the
        APIs keep serving. Idempotent. `LocalCluster.stop` quiesces every node before it stops
        any: stopped together, a node's last acks could otherwise find no quorum left, and the
        occurrences they settled would be delivered again after a restart."""
        await self.engine.stop()
        await self.membership.stop()

    async def stop(self) -> None:
        await self.quiesce()
        if self.grpc_api is not None:
            await self.grpc_api.stop()
        # Open WebSockets would hold the HTTP server's shutdown until its timeout.
        await self.watchers.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.engine.stop()
        await self.announcer.stop()
        self.watch_delivery.stop()
        await self.membership.stop()
        await self.forwarder.close()
        await self.delivery.close()
        await self.store.stop()
        log.info("node %s stopped", self.me.id)

    # -- the admin view (node/http/admin.py renders it) ----------------------------------------

    def not_ready_reason(self) -> str | None:
        return (
            raft_not_ready_reason(self.store)
            or self.supervisor.unhealthy_reason()
            or self.membership.clock_not_ready_reason()
        )

    def cluster_status(self) -> ClusterStatus:
        raft = self.store.status()
        epoch, members, live, owned, jobs, announced = self.machine.read(
            lambda m: (
                m.epoch,
                m.members,
                set(m.live),
                {member.id: len(m.partitions_of(member.id)) for member in m.members},
                m.count(),
                m.announced(),
            )
        )
        ids_by_raft = {self.me.raft: self.me.id}
        ids_by_raft.update({raft_address: i for i, raft_address in self.config.peers.items()})
        ids_by_raft.update({m.raft: m.id for m in (*announced.values(), *members)})
        leader = raft.leader
        return {
            "node": self.me.id,
            "role": str(raft.role),
            "leader": ids_by_raft.get(leader, leader) if leader else None,
            "term": raft.term,
            "commitIndex": raft.commit_index,
            "appliedIndex": raft.applied_index,
            "epoch": epoch,
            "partitions": owned.get(self.me.id, 0),
            "jobs": jobs,
            "members": [
                {
                    "id": m.id,
                    "http": m.http,
                    "raft": m.raft,
                    "alive": m.id in live,
                    "partitions": owned.get(m.id, 0),
                }
                for m in members
            ],
        }

    def node_stats(self) -> NodeStats:
        return node_stats(self.me.id, self.engine.metrics)

    def live_peers(self) -> list[tuple[str, str]]:
        return self.machine.read(
            lambda m: [(p.id, p.http) for p in m.members if p.id in m.live and p.id != self.me.id]
        )

    def metrics_body(self) -> bytes:
        return render_metrics(self.metrics)

    async def state_digest(self) -> StateDigest:
        await self.store.barrier(self.config.propose_timeout_s)
        # Hashing the whole state takes long on a big one: in a thread, so that the event loop
        # (heartbeats, the lease, the engine) keeps running meanwhile.
        digest = await asyncio.to_thread(self.machine.read, lambda m: m.digest())
        return {"digest": digest, "appliedIndex": self.store.status().applied_index}

    async def add_member(self, node_id: str, raft: str, http: str) -> None:
        known = self.machine.read(lambda m: {member.id for member in m.members})
        if node_id in known:
            raise ValidationError(f"member {node_id!r} already exists")
        await self.store.add_member(raft, self.config.propose_timeout_s)

    async def remove_member(self, node_id: str) -> None:
        members = self.machine.read(lambda m: {member.id: member for member in m.members})
        member = members.get(node_id)
        if member is None:
            raise ValidationError(f"no member {node_id!r}")
        await self.store.remove_member(member.raft, self.config.propose_timeout_s)


def engine_config_of(config: NodeConfig) -> EngineConfig:
    """The engine's config, its acks waiting as long as every other proposal of the node."""
    acks = dataclasses.replace(config.engine.acks, propose_timeout_s=config.propose_timeout_s)
    return dataclasses.replace(config.engine, acks=acks)


async def serve(config: NodeConfig) -> None:
    arm_from_environment()
    node = Node(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await node.start()
    try:
        await stopping.wait()
    finally:
        await node.stop()


def run_node(config: NodeConfig) -> int:
    uvloop.run(serve(config))
    return 0
