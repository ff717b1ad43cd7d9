"""The hop from a job's owner to the node that holds a watcher of its app: batched HTTP.

The owner's `Forwarder` keeps one lane per target node. Triggers queue in the lane, and whatever
is queued when the lane's pump runs (up to `batch_max` and `batch_bytes_max`) goes as one
`POST /internal/v1/deliver`; up to `requests_per_node_max` such requests are in flight at once,
so a slow watcher delays its own batch, not the next. The target answers one outcome per
trigger once every one is acked, FAILED or timed out (`ForwardRoute`).

A trigger whose delivery the owner abandons (its lease lapsed) while it still waits in the lane
is dropped there, never sent. `abandon()` (the owner's fence) also cuts every batch in flight:
the hop's sockets close with a reset (SO_LINGER 0), so what the kernel still holds of a batch is
discarded rather than sent when a link comes back; what the target had already received is its
to push, as an HTTP request that reached the app is the app's.

A request that never reached the target (connection refused) is UNDELIVERABLE: the owner may
try elsewhere. One that may have reached it and got no answer is FAILED, as an HTTP delivery
with no answer is: the failure policy retries it.

Between nodes that serve TLS, the hop is https, each node's certificate checked against the CA
(node/tls.py); a certificate that does not check is logged and the batch handed back.

The route is internal: every request is signed with a key derived from the cluster secret that
only members know, fresh and never replayed (node/internal_auth.py).

Each lane's pump runs supervised (task `forward <address>`, fault point `forward`): a pump that
raises is logged, counted and started again after the backoff; the queued triggers wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.connector import AddrInfoType

from node.delivery.http_connections import LINGER_RESET
from node.delivery.trigger import DeliveryOutcome, Trigger
from node.internal_auth import SIGNATURE_HEADER, RequestSigner, SignatureCheck
from node.scope import checked_scope
from node.supervisor import Supervisor
from node.watch.frames import decode_forward, decode_outcomes, encode_forward, encode_outcomes
from node.watch.route import LocalWatchers
from store.errors import ValidationError
from store.fault_points import fault_point

log = logging.getLogger(__name__)

INTERNAL_DELIVER_PATH = "/internal/v1/deliver"
MSGPACK = "application/msgpack"
# The fault point of every lane's pump; each lane's task is named after its target as well.
TASK = "forward"


@dataclass(frozen=True, kw_only=True)
class ForwardConfig:
    batch_max: int = 256
    batch_bytes_max: int = 2 * 1024 * 1024
    requests_per_node_max: int = 8
    # Triggers waiting for a request to one node; beyond it they are UNDELIVERABLE (held back).
    queue_max: int = 8192
    # How much longer than the watcher's ack timeout the owner waits for the target's answer.
    answer_margin_s: float = 2.0
    # The largest answer accepted from a target.
    answer_bytes_max: int = 1024 * 1024
    # How far a request's signed time may be from the receiver's clock: far wider than the
    # clock offset members may have, far shorter than the life of a recorded request.
    signature_window_s: float = 30.0
    # Requests remembered within the window to refuse replays; beyond, new ones are refused.
    replay_cache_max: int = 65536

    def validate(self) -> None:
        bounds = (self.batch_max, self.batch_bytes_max, self.requests_per_node_max, self.queue_max)
        limits = (self.answer_bytes_max, self.signature_window_s, self.replay_cache_max)
        if min(*bounds, *limits) <= 0 or self.answer_margin_s < 0:
            raise ValidationError(
                "batch_max, batch_bytes_max, requests_per_node_max, queue_max, "
                "answer_bytes_max, signature_window_s and replay_cache_max must be positive, "
                "answer_margin_s >= 0"
            )


_Pending = tuple[Trigger, asyncio.Future[DeliveryOutcome]]


class _Lane:
    """The triggers bound for one node and the pump that sends them in batches."""

    def __init__(self, http_address: str, forwarder: Forwarder, supervisor: Supervisor) -> None:
        self._http_address = http_address
        self._forwarder = forwarder
        config = forwarder.config
        self._queue: deque[_Pending] = deque()
        self._queued = asyncio.Event()
        self._requests = asyncio.Semaphore(config.requests_per_node_max)
        self._sending: set[asyncio.Task[None]] = set()
        self._pump = supervisor.spawn(f"{TASK} {http_address}", self._run)

    async def deliver(self, trigger: Trigger) -> DeliveryOutcome:
        if len(self._queue) >= self._forwarder.config.queue_max:
            return DeliveryOutcome.UNDELIVERABLE
        outcome: asyncio.Future[DeliveryOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((trigger, outcome))
        self._queued.set()
        return await outcome

    async def _run(self) -> None:
        while True:
            fault_point(TASK)
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                await self._requests.acquire()
                batch = self._take_batch()
                if not batch:
                    self._requests.release()
                    continue
                task = asyncio.create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    def _take_batch(self) -> list[_Pending]:
        """The oldest queued triggers still awaited, as many as fit one request (at least one,
        unless none is). A trigger whose delivery was abandoned while it waited here (the
        owner's lease lapsed: its outcome was cancelled) is dropped, never sent: nothing of an
        abandoned delivery may reach the app."""
        config = self._forwarder.config
        batch: list[_Pending] = []
        size = 0
        while self._queue and len(batch) < config.batch_max:
            trigger, outcome = self._queue[0]
            if outcome.done():
                self._queue.popleft()
                continue
            size += len(trigger.data)
            if batch and size > config.batch_bytes_max:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _send(self, batch: list[_Pending]) -> None:
        # Cancelled (the node is stopping), the batch is handed back rather than left waiting.
        outcomes = [DeliveryOutcome.UNDELIVERABLE] * len(batch)
        try:
            triggers = [trigger for trigger, _ in batch]
            outcomes = await self._forwarder.post(self._http_address, triggers)
        finally:
            self._requests.release()
            for (_, outcome), value in zip(batch, outcomes, strict=True):
                if not outcome.done():
                    outcome.set_result(value)

    def abandon(self) -> None:
        """Cut the batches in flight: each ends, its triggers UNDELIVERABLE to whoever still
        waits (nobody, after a fence), and its connection is reset."""
        for task in self._sending:
            task.cancel()

    async def close(self) -> None:
        self._pump.cancel()
        for task in (self._pump, *self._sending):
            task.cancel()
        await asyncio.gather(self._pump, *self._sending, return_exceptions=True)
        while self._queue:
            _, outcome = self._queue.popleft()
            if not outcome.done():
                outcome.set_result(DeliveryOutcome.UNDELIVERABLE)


class Forwarder:
    """Delivers triggers through the watchers other nodes hold; one per node, on its loop."""

    def __init__(
        self,
        config: ForwardConfig,
        ack_timeout_s: float,
        signer: RequestSigner,
        supervisor: Supervisor,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`, when given, makes every hop https, checked with that context."""
        config.validate()
        self.config = config
        self._tls = tls
        self._scheme = "http" if tls is None else "https"
        self._supervisor = supervisor
        self._ack_timeout_s = ack_timeout_s
        self._signer = signer
        self._lanes: dict[str, _Lane] = {}
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, http_address: str, trigger: Trigger) -> DeliveryOutcome:
        """One attempt through the node serving HTTP at `http_address` (HOST:PORT)."""
        lane = self._lanes.get(http_address)
        if lane is None:
            lane = self._lanes[http_address] = _Lane(http_address, self, self._supervisor)
        return await lane.deliver(trigger)

    async def post(self, http_address: str, triggers: list[Trigger]) -> list[DeliveryOutcome]:
        """One batch to the node serving HTTP at `http_address`: an outcome per trigger, never
        an exception for its faults."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=True if self._tls is None else self._tls, socket_factory=resetting_socket
            )
            self._session = aiohttp.ClientSession(connector=connector)
        body = encode_forward(triggers, round(self._ack_timeout_s * 1000))
        timeout = aiohttp.ClientTimeout(total=self._ack_timeout_s + self.config.answer_margin_s)
        url = f"{self._scheme}://{http_address}{INTERNAL_DELIVER_PATH}"
        signature = self._signer.signature(http_address, "POST", INTERNAL_DELIVER_PATH, body)
        headers = {"content-type": MSGPACK, SIGNATURE_HEADER: signature}
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=timeout
            ) as reply:
                answer = await reply.read()
                if reply.status != 200:
                    log.warning("%s answered %d: %.200r", url, reply.status, answer)
                    return [DeliveryOutcome.FAILED] * len(triggers)
                return decode_outcomes(answer, len(triggers), self.config.answer_bytes_max)
        except aiohttp.ClientSSLError as error:
            # Never delivered: a certificate that does not check is the operator's to fix.
            log.warning("forwarding to %s: %r", url, error)
            return [DeliveryOutcome.UNDELIVERABLE] * len(triggers)
        except aiohttp.ClientConnectorError:
            return [DeliveryOutcome.UNDELIVERABLE] * len(triggers)
        except (aiohttp.ClientError, TimeoutError, OSError, ValidationError) as error:
            log.warning("forwarding %d triggers to %s: %r", len(triggers), url, error)
            return [DeliveryOutcome.FAILED] * len(triggers)

    def abandon(self) -> None:
        """Cut every batch in flight to every node, its connection reset (see the module doc)."""
        for lane in self._lanes.values():
            lane.abandon()

    async def close(self) -> None:
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def resetting_socket(addr_info: AddrInfoType) -> socket.socket:
    """A socket for the hop whose close resets the connection (SO_LINGER 0), discarding what
    the kernel has not sent yet."""
    family, kind, protocol, _, _ = addr_info
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    return sock


class ForwardRoute:
    """`POST /internal/v1/deliver`: push a batch from an owner down this node's watchers."""

    def __init__(
        self, watchers: LocalWatchers, signatures: SignatureCheck, body_bytes_max: int
    ) -> None:
        self._watchers = watchers
        self._signatures = signatures
        self._body_bytes_max = body_bytes_max

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("POST", INTERNAL_DELIVER_PATH, self.deliver)

    async def deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get(SIGNATURE_HEADER)
        self._signatures.check(request.method, request.raw_path, body, signature)
        triggers, timeout_ms = decode_forward(body, self._body_bytes_max)
        for trigger in triggers:
            checked_scope(trigger.namespace, trigger.app)
        timeout_s = min(timeout_ms / 1000, self._watchers.ack_timeout_s)
        outcomes = await asyncio.gather(*(self._watchers.deliver(t, timeout_s) for t in triggers))
        return web.Response(body=encode_outcomes(outcomes), content_type=MSGPACK)
