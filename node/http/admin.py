"""The admin routes: health probes, cluster status, membership, metrics, OpenAPI.

The routes know nothing of Raft or membership: they read and act through an `AdminView`, which
the node's server implements. The view is the whole contract between this file and the node.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

from aiohttp import web

from node.address import parse_address
from node.http.body import read_json_object
from node.http.metrics import METRICS_CONTENT_TYPE
from node.http.openapi import openapi_document
from node.http.stats import StatsRoute, StatsSource
from store.errors import Unavailable, ValidationError
from store.raft.store import RaftStore

NODE_ID_FORBIDDEN = "=:/ "


class MemberStatus(TypedDict):
    id: str
    http: str
    raft: str
    # Whether the member's last heartbeat committed recently enough (it is in the epoch).
    alive: bool
    # How many partitions the member owns in the current epoch.
    partitions: int


class ClusterStatus(TypedDict):
    """The body of GET /admin/cluster, as README.md documents it."""

    node: str
    role: str
    leader: str | None
    term: int
    commitIndex: int
    appliedIndex: int
    epoch: int
    # How many partitions this node owns in the current epoch.
    partitions: int
    # How many jobs the cluster holds (every node holds them all).
    jobs: int
    members: list[MemberStatus]


class StateDigest(TypedDict):
    """The body of GET /admin/digest."""

    # A hash of this node's whole replicated state (jobs, apps, watchers, membership): equal
    # digests mean equal replicas, and an unchanged digest means nothing was written.
    digest: str
    # This node's applied index when the digest was read (as last refreshed, every few ms).
    appliedIndex: int


class AdminView(StatsSource, Protocol):
    """What the admin routes need of a node; implemented by the node's server. Its counters for
    GET /admin/stats come from StatsSource (node/http/stats.py)."""

    def not_ready_reason(self) -> str | None:
        """None once the node has caught up with a leader and is healthy; else why it is not
        (`raft_not_ready_reason` is the usual start)."""
        ...

    def cluster_status(self) -> ClusterStatus: ...

    def metrics_body(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        ...

    async def state_digest(self) -> StateDigest:
        """The digest of the state after a barrier read: every write acknowledged before the
        call is in it. It hashes the whole state, so it is slow on a big one."""
        ...

    async def add_member(self, node_id: str, raft: str, http: str) -> None:
        """Add a node to the cluster; raises a TockError when it cannot be added."""
        ...

    async def remove_member(self, node_id: str) -> None:
        """Remove a node from the cluster; raises a TockError when it cannot be removed."""
        ...

    async def quiesce(self) -> None:
        """Stop firing and settle every delivery in flight (its ack committed), keeping the
        store serving; the first step of stopping a whole cluster without duplicates."""
        ...


def raft_not_ready_reason(store: RaftStore) -> str | None:
    """None once caught up with a leader: the store replayed up to a leader's commit and knows
    a leader."""
    if store.disk_error is not None:
        return f"this node cannot write its Raft journal ({store.disk_error})"
    if store.ready and store.status().leader is not None:
        return None
    return "this node has not caught up with a leader yet"


def add_admin_routes(app: web.Application, view: AdminView) -> None:
    routes = AdminRoutes(view)
    router = app.router
    router.add_route("GET", "/v1.0/healthz", routes.healthz)
    router.add_route("GET", "/v1.0/healthz/ready", routes.healthz_ready)
    # Dapr SDKs wait for this probe before their first call.
    router.add_route("GET", "/v1.0/healthz/outbound", routes.healthz)
    router.add_route("GET", "/admin/cluster", routes.cluster)
    router.add_route("GET", "/admin/digest", routes.digest)
    router.add_route("POST", "/admin/members", routes.add_member)
    router.add_route("DELETE", "/admin/members/{id}", routes.remove_member)
    router.add_route("POST", "/admin/quiesce", routes.quiesce)
    router.add_route("GET", "/metrics", routes.metrics)
    router.add_route("GET", "/openapi.json", routes.openapi)
    StatsRoute(view).register(app)


def member_from_body(body: object) -> tuple[str, str, str]:
    """(id, raft, http) from `{"id", "raft", "http"}`, each checked for its form."""
    if not isinstance(body, dict):
        raise ValidationError('the body must be {"id": ..., "raft": HOST:PORT, "http": HOST:PORT}')
    node_id, raft, http = (body.get(key) for key in ("id", "raft", "http"))
    if not isinstance(node_id, str) or not node_id or any(c in node_id for c in NODE_ID_FORBIDDEN):
        raise ValidationError(f"member id {node_id!r} must be a non-empty word")
    for key, address in (("raft", raft), ("http", http)):
        if not isinstance(address, str):
            raise ValidationError(f"member {key} must be a HOST:PORT string")
        parse_address(address)
    assert isinstance(raft, str) and isinstance(http, str)
    return node_id, raft, http


class AdminRoutes:
    def __init__(self, view: AdminView) -> None:
        self._view = view
        self._openapi = openapi_document()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def healthz_ready(self, request: web.Request) -> web.Response:
        reason = self._view.not_ready_reason()
        if reason is not None:
            raise Unavailable(reason)
        return web.Response(status=204)

    async def cluster(self, request: web.Request) -> web.Response:
        return web.json_response(self._view.cluster_status())

    async def digest(self, request: web.Request) -> web.Response:
        return web.json_response(await self._view.state_digest())

    async def add_member(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        await self._view.add_member(*member_from_body(body))
        return web.Response(status=204)

    async def remove_member(self, request: web.Request) -> web.Response:
        await self._view.remove_member(request.match_info["id"])
        return web.Response(status=204)

    async def quiesce(self, request: web.Request) -> web.Response:
        await self._view.quiesce()
        return web.Response(status=204)

    async def metrics(self, request: web.Request) -> web.Response:
        body = self._view.metrics_body()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._openapi)
