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

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from node.delivery.allowed_hosts import AllowedHosts, AllowedResolver
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, Trigger
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


class HttpDelivery:
    """Sends triggers over HTTP; one instance per node, created and closed on its event loop.

    Each attempt ends after `attempt_timeout_s`. `node_id`, when given, is sent as `tock-node`
    with every trigger: which node delivered it (observability; the fencing tests use it to see
    that a node fires only the partitions it owns). `hosts` is where deliveries may go. The CA
    bundle is loaded here, so that a node with an unreadable one fails at start."""

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

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._config.connections_max,
                limit_per_host=self._config.connections_per_host_max,
                keepalive_timeout=30,
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

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryOutcome:
        """One attempt. 2xx and 404 are success (Dapr's rule); anything else (a redirect
        included), or no answer in time, is a failure, and so is a target the URL rules or the
        allow list refuse. Never raises for the app's faults: they are outcomes, not errors."""
        try:
            target = parse_app_url(url)
        except ValidationError:
            return DeliveryOutcome.FAILED
        if target.ip is not None and not self._hosts.allows_address(target.ip):
            return DeliveryOutcome.FAILED
        headers = {
            "content-type": trigger.content_type,
            "dapr-app-id": trigger.app,
            "dapr-namespace": trigger.namespace,
            "tock-trigger-id": trigger.trigger_id,
            "tock-scheduled-time": format_rfc3339_ms(trigger.scheduled_ms),
            "tock-attempt": str(trigger.attempt),
        }
        if trigger.app_token:
            headers["dapr-api-token"] = trigger.app_token
        if self._node_id:
            headers["tock-node"] = self._node_id
        job_url = f"{url.rstrip('/')}/job/{quote(trigger.name, safe='')}"
        try:
            async with self._client().post(
                job_url, data=trigger.data, headers=headers, allow_redirects=False
            ) as reply:
                status = reply.status
                if not await _read_to_end(reply.content, ANSWER_BYTES_MAX):
                    reply.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            return DeliveryOutcome.FAILED
        return (
            DeliveryOutcome.SUCCESS
            if 200 <= status < 300 or status == 404
            else DeliveryOutcome.FAILED
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
