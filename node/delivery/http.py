"""HTTP delivery of a trigger to its app: `POST {url}/job/{name}`.

One pooled keep-alive connector serves every app, because a busy node sends thousands of
triggers a second to a handful of apps and a fresh TCP connection per trigger would cost more
than the request. Each attempt has its own timeout; the failure policy (retries and their
interval) belongs to the engine, which decides what a FAILED attempt means for the job.

A delivery goes to the registered target and nowhere else: redirects are never followed (a 3xx
is a failed attempt, so the payload and the app's token never reach another host), the target
must be allowed by the node's allow list (allowed_hosts.py: the address dialled is the address
checked), and at most `ANSWER_BYTES_MAX` of an answer is read; beyond that the connection is
closed rather than drained, so an app answering gigabytes costs the node nothing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp.connector import AddrInfoType

from node.delivery.allowed_hosts import AllowedHosts, AllowedResolver
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, DeliveryReport, Trigger
from store.app_url import parse_app_url
from store.errors import ValidationError
from store.schedule import format_rfc3339_ms


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    connections_max: int = 256
    connections_per_host_max: int = 128
    # The CA bundle (PEM) HTTPS deliveries trust (`--app-ca-file`); None: the system's store.
    ca_file: Path | None = None

    def validate(self) -> None:
        if min(self.connections_max, self.connections_per_host_max) <= 0:
            raise ValidationError("connections_max and connections_per_host_max must be positive")


# SO_LINGER on, with a linger of 0 s: closing the socket resets the connection and discards
# whatever the kernel had not sent yet.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _resetting_socket(address: AddrInfoType) -> socket.socket:
    family, kind, protocol, _, _ = address
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    return sock


class HttpDelivery:
    """Sends triggers over HTTP; one instance per node, created and closed on its event loop.

    Each attempt ends after `attempt_timeout_s`, or the trigger's own timeout when it has one.
    `node_id`, when given, is sent as `tock-node` with every trigger: which node delivered it
    (observability; the fencing tests use it to see that a node fires only the partitions it
    owns). `hosts` is where deliveries may go. The CA bundle is loaded here, so that a node with
    an unreadable one fails at start."""

    def __init__(
        self,
        config: DeliveryConfig,
        *,
        attempt_timeout_s: float,
        node_id: str | None = None,
        hosts: AllowedHosts | None = None,
    ) -> None:
        config.validate()
        self._config = config
        self._attempt_timeout_s = attempt_timeout_s
        self._node_id = node_id
        self._hosts = hosts or AllowedHosts()
        cafile = None if config.ca_file is None else str(config.ca_file)
        self._ssl = ssl.create_default_context(cafile=cafile)
        self._session: aiohttp.ClientSession | None = None
        # Sessions closing after an abandon: kept so that their tasks are not collected.
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._config.connections_max,
                limit_per_host=self._config.connections_per_host_max,
                keepalive_timeout=30,
                socket_factory=_resetting_socket,
                ssl=self._ssl,
                resolver=AllowedResolver(self._hosts) if self._hosts.restricted else None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._attempt_timeout_s),
                # Apps answer with whatever they like; tock reads only the status.
                auto_decompress=False,
            )
        return self._session

    def abandon(self) -> None:
        """Reset every connection, in use or idle, and start afresh: a request that has not
        fully left is never sent (SO_LINGER 0 discards what the kernel holds), so no copy of
        it reaches the app once the link comes back, after its replacement."""
        session, self._session = self._session, None
        if session is None:
            return
        connector = session.connector
        if isinstance(connector, aiohttp.TCPConnector):
            # aiohttp closes connections gracefully (what is queued still leaves); abort()
            # closes the socket at once, and the socket's linger of 0 makes that a reset.
            protocols = [*connector._acquired]
            protocols += [proto for idle in connector._conns.values() for proto, _ in idle]
            for protocol in protocols:
                protocol.abort()
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryReport:
        """One attempt. 2xx and 404 are success (Dapr's rule); anything else (a redirect
        included), or no answer in time, is a failure, and so is a target the URL rules or the
        allow list refuse. Never raises for the app's faults: they are outcomes, not errors."""
        try:
            target = parse_app_url(url)
        except ValidationError:
            return DeliveryReport(DeliveryOutcome.FAILED)
        if target.ip is not None and not self._hosts.allows_address(target.ip):
            return DeliveryReport(DeliveryOutcome.FAILED)
        headers = {
            "content-type": trigger.content_type,
            "dapr-app-id": trigger.app,
            "dapr-namespace": trigger.namespace,
            "tock-trigger-id": trigger.trigger_id,
            "tock-scheduled-time": format_rfc3339_ms(trigger.scheduled_ms),
            "tock-attempt": str(trigger.attempt),
        }
        if trigger.manual:
            headers["tock-manual"] = "true"
        if trigger.app_token:
            headers["dapr-api-token"] = trigger.app_token
        if self._node_id:
            headers["tock-node"] = self._node_id
        job_url = f"{url.rstrip('/')}/job/{quote(trigger.name, safe='')}"
        client = self._client()
        # Without a timeout of its own, the session's (the node's) applies.
        timeout = client.timeout
        if trigger.timeout_s is not None:
            timeout = aiohttp.ClientTimeout(total=trigger.timeout_s)
        try:
            async with client.post(
                job_url, data=trigger.data, headers=headers, timeout=timeout, allow_redirects=False
            ) as reply:
                status = reply.status
                if not await _read_to_end(reply.content, ANSWER_BYTES_MAX):
                    reply.close()
        except TimeoutError:
            return DeliveryReport(DeliveryOutcome.FAILED, timed_out=True)
        except (aiohttp.ClientError, OSError):
            return DeliveryReport(DeliveryOutcome.FAILED)
        succeeded = 200 <= status < 300 or status == 404
        return DeliveryReport(
            DeliveryOutcome.SUCCESS if succeeded else DeliveryOutcome.FAILED, status
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_to_end(content: aiohttp.StreamReader, bytes_max: int) -> bool:
    """Read and drop an answer's body, so that its connection can serve the next trigger;
    False, having read a little more than `bytes_max`, when the body is longer than that."""
    read = 0
    while chunk := await content.read(bytes_max + 1 - read):
        read += len(chunk)
        if read > bytes_max:
            return False
    return True
