"""gRPC delivery against real in-process gRPC apps: Dapr's JobEventRequest, the Alpha1 fallback,
which codes are success, that a slow or absent app is a failure, never an exception, and that a
delivery reaches a TCP target the allow list allows only, and receives a bounded answer."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import struct_pb2

from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.dispatch import Deliverer
from node.delivery.grpc import GrpcDelivery, GrpcDeliveryConfig
from node.delivery.http import DeliveryConfig, HttpDelivery
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, DeliveryReport, Trigger
from node.grpc.payload import VALUE_TYPE_URL
from store.jobs import DATA_TYPE_JSON
from tests.support.local_cluster import port_block

T = TypeVar("T")

TRIGGER = Trigger(
    namespace="ns",
    app="app",
    name="backup",
    uid="u1",
    scheduled_ms=1_700_000_000_000,
    attempt=2,
    data=b'{"db":"prod"}',
    content_type=DATA_TYPE_JSON,
)
Request = appcallback_pb2.JobEventRequest
Reply = appcallback_pb2.JobEventResponse
Answer = Callable[[appcallback_pb2.JobEventRequest], Awaitable[grpc.StatusCode]]
Received = list[tuple[str, appcallback_pb2.JobEventRequest, dict[str, str]]]


async def serve_app(methods: dict[str, Answer], received: Received) -> tuple[grpc.aio.Server, str]:
    """A gRPC app serving `methods` ("AppCallback/OnJobEvent", ...) with the given answers."""
    server = grpc.aio.server()
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Request, Reply]]] = {}
    for path, answer in methods.items():
        service, method = path.split("/")

        async def handle(
            request: appcallback_pb2.JobEventRequest,
            context: grpc.aio.ServicerContext[Request, Reply],
            answer: Answer = answer,
            path: str = path,
        ) -> appcallback_pb2.JobEventResponse:
            metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
            received.append((path, request, metadata))
            code = await answer(request)
            if code is not grpc.StatusCode.OK:
                await context.abort(code, "scripted")
            return appcallback_pb2.JobEventResponse()

        by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=appcallback_pb2.JobEventRequest.FromString,
            response_serializer=serialize,
        )
    for service, handlers in by_service.items():
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"dapr.proto.runtime.v1.{service}", handlers),)
        )
    address = f"127.0.0.1:{port_block(1)}"
    server.add_insecure_port(address)
    await server.start()
    return server, f"grpc://{address}"


def serialize(reply: Reply) -> bytes:
    return reply.SerializeToString()


def answering(code: grpc.StatusCode, delay_s: float = 0.0) -> Answer:
    async def answer(_request: appcallback_pb2.JobEventRequest) -> grpc.StatusCode:
        await asyncio.sleep(delay_s)
        return code

    return answer


async def deliver_to(
    methods: dict[str, Answer], timeout_s: float = 3.0
) -> tuple[DeliveryReport, Received]:
    received: Received = []
    server, url = await serve_app(methods, received)
    delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=timeout_s, node_id="n7")
    try:
        outcome = await delivery.deliver(url, TRIGGER)
    finally:
        await delivery.close()
        await server.stop(0)
    return outcome, received


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(20):
            return await coroutine

    return asyncio.run(bounded())


def test_the_request_is_daprs_job_event() -> None:
    outcome, received = run(deliver_to({"AppCallback/OnJobEvent": answering(grpc.StatusCode.OK)}))
    assert outcome.outcome is DeliveryOutcome.SUCCESS
    ((path, request, metadata),) = received
    assert path == "AppCallback/OnJobEvent"
    assert (request.name, request.method) == ("backup", "job/backup")
    assert request.http_extension.verb == common_pb2.HTTPExtension.Verb.POST
    assert request.content_type == request.data.type_url == VALUE_TYPE_URL
    value = struct_pb2.Value()
    assert request.data.Unpack(value)
    assert value.struct_value.fields["db"].string_value == "prod"
    assert metadata["tock-trigger-id"] == "1700000000000:u1"
    assert (metadata["tock-attempt"], metadata["tock-node"]) == ("2", "n7")
    assert (metadata["dapr-app-id"], metadata["dapr-namespace"]) == ("app", "ns")
    assert metadata["tock-scheduled-time"] == "2023-11-14T22:13:20.000Z"


def test_an_app_without_the_stable_method_gets_alpha1() -> None:
    methods = {"AppCallbackAlpha/OnJobEventAlpha1": answering(grpc.StatusCode.OK)}
    outcome, received = run(deliver_to(methods))
    assert outcome.outcome is DeliveryOutcome.SUCCESS
    assert [path for path, _, _ in received] == ["AppCallbackAlpha/OnJobEventAlpha1"]


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (grpc.StatusCode.NOT_FOUND, DeliveryOutcome.SUCCESS),
        (grpc.StatusCode.INTERNAL, DeliveryOutcome.FAILED),
        (grpc.StatusCode.UNAVAILABLE, DeliveryOutcome.FAILED),
        (grpc.StatusCode.INVALID_ARGUMENT, DeliveryOutcome.FAILED),
    ],
)
def test_ok_and_not_found_are_success(code: grpc.StatusCode, outcome: DeliveryOutcome) -> None:
    got, received = run(deliver_to({"AppCallback/OnJobEvent": answering(code)}))
    assert (got, len(received)) == (DeliveryReport(outcome, code.value[0]), 1)


def test_unimplemented_everywhere_is_a_failure() -> None:
    report, received = run(deliver_to({}))
    assert (report.outcome, received) == (DeliveryOutcome.FAILED, [])


def test_an_app_slower_than_the_deadline_is_a_failure() -> None:
    slow = {"AppCallback/OnJobEvent": answering(grpc.StatusCode.OK, delay_s=2.0)}
    report, received = run(deliver_to(slow, timeout_s=0.3))
    assert (report, len(received)) == (DeliveryReport(DeliveryOutcome.FAILED, timed_out=True), 1)


def test_an_absent_app_is_a_failure() -> None:
    async def absent() -> tuple[DeliveryReport, Received]:
        delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=1.0)
        try:
            return await delivery.deliver(f"grpc://127.0.0.1:{port_block(1)}", TRIGGER), []
        finally:
            await delivery.close()

    assert run(absent())[0].outcome is DeliveryOutcome.FAILED


def test_the_deliverer_sends_grpc_urls_to_grpc() -> None:
    async def through_deliverer() -> tuple[DeliveryReport, Received]:
        received: Received = []
        methods = {"AppCallback/OnJobEvent": answering(grpc.StatusCode.OK)}
        server, url = await serve_app(methods, received)
        deliverer = Deliverer(
            HttpDelivery(DeliveryConfig(), attempt_timeout_s=3.0),
            GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=3.0),
        )
        try:
            return await deliverer.deliver(url, TRIGGER), received
        finally:
            await deliverer.close()
            await server.stop(0)

    report, received = run(through_deliverer())
    assert (report, len(received)) == (DeliveryReport(DeliveryOutcome.SUCCESS), 1)


def test_the_apps_token_goes_as_metadata_only_when_it_has_one() -> None:
    async def deliver(trigger: Trigger) -> dict[str, str]:
        received: Received = []
        server, url = await serve_app(
            {"AppCallback/OnJobEvent": answering(grpc.StatusCode.OK)}, received
        )
        delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=3.0)
        try:
            assert (await delivery.deliver(url, trigger)).outcome is DeliveryOutcome.SUCCESS
        finally:
            await delivery.close()
            await server.stop(0)
        return received[0][2]

    with_token = asyncio.run(deliver(dataclasses.replace(TRIGGER, app_token="s3cret")))
    assert with_token["dapr-api-token"] == "s3cret"
    assert "dapr-api-token" not in asyncio.run(deliver(TRIGGER))


@pytest.mark.parametrize(
    "url", ["grpc://unix:{dir}/app.sock", "grpc://unix://{dir}/app.sock", "grpc://unix:1"]
)
def test_a_url_that_would_reach_a_unix_socket_is_a_failed_attempt(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`grpc://unix:1` is a valid TCP URL (host `unix`, port 1) and must stay one: a channel
    target of `unix:1` would be the socket file `1` of the current directory."""
    received: list[str] = []

    async def go() -> DeliveryOutcome:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((recording_handler(received),))
        for socket_path in (tmp_path / "app.sock", tmp_path / "1"):
            server.add_insecure_port(f"unix:{socket_path}")
        await server.start()
        delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=1.0)
        try:
            return (await delivery.deliver(url.format(dir=tmp_path), TRIGGER)).outcome
        finally:
            await delivery.close()
            await server.stop(0)

    monkeypatch.chdir(tmp_path)
    assert asyncio.run(go()) is DeliveryOutcome.FAILED
    assert received == []


