"""HTTP delivery of a trigger to its app: `POST {url}/job/{name}`.

Pooled keep-alive connections serve every app (http_connections.py), because a busy node sends
thousands of triggers a second to a handful of apps and a fresh TCP connection per trigger would
cost more than the request. Each attempt has its own timeout; the failure policy (retries and
their interval) belongs to the engine, which decides what a FAILED attempt means for the job.

A delivery goes to the registered target and nowhere else: redirects are never followed (a 3xx
is a failed attempt, so the payload and the app's token never reach another host), the target
must be allowed by the node's allow list (the address dialled is the address checked), and at
most `ANSWER_BYTES_MAX` of an answer is read; beyond that the connection is closed rather than
drained, so an app answering gigabytes costs the node nothing.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.http_connections import HttpConnections
from node.delivery.trigger import DeliveryOutcome, DeliveryReport, Trigger
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


# What a header value must not hold: control characters other than tab end the header (or the
# request) early, and whatever follows would be read as the sender's.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@functools.lru_cache(maxsize=1024)
def _path_of(url_path: str) -> str:
    """The app URL's path as the request's, without its trailing slash: what a URL path may
    hold, percent-encoded where it is written raw (`"`, `<`, `{` ...), escapes kept."""
    return quote(url_path.rstrip("/"), safe="/%:@!$&'()*+,;=~")


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
        self._connections = HttpConnections(
            connections_max=config.connections_max,
            connections_per_host_max=config.connections_per_host_max,
            tls=ssl.create_default_context(cafile=cafile),
            hosts=self._hosts,
        )

    @property
    def host_pools(self) -> int:
        """How many app hosts have a connection pool now."""
        return self._connections.host_pools

    def abandon(self) -> None:
        """Reset every connection, in use or idle: a request that has not fully left is never
        sent (SO_LINGER 0 discards what the kernel holds), so no copy of it reaches the app once
        the link comes back, after its replacement."""
        self._connections.abort_all()

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
        fields = [
            f"POST {_path_of(target.path)}/job/{quote(trigger.name, safe='')} HTTP/1.1",
            f"host: {target.netloc}",
            f"content-type: {trigger.content_type}",
            f"content-length: {len(trigger.data)}",
            f"dapr-app-id: {trigger.app}",
            f"dapr-namespace: {trigger.namespace}",
            f"tock-trigger-id: {trigger.trigger_id}",
            f"tock-scheduled-time: {format_rfc3339_ms(trigger.scheduled_ms)}",
            f"tock-attempt: {trigger.attempt}",
        ]
        if trigger.manual:
            fields.append("tock-manual: true")
        if trigger.app_token:
            fields.append(f"dapr-api-token: {trigger.app_token}")
        if self._node_id:
            fields.append(f"tock-node: {self._node_id}")
        if _CONTROL.search("".join(fields)):
            return DeliveryReport(DeliveryOutcome.FAILED)
        try:
            request = "\r\n".join((*fields, "", "")).encode() + trigger.data
        except UnicodeEncodeError:
            return DeliveryReport(DeliveryOutcome.FAILED)
        timeout_s = self._attempt_timeout_s if trigger.timeout_s is None else trigger.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                status = await self._connections.post(target, request)
        except TimeoutError:
            return DeliveryReport(DeliveryOutcome.FAILED, timed_out=True)
        except OSError:
            return DeliveryReport(DeliveryOutcome.FAILED)
        succeeded = 200 <= status < 300 or status == 404
        return DeliveryReport(
            DeliveryOutcome.SUCCESS if succeeded else DeliveryOutcome.FAILED, status
        )

    async def close(self) -> None:
        await self._connections.close()
