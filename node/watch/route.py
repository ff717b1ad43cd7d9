"""The watch stream: apps that hold `GET /v1.0/apps/{appId}/watch` get their triggers
pushed over a WebSocket, and this node's registry of the streams connected to it.

A `Watcher` is one stream. Each trigger pushed on it gets the stream's next id and waits, in
`in_flight`, for the app's ack; triggers ready together go out in one frame. `LocalWatchers`
holds this node's watchers by app and delivers a trigger to one of them in turn: a stream that
closes hands its unacked triggers back, and they go to the app's next watcher here. Only when no
watcher of the app is left here is a trigger UNDELIVERABLE, for the caller to try elsewhere.

Which nodes hold watchers of which app is replicated (watch_announcer.py), so the owner of a
job can find a watcher anywhere in the cluster (watch_delivery.py).

Threads: everything here runs on the node's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from node.access import Caller
from node.delivery.sending import SENDING, Fenced, Sending
from node.delivery.trigger import DeliveryOutcome, Trigger
from node.http.access import caller_of
from node.http.openapi import API_PREFIXES
from node.slots import Slots
from node.watch.frames import decode_acks, encode_triggers
from store.errors import Unavailable, ValidationError
from store.machine import AppKey

log = logging.getLogger(__name__)

WATCH_PATH = "/apps/{appId}/watch"


@dataclass(frozen=True, kw_only=True)
class WatchConfig:
    # Triggers sent in one frame at most.
    frame_triggers_max: int = 256
    # The largest frame an app may send (its acks).
    frame_bytes_max: int = 1024 * 1024
    # Triggers pushed on one stream and not yet acked; a full stream makes deliveries wait.
    stream_in_flight_max: int = 4096
    # Streams one node holds, over every app.
    watchers_max: int = 1024
    # How long the handshake waits for the cluster to record the new watcher.
    register_wait_s: float = 5.0
    # Pings keep idle streams alive through proxies and find dead peers.
    heartbeat_s: float = 10.0
    # How long a close waits for the app's closing answer.
    close_timeout_s: float = 2.0
    # How often a stream opened with an app token checks that the token still stands: a revoked
    # token's streams close within this (plus the revocation's way through the log).
    token_check_s: float = 0.25

    def validate(self) -> None:
        counts = (self.frame_triggers_max, self.frame_bytes_max, self.stream_in_flight_max)
        periods = (self.register_wait_s, self.heartbeat_s, self.close_timeout_s, self.token_check_s)
        if min(*counts, self.watchers_max) <= 0 or min(periods) <= 0:
            raise ValidationError(
                "frame_triggers_max, frame_bytes_max, stream_in_flight_max, watchers_max, "
                "register_wait_s, heartbeat_s, close_timeout_s and token_check_s must be positive"
            )


class Closed(Exception):
    """The stream closed before the trigger was acked: it goes to another watcher."""


class Watcher:
    """One app's WebSocket: pushes triggers in frames and matches the app's acks to them."""

    def __init__(self, app: AppKey, socket: web.WebSocketResponse, config: WatchConfig) -> None:
        self.app = app
        self._socket = socket
        self._config = config
        self._ids = itertools.count(1)
        self._in_flight: dict[int, asyncio.Future[DeliveryOutcome]] = {}
        self._outbox: asyncio.Queue[tuple[int, Trigger, Sending | None]] = asyncio.Queue()
        self._slots = Slots(config.stream_in_flight_max)
        self.closed = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def push(self, trigger: Trigger) -> DeliveryOutcome:
        """Send the trigger and wait for its ack; Closed if the stream ends first. The caller
        bounds the wait: cancelled, the trigger is forgotten and a late ack for it ignored.
        The engine's `Sending` of the delivery (node/delivery/sending.py) is `out` from the
        moment its frame is written until the wait ends."""
        sending = SENDING.get()
        async with self._slots:
            if self.closed:
                raise Closed
            stream_id = next(self._ids)
            acked: asyncio.Future[DeliveryOutcome] = asyncio.get_running_loop().create_future()
            self._in_flight[stream_id] = acked
            self._outbox.put_nowait((stream_id, trigger, sending))
            try:
                return await acked
            finally:
                self._in_flight.pop(stream_id, None)
                if sending is not None:
                    sending.out = False

    async def serve(self, request: web.Request) -> None:
        """Answer the handshake, then send frames and read acks until the app or the node
        closes the stream; whatever is unacked then is handed back (Closed)."""
        sender: asyncio.Task[None] | None = None
        try:
            if self.closed:
                return
            await self._socket.prepare(request)
            sender = asyncio.create_task(self._send_frames())
            await self._read_acks()
        finally:
            self.closed = True
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            for acked in self._in_flight.values():
                if not acked.done():
                    acked.set_exception(Closed())

    async def close(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"node stopping"
    ) -> None:
        # A stream still in its handshake is never served (serve checks `closed` first).
        self.closed = True
        if self._socket.prepared:
            await self._socket.close(code=code, message=message)

    async def _send_frames(self) -> None:
        while True:
            frame = [await self._outbox.get()]
            while len(frame) < self._config.frame_triggers_max and not self._outbox.empty():
                frame.append(self._outbox.get_nowait())
            # A trigger whose wait ended (timeout, or abandoned) while queued is not sent at all.
            live = [item for item in frame if item[0] in self._in_flight]
            if not live:
                continue
            data = encode_triggers([(stream_id, trigger) for stream_id, trigger, _ in live])
            # Out from here: the frame is written before send_bytes first yields, and a
            # compressed one is shielded; only the stream's end stops it, and that ends the waits.
            for _, _, sending in live:
                if sending is not None:
                    sending.out = True
            try:
                await self._socket.send_bytes(data)
            except (ConnectionError, RuntimeError):
                # The stream broke under us: closing it ends the ack loop, which hands back
                # everything in flight.
                await self._socket.close()
                return

    async def _read_acks(self) -> None:
        async for message in self._socket:
            if message.type is not WSMsgType.BINARY:
                await self._socket.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary only")
                return
            try:
                acks = decode_acks(message.data, self._config.frame_bytes_max)
            except ValidationError as error:
                await self._socket.close(code=WSCloseCode.INVALID_TEXT, message=str(error).encode())
                return
            for stream_id, outcome in acks:
                # Unknown and repeated ids find nothing: ignored, as Dapr ignores them.
                acked = self._in_flight.pop(stream_id, None)
                if acked is not None and not acked.done():
                    acked.set_result(outcome)


class LocalWatchers:
    """This node's watchers, by app. `on_change` is called whenever an app's count changes.

    A trigger pushed here and not acked within `ack_timeout_s` (the node's delivery timeout) is
    FAILED, and the failure policy applies."""

    def __init__(
        self, config: WatchConfig, on_change: Callable[[], None], *, ack_timeout_s: float
    ) -> None:
        config.validate()
        self.config = config
        self.ack_timeout_s = ack_timeout_s
        self._on_change = on_change
        self._by_app: dict[AppKey, list[Watcher]] = {}
        self._turn = itertools.count()

    def counts(self) -> dict[AppKey, int]:
        return {app: len(watchers) for app, watchers in self._by_app.items()}

    def has(self, app: AppKey) -> bool:
        return app in self._by_app

    def add(self, watcher: Watcher) -> None:
        if sum(map(len, self._by_app.values())) >= self.config.watchers_max:
            raise Unavailable(f"this node holds {self.config.watchers_max} watchers already")
        self._by_app.setdefault(watcher.app, []).append(watcher)
        self._on_change()

    def remove(self, watcher: Watcher) -> None:
        watchers = self._by_app.get(watcher.app, [])
        if watcher in watchers:
            watchers.remove(watcher)
            if not watchers:
                del self._by_app[watcher.app]
            self._on_change()

    async def deliver(self, trigger: Trigger, timeout_s: float) -> DeliveryOutcome:
        """Push to the app's watchers here, the next one after a stream closes; FAILED when
        no ack comes in `timeout_s`, UNDELIVERABLE when no watcher of the app is left here.
        A delivery fenced while its trigger was out (its lease lapsed) pushes nothing more:
        its stream closing ends it in Fenced."""
        app = (trigger.namespace, trigger.app)
        sending = SENDING.get()
        try:
            async with asyncio.timeout(timeout_s):
                while (watcher := self._pick(app)) is not None:
                    try:
                        return await watcher.push(trigger)
                    except Closed:
                        if sending is not None and sending.fenced:
                            raise Fenced from None
                        continue
        except TimeoutError:
            return DeliveryOutcome.FAILED
        return DeliveryOutcome.UNDELIVERABLE

    def _pick(self, app: AppKey) -> Watcher | None:
        """The next open watcher of the app in turn, the least busy one first among equals."""
        watchers = [w for w in self._by_app.get(app, ()) if not w.closed]
        if not watchers:
            return None
        start = next(self._turn) % len(watchers)
        rotated = watchers[start:] + watchers[:start]
        return min(rotated, key=lambda w: w.in_flight)

    async def close(self) -> None:
        """Close every stream here, at once: each close waits for the app's answer."""
        every = [watcher for watchers in self._by_app.values() for watcher in watchers]
        await asyncio.gather(*(watcher.close() for watcher in every))


class WatchRoute:
    """`GET {prefix}/apps/{appId}/watch`: upgrade to a WebSocket and serve it as a watcher.

    `registered(app)` waits (bounded) until the cluster has recorded this node's watchers of
    the app, so that once the handshake answers, triggers anywhere in the cluster come here.
    `stands(caller)` tells whether the credential the stream was opened with still stands: a
    stream whose app token is revoked is closed (policy violation)."""

    def __init__(
        self,
        watchers: LocalWatchers,
        registered: Callable[[AppKey, float], Awaitable[None]],
        stands: Callable[[Caller], bool],
    ) -> None:
        self._watchers = watchers
        self._registered = registered
        self._stands = stands

    def register(self, router: web.UrlDispatcher) -> None:
        for prefix in API_PREFIXES:
            router.add_route("GET", prefix + WATCH_PATH, self.watch)

    async def watch(self, request: web.Request) -> web.WebSocketResponse:
        # The access middleware checked the scope before anything else: the namespace and app
        # id travel in the commands that record this watcher, which every replica must be able
        # to encode.
        caller = caller_of(request)
        app = (caller.scope.namespace, caller.scope.app)
        config = self._watchers.config
        socket = web.WebSocketResponse(
            max_msg_size=config.frame_bytes_max,
            heartbeat=config.heartbeat_s,
            timeout=config.close_timeout_s,
        )
        if not socket.can_prepare(request).ok:
            raise ValidationError("the watch route needs a WebSocket upgrade")
        watcher = Watcher(app, socket, config)
        self._watchers.add(watcher)
        guard = asyncio.create_task(self._close_once_revoked(caller, watcher))
        try:
            # Served even if the cluster cannot record it now (no quorum): the announcer keeps
            # trying, and this node's own jobs reach the watcher meanwhile.
            with contextlib.suppress(TimeoutError):
                await self._registered(app, config.register_wait_s)
            await watcher.serve(request)
        finally:
            # A guard that found the token revoked is closing the stream: let it finish.
            if self._stands(caller):
                guard.cancel()
            await asyncio.gather(guard, return_exceptions=True)
            self._watchers.remove(watcher)
        return socket

    async def _close_once_revoked(self, caller: Caller, watcher: Watcher) -> None:
        if caller.token_id is None:
            return
        while True:
            await asyncio.sleep(self._watchers.config.token_check_s)
            if not self._stands(caller):
                break
        log.info("closing a watch stream of %s: its app token was revoked", watcher.app)
        await watcher.close(WSCloseCode.POLICY_VIOLATION, b"app token revoked")