def recording_handler(received: list[str]) -> grpc.GenericRpcHandler:
    """Every method of AppCallback, recording the method's name and answering OK."""

    async def handle(request: Request, context: grpc.aio.ServicerContext[Request, Reply]) -> Reply:
        received.append(request.name)
        return Reply()

    method = grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=Request.FromString, response_serializer=serialize
    )
    return grpc.method_handlers_generic_handler(
        "dapr.proto.runtime.v1.AppCallback", {"OnJobEvent": method}
    )


def test_an_address_outside_the_allow_list_is_never_dialled() -> None:
    async def go(hosts: AllowedHosts, host: str) -> tuple[DeliveryOutcome, Received]:
        received: Received = []
        server, url = await serve_app(
            {"AppCallback/OnJobEvent": answering(grpc.StatusCode.OK)}, received
        )
        delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=2.0, hosts=hosts)
        try:
            outcome = (await delivery.deliver(url.replace("127.0.0.1", host), TRIGGER)).outcome
        finally:
            await delivery.close()
            await server.stop(0)
        return outcome, received

    for hosts, host, expected in (
        (AllowedHosts(["127.0.0.2"]), "127.0.0.1", DeliveryOutcome.FAILED),
        (AllowedHosts(["127.0.0.2"]), "localhost", DeliveryOutcome.FAILED),
        (AllowedHosts(["127.0.0.0/8"]), "localhost", DeliveryOutcome.SUCCESS),
        (AllowedHosts(["localhost"]), "localhost", DeliveryOutcome.SUCCESS),
    ):
        outcome, received = run(go(hosts, host))
        assert (outcome, len(received)) == (expected, int(expected is DeliveryOutcome.SUCCESS))


def test_an_answer_above_64_kib_is_not_received_and_the_attempt_fails() -> None:
    async def go(padding_bytes: int) -> DeliveryOutcome:
        async def handle(
            request: Request, context: grpc.aio.ServicerContext[Request, bytes]
        ) -> bytes:
            # An unknown length-delimited field (number 15) of `padding_bytes`: a valid reply.
            return b"\x7a" + _varint(padding_bytes) + b"\x00" * padding_bytes

        method = grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=Request.FromString, response_serializer=bytes
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "dapr.proto.runtime.v1.AppCallback", {"OnJobEvent": method}
                ),
            )
        )
        address = f"127.0.0.1:{port_block(1)}"
        server.add_insecure_port(address)
        await server.start()
        delivery = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=3.0)
        try:
            return (await delivery.deliver(f"grpc://{address}", TRIGGER)).outcome
        finally:
            await delivery.close()
            await server.stop(0)

    assert asyncio.run(go(ANSWER_BYTES_MAX - 100)) is DeliveryOutcome.SUCCESS
    assert asyncio.run(go(10 * 1024 * 1024)) is DeliveryOutcome.FAILED


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])
