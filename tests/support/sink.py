"""A real HTTP app that records every trigger it receives: the other end of delivery tests.

It runs an aiohttp server on 127.0.0.1 (or `host`) in a thread of its own (so tests that drive
real node processes can use it without an event loop of their own), records each call with its
arrival wall time, and answers with a status chosen per job name (`script`), e.g. fail twice
then succeed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


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
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sink:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("sink did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
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
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _on_job(self, request: web.Request) -> web.Response:
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
            return web.Response(status=self.status_for(name, number))
        finally:
            with self._lock:
                self.in_flight -= 1
