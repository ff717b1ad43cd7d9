"""GET /admin/stats: the trigger counters the dashboard's live charts poll, as small JSON.

`?scope=node` answers this node's counters; the default, `?scope=cluster`, answers every live
member's, gathered by this node (each member asked for its own with the caller's credentials,
within `MEMBER_TIMEOUT_S`), so a page served by one node charts the whole cluster without
asking other origins. A member that does not answer is listed with the reason instead.
Counters only grow: the page computes rates and lateness from the change between two polls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, TypedDict

import aiohttp
from aiohttp import web

from node.engine.metrics import EngineMetrics, TriggerResult
from store.errors import ValidationError

STATS_PATH = "/admin/stats"
SCOPES = ("cluster", "node")
# How long the gathering node waits for a member's counters.
MEMBER_TIMEOUT_S = 1.5
# The request headers passed on to members: the caller's credentials, whatever mode the
# cluster's API runs in.
FORWARDED_HEADERS = ("Authorization", "dapr-api-token")


class LatencyStats(TypedDict):
    count: int
    sumSeconds: float
    # [upper bound in seconds, samples at or below it], increasing; the samples above the last
    # bound are `count` minus the last pair's.
    buckets: list[tuple[float, int]]


class NodeStats(TypedDict):
    node: str
    timeMs: int
    # Triggers by result since the node started: success, failed, skipped, undelivered.
    triggers: dict[str, int]
    latency: LatencyStats
    deliveriesInFlight: int


class MemberError(TypedDict):
    """A member whose counters could not be had, and why."""

    node: str
    error: str


class ClusterStats(TypedDict):
    nodes: list[NodeStats | MemberError]


def node_stats(node_id: str, metrics: EngineMetrics) -> NodeStats:
    """This node's counters now, read from the engine's metrics."""
    (family,) = metrics.latency.collect()
    buckets: list[tuple[float, int]] = []
    count, total_s = 0, 0.0
    for sample in family.samples:
        if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf":
            buckets.append((float(sample.labels["le"]), int(sample.value)))
        elif sample.name.endswith("_count"):
            count = int(sample.value)
        elif sample.name.endswith("_sum"):
            total_s = sample.value
    return {
        "node": node_id,
        "timeMs": time.time_ns() // 1_000_000,
        "triggers": {result.value: metrics.triggers[result].total() for result in TriggerResult},
        "latency": {"count": count, "sumSeconds": total_s, "buckets": buckets},
        "deliveriesInFlight": metrics.deliveries_in_flight,
    }


class StatsSource(Protocol):
    """What the route needs of a node (the admin view implements it)."""

    def node_stats(self) -> NodeStats:
        """This node's trigger counters now."""
        ...

    def live_peers(self) -> list[tuple[str, str]]:
        """(id, HTTP address) of every live member but this node."""
        ...


class StatsRoute:
    """The handler of GET /admin/stats."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source
        self._session: aiohttp.ClientSession | None = None

    def register(self, app: web.Application) -> None:
        app.router.add_route("GET", STATS_PATH, self.stats)
        app.on_cleanup.append(self._close)

    async def stats(self, request: web.Request) -> web.Response:
        scope = request.query.get("scope", "cluster")
        if scope not in SCOPES:
            raise ValidationError(f"scope must be one of {', '.join(SCOPES)}: got {scope!r:.40}")
        if scope == "node":
            return web.json_response(self._source.node_stats())
        headers = {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}
        asked = [
            self._ask(f"{request.scheme}://{http}", node, headers)
            for node, http in self._source.live_peers()
        ]
        own = self._source.node_stats()
        nodes: list[NodeStats | MemberError] = [own, *await asyncio.gather(*asked)]
        return web.json_response(ClusterStats(nodes=nodes))

    async def _ask(
        self, base_url: str, node: str, headers: dict[str, str]
    ) -> NodeStats | MemberError:
        session = self._client()
        try:
            async with session.get(
                f"{base_url}{STATS_PATH}", params={"scope": "node"}, headers=headers
            ) as reply:
                if reply.status != 200:
                    return {"node": node, "error": f"answered {reply.status}"}
                answer: NodeStats = await reply.json()
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return {"node": node, "error": f"{type(error).__name__}: {error}"[:200]}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=MEMBER_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
