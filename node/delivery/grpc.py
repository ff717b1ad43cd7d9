"""gRPC delivery of a trigger to an app registered as `grpc://host:port`.

This is Dapr's gRPC app callback, as daprd with `--app-protocol grpc` calls it:
`AppCallback.OnJobEvent(JobEventRequest)`, and `AppCallbackAlpha.OnJobEventAlpha1` for an app that
answers the stable method with UNIMPLEMENTED (SDKs older than the stable Jobs API). OK and
NOT_FOUND are success, as 2xx and 404 are over HTTP; any other code, or no answer before the
attempt's deadline, is a failure. The failure policy belongs to the engine, as for HTTP.

One channel per app address is kept open and reused (a channel multiplexes every call over one
HTTP/2 connection); the least recently used is closed beyond `channels_max`. Channels retry a lost
connection after at most `reconnect_backoff_max_ms`, so an app that comes back is reached soon.

Channels are gRPC over TCP only: their target is always `dns:///HOST:PORT`, `ipv4:` or `ipv6:`,
never a text gRPC could read as a `unix:` socket. A host the allow list does not allow by name
is resolved here and the channel is pinned to the checked address (allowed_hosts.py), with the
URL's host as its authority. At most `ANSWER_BYTES_MAX` of an answer is received.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, DeliveryReport, Trigger
from node.grpc.payload import any_of
from store.app_url import AppUrl, IpAddress, parse_app_url
from store.errors import ValidationError
from store.schedule import format_rfc3339_ms

GRPC_SCHEME = "grpc://"
_SUCCESS_CODES = frozenset({grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND})


@dataclass(frozen=True, kw_only=True)
class GrpcDeliveryConfig:
    channels_max: int = 256
    reconnect_backoff_max_ms: int = 1000

    def validate(self) -> None:
        if min(self.channels_max, self.reconnect_backoff_max_ms) <= 0:
            raise ValidationError("channels_max and reconnect_backoff_max_ms must be positive")


class GrpcDelivery:
    """Sends triggers over gRPC; one instance per node, used and closed on its event loop.

    One attempt, the Alpha1 fallback included, ends after `attempt_timeout_s` (or the trigger's
    own timeout). `node_id`, when given, is sent as `tock-node` metadata, as HTTP delivery sends
    the header: who delivered. `hosts` is where deliveries may go."""

    def __init__(
        self,
        config: GrpcDeliveryConfig,
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
        self._channels: OrderedDict[tuple[str, str], grpc.aio.Channel] = OrderedDict()
        # Channels closing after an abandon: kept so that their tasks are not collected.
        self._closing: set[asyncio.Task[None]] = set()

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryReport:
        """One attempt. A URL the rules or the allow list refuse is a failure. Never raises for
        the app's faults: they are outcomes, not errors."""
        try:
            app_url = parse_app_url(url)
            target = await self._target(app_url)
        except (ValidationError, OSError):
            return DeliveryReport(DeliveryOutcome.FAILED)
        channel = await self._channel(target, authority=app_url.netloc)
        request = job_event_request(trigger)
        metadata = trigger_metadata(trigger, self._node_id)
        timeout_s = self._attempt_timeout_s if trigger.timeout_s is None else trigger.timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        # The generated gRPC stubs carry no type annotations.
        stable = appcallback_pb2_grpc.AppCallbackStub(channel)  # type: ignore[no-untyped-call]
        code = await _call(stable.OnJobEvent, request, metadata, deadline)
        if code is grpc.StatusCode.UNIMPLEMENTED:
            alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(channel)  # type: ignore[no-untyped-call]
            code = await _call(alpha.OnJobEventAlpha1, request, metadata, deadline)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeliveryReport(DeliveryOutcome.FAILED, timed_out=True)
        outcome = DeliveryOutcome.SUCCESS if code in _SUCCESS_CODES else DeliveryOutcome.FAILED
        number: int = code.value[0]
        return DeliveryReport(outcome, number)

    def abandon(self) -> None:
        """Cancel every call in flight and close the channels at once (no grace)."""
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            task = asyncio.get_running_loop().create_task(channel.close(grace=None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            await channel.close()

    async def _target(self, url: AppUrl) -> str:
        """The channel target of a checked URL: TCP only, the address pinned when the allow
        list must check it."""
        if url.port is None:
            raise ValidationError("a gRPC app url has a port")
        if not self._hosts.allows_name(url.host):
            return _address_target((await self._hosts.addresses(url.host, url.port))[0], url.port)
        ip = url.ip
        return f"dns:///{url.netloc}" if ip is None else _address_target(ip, url.port)

    async def _channel(self, target: str, *, authority: str) -> grpc.aio.Channel:
        key = (target, authority)
        channel = self._channels.get(key)
        if channel is not None:
            self._channels.move_to_end(key)
            return channel
        if len(self._channels) >= self._config.channels_max:
            _, oldest = self._channels.popitem(last=False)
            # Calls still running on it end with CANCELLED: failures the engine retries.
            await oldest.close()
        backoff_ms = self._config.reconnect_backoff_max_ms
        channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, 1000)),
                ("grpc.max_reconnect_backoff_ms", backoff_ms),
                ("grpc.default_authority", authority),
                ("grpc.max_receive_message_length", ANSWER_BYTES_MAX),
            ],
        )
        self._channels[key] = channel
        return channel


def _address_target(ip: IpAddress, port: int) -> str:
    return f"ipv4:{ip}:{port}" if ip.version == 4 else f"ipv6:[{ip}]:{port}"


def job_event_request(trigger: Trigger) -> appcallback_pb2.JobEventRequest:
    """The request daprd sends an app for a job trigger."""
    data = any_of(trigger.data, trigger.content_type)
    return appcallback_pb2.JobEventRequest(
        name=trigger.name,
        data=data,
        method=f"job/{trigger.name}",
        content_type="" if data is None else data.type_url,
        http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.Verb.POST),
    )


def trigger_metadata(trigger: Trigger, node_id: str | None) -> tuple[tuple[str, str], ...]:
    """The headers HTTP delivery sends, as gRPC metadata: scope, idempotency key, attempt, and
    the app's token when it has one."""
    metadata: tuple[tuple[str, str], ...] = (
        ("dapr-app-id", trigger.app),
        ("dapr-namespace", trigger.namespace),
        ("tock-trigger-id", trigger.trigger_id),
        ("tock-scheduled-time", format_rfc3339_ms(trigger.scheduled_ms)),
        ("tock-attempt", str(trigger.attempt)),
    )
    if trigger.manual:
        metadata = (*metadata, ("tock-manual", "true"))
    if trigger.app_token:
        metadata = (*metadata, ("dapr-api-token", trigger.app_token))
    return (*metadata, ("tock-node", node_id)) if node_id else metadata


async def _call(
    method: grpc.aio.UnaryUnaryMultiCallable[
        appcallback_pb2.JobEventRequest, appcallback_pb2.JobEventResponse
    ],
    request: appcallback_pb2.JobEventRequest,
    metadata: tuple[tuple[str, str], ...],
    deadline: float,
) -> grpc.StatusCode:
    remaining_s = deadline - asyncio.get_running_loop().time()
    if remaining_s <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    try:
        await method(request, timeout=remaining_s, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
