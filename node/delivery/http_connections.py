"""The keep-alive HTTP/1.1 connections a node posts its triggers over: a pool per app host.

A delivery is one small POST whose answer matters only for its status, sent thousands of times a
second to a handful of apps. aiohttp's client session spent ~105 us of CPU on each (its request
and response objects, header multidicts, URL handling, cookie jar and payload machinery), three
quarters of it for nothing a trigger needs; this pool writes the request in one piece and reads
the answer with llhttp (httptools, the parser uvicorn uses), ~30 us. What it does:

- one request at a time per connection; a connection goes back to its pool only when its answer
  was read to the end, the app did not ask to close, and nothing followed the answer, so an
  answer is never read as another trigger's;
- at most `connections_max` connections in all and `connections_per_host_max` per host: beyond,
  a delivery waits (inside its own timeout) for one to come free;
- an idle connection is closed after `KEEPALIVE_S`;
- at most `HEAD_BYTES_MAX` of an answer's status line and headers and `ANSWER_BYTES_MAX` of its
  body are read: beyond, the connection is dropped, so an app answering gigabytes costs nothing;
- every socket lingers 0 s, so `abort_all` resets connections and discards what the kernel had
  not sent yet (nothing of a dropped attempt leaves later);
- the address dialled is the address checked: a host name not allowed by name is resolved here
  and only the addresses the allow list allows are tried.

The status is the answer: once the status line and headers are in, an app that closes the
connection in the middle of its body has still answered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.trigger import ANSWER_BYTES_MAX
from node.slots import Slots
from store.app_url import AppUrl

# An idle connection is closed after this long; apps (aiohttp's server: 75 s) keep theirs longer,
# so a pooled connection is rarely one the app has just closed.
KEEPALIVE_S = 30.0
# The most of an answer's status line and headers read before its body.
HEAD_BYTES_MAX = 64 * 1024

# SO_LINGER on, with a linger of 0 s: closing the socket resets the connection and discards
# whatever the kernel had not sent yet.
LINGER_RESET = struct.pack("ii", 1, 0)


class AnswerError(ConnectionError):
    """The app's answer broke HTTP, or the connection ended before the status and headers."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, then reads its answer up to the status."""

    def __init__(self, pool: _HostPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[int] | None = None
        self._head_bytes = 0
        self._body_bytes = 0
        self._status = 0
        # The status and headers of the (final, not 1xx) answer are in.
        self._headed = False
        self._complete = False
        self.reusable = False
        self.idle_since = 0.0
        # Done once the connection is lost: the loop has let go of it.
        self.gone: asyncio.Future[None]

    # -- the pool's side ----------------------------------------------------------------------

    async def exchange(self, request: bytes) -> int:
        """Send `request`; the answer's status, once the answer is read (or dropped at its
        bound). Raises AnswerError (or OSError) when no status came."""
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._head_bytes = self._body_bytes = self._status = 0
        self._headed = self._complete = self.reusable = False
        self._transport.write(request)
        try:
            return await self._answer
        finally:
            self._answer = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP or TLS transport (uvloop's TLS one is not an asyncio.Transport subclass).
        self._transport = cast(asyncio.Transport, transport)
        self.gone = asyncio.get_running_loop().create_future()
        self._pool.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.lost(self)
        self.gone.set_result(None)
        if self._headed:
            self._finish(reusable=False)
        else:
            self._fail(AnswerError("the app closed the connection before it answered"))

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            # Nothing asked: an answer to nobody (or the rest of a dropped one). Never reuse.
            self._fail(AnswerError("the app sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(reusable=False)
            return
        except httptools.HttpParserError as error:
            if self._headed:
                self._finish(reusable=False)
            else:
                self._fail(AnswerError(f"the app's answer is not HTTP/1.1: {error}"))
            return
        if not self._headed:
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_BYTES_MAX:
                self._fail(AnswerError(f"the app's answer has over {HEAD_BYTES_MAX} bytes of head"))
        elif self._complete:
            self._finish(reusable=self.reusable)
        elif self._body_bytes > ANSWER_BYTES_MAX:
            self._finish(reusable=False)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: the connection is out of step with its requests.
            self.reusable = False

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if self._complete or (100 <= status < 200 and status != 101):
            # Informational (100 Continue, 103 Early Hints): the answer follows. Or an answer
            # after the answer, which is not this request's.
            return
        self._status = status
        self._headed = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self._headed and not self._complete:
            self._complete = True
            self.reusable = self._parser.should_keep_alive()

    # -- the end of an exchange -----------------------------------------------------------------

    def _finish(self, *, reusable: bool) -> None:
        self.reusable = reusable
        if not reusable:
            self.abort()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(self._status)

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        self.abort()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


@dataclass(eq=False)
class _HostPool:
    """The connections to one (scheme, host, port)."""

    slots: Slots
    idle: list[_Connection] = field(default_factory=list)
    live: set[_Connection] = field(default_factory=set)

    def opened(self, connection: _Connection) -> None:
        self.live.add(connection)

    def lost(self, connection: _Connection) -> None:
        self.live.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)


class HttpConnections:
    """Pooled keep-alive connections to apps, for one node's event loop."""

    def __init__(
        self,
        *,
        connections_max: int,
        connections_per_host_max: int,
        tls: ssl.SSLContext,
        hosts: AllowedHosts,
    ) -> None:
        self._slots = Slots(connections_max)
        self._per_host_max = connections_per_host_max
        self._tls = tls
        self._hosts = hosts
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._sweep: asyncio.TimerHandle | None = None

    async def post(self, target: AppUrl, request: bytes) -> int:
        """Send `request` (a whole HTTP/1.1 request) to `target`'s host; the answer's status.
        Raises OSError (AnswerError among them) when there was no answer; cancelled (by the
        caller's timeout), the connection is dropped."""
        port = target.port or (443 if target.scheme == "https" else 80)
        key = (target.scheme, target.host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _HostPool(Slots(self._per_host_max))
            self._sweep_later()
        async with pool.slots, self._slots:
            connection = self._idle_connection(pool)
            if connection is None:
                connection = await self._connect(pool, target, port)
            try:
                status = await connection.exchange(request)
            except BaseException:
                connection.abort()
                raise
            if connection.reusable and connection in pool.live:
                connection.idle_since = time.monotonic()
                pool.idle.append(connection)
            return status

    @property
    def host_pools(self) -> int:
        """How many (scheme, host, port) have a pool now."""
        return len(self._pools)

    def abort_all(self) -> None:
        """Reset every connection, in use or idle: what the kernel had not sent is discarded."""
        for pool in self._pools.values():
            for connection in [*pool.live]:
                connection.abort()
            pool.idle.clear()

    async def close(self) -> None:
        """Drop every connection and wait (up to a second) until the loop has let go of them."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        gone = [connection.gone for pool in self._pools.values() for connection in pool.live]
        self.abort_all()
        if gone:
            await asyncio.wait(gone, timeout=1.0)

    def _idle_connection(self, pool: _HostPool) -> _Connection | None:
        # Most recently used first: the one least likely to have been closed by the app.
        while pool.idle:
            connection = pool.idle.pop()
            if time.monotonic() - connection.idle_since < KEEPALIVE_S:
                return connection
            connection.close()
        return None

    async def _connect(self, pool: _HostPool, target: AppUrl, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        error: OSError = OSError(f"{target.host} resolves to no address")
        for family, address in await self._addresses(target, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                https = target.scheme == "https"
                _, connection = await loop.create_connection(
                    lambda: _Connection(pool),
                    sock=sock,
                    ssl=self._tls if https else None,
                    server_hostname=target.host if https else None,
                )
                return connection
            except OSError as failed:
                sock.close()
                error = failed
            except BaseException:
                sock.close()
                raise
        raise error

    async def _addresses(
        self, target: AppUrl, port: int
    ) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        """Where to dial `target`: its address, or what its name resolves to now, keeping only
        the addresses the allow list allows when the name itself is not allowed."""
        ip = target.ip
        if ip is not None:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            return [(family, (str(ip), port))]
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, port, type=socket.SOCK_STREAM
        )
        by_name = self._hosts.allows_name(target.host)
        found: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = [
            (info[0], info[4])
            for info in infos
            if by_name or self._hosts.allows_address(str(info[4][0]))
        ]
        if not found:
            raise OSError(f"{target.host} resolves to no address allowed by --app-host-allow")
        return found

    def _sweep_later(self) -> None:
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._close_stale)

    def _close_stale(self) -> None:
        """Close the connections idle for KEEPALIVE_S, and forget the pools nobody uses: an app
        that moves its URL from port to port must not leave a pool behind for each."""
        self._sweep = None
        now = time.monotonic()
        for key, pool in list(self._pools.items()):
            stale = [c for c in pool.idle if now - c.idle_since >= KEEPALIVE_S]
            for connection in stale:
                pool.idle.remove(connection)
                connection.close()
            if not pool.live and pool.slots.free == self._per_host_max:
                # Nothing open, nobody holding or waiting for a slot: the next delivery to
                # this host starts a pool afresh.
                del self._pools[key]
        if self._pools:
            self._sweep_later()
