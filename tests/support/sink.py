"""A real HTTP app that records every trigger it receives: the other end of delivery tests.

It runs an aiohttp server on 127.0.0.1 (or `host`) in a thread of its own (so tests that drive
real node processes can use it without an event loop of their own), records each call with its
arrival wall time, and answers with a status chosen per job name (`script`), e.g. fail twice then
succeed. With `tls` it serves HTTPS; with `redirect_to`, every answer carries a `Location` to
that base URL (a redirecting app, with a 3xx status); with `answer_bytes`, every answer has a
body that long, streamed in chunks a few milliseconds apart until the client goes away, and
`answered_bytes` records how much of each got out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

# How long stop() waits for the connections to close (a TLS one exchanges close_notify first).
CLOSE_TIMEOUT_S = 5.0
# A streamed answer's chunks, and the pause between them: slow enough that what gets out
# depends on the client reading, not on how much the sockets' buffers hold.
ANSWER_CHUNK_BYTES = 64 * 1024
ANSWER_CHUNK_PAUSE_S = 0.01


@dataclass(frozen=True)
class Call:
    name: str
    received_ms: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    """`status_for(name, call_number)` picks the answer; the default is always 200."""

    status_for: Callable[[str, int], int] = lambda name, n: 200
    delay_s: float = 0.0
    tls: ssl.SSLContext | None = None
    redirect_to: str | None = None
    answer_bytes: int = 0
    answered_bytes: list[int] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    # Partition tests listen on their bridge's address, where nodes in namespaces reach it.
    host: str = "127.0.0.1"
    port: int = 0
    # Requests being answered right now, and the most there ever were at once.
    in_flight: int = 0
    in_flight_max: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    # Connections not yet lost, and whether there is none: stop() waits for it (see _Counted).
    _open: int = 0
    _none_open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)
        self._none_open.set()

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> Sink:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("sink did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def calls_for(self, name: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.name == name]

    def wait_for(self, name: str, count: int, timeout_s: float) -> list[Call]:
        """Block until `name` got at least `count` calls or the timeout passes; return them."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                got = [c for c in self.calls if c.name == name]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._changed.wait(left)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/job/{name}", self._on_job)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        serving = self._loop.create_server(
            self._connection, self.host, self.port, ssl=self.tls, reuse_address=True
        )
        self._server = self._loop.run_until_complete(serving)
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _connection(self) -> asyncio.Protocol:
        assert self._runner is not None and self._runner.server is not None
        return _Counted(self._runner.server(), self)

    async def _close(self) -> None:
        assert self._server is not None and self._runner is not None
        self._server.close()
        await self._runner.cleanup()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._none_open.wait()

    async def _on_job(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        name = request.match_info["name"]
        call = Call(name, time.time_ns() // 1_000_000, dict(request.headers), body)
        with self._changed:
            self.calls.append(call)
            number = sum(1 for c in self.calls if c.name == name)
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            self._changed.notify_all()
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            headers = (
                {} if self.redirect_to is None else {"Location": self.redirect_to + request.path}
            )
            status = self.status_for(name, number)
            if self.answer_bytes:
                return await self._stream_answer(request, status)
            return web.Response(status=status, headers=headers)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _stream_answer(self, request: web.Request, status: int) -> web.StreamResponse:
        reply = web.StreamResponse(status=status)
        reply.content_length = self.answer_bytes
        await reply.prepare(request)
        sent = 0
        try:
            while sent < self.answer_bytes:
                chunk = b"x" * min(ANSWER_CHUNK_BYTES, self.answer_bytes - sent)
                await reply.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(ANSWER_CHUNK_PAUSE_S)
        except ConnectionError:
            pass
        finally:
            with self._changed:
                self.answered_bytes.append(sent)
                self._changed.notify_all()
        return reply


class _Counted(asyncio.Protocol):
    """One connection's aiohttp protocol, counted in `sink._open` until the connection is lost.

    A TLS connection is lost only after its close_notify exchange with the client, a round trip
    after the server closed it: a sink that stopped its loop before then would leave the socket
    open. stop() waits until every connection is lost instead."""

    def __init__(self, inner: asyncio.Protocol, sink: Sink) -> None:
        self._inner = inner
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sink._open += 1
        self._sink._none_open.clear()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._sink._open -= 1
            if not self._sink._open:
                self._sink._none_open.set()
