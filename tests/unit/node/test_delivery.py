"""Delivery against a real HTTP app on 127.0.0.1: body, headers, what counts as success, and that
a delivery goes to the registered target only: no redirect, a bounded answer, the allow list."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.http import DeliveryConfig, HttpDelivery
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, DeliveryReport, Trigger
from store.app_url import parse_app_url
from store.errors import ValidationError
from tests.support.sink import Sink

TRIGGER = Trigger(
    namespace="prod",
    app="billing",
    name="nightly report",
    uid="u1",
    scheduled_ms=1_765_296_593_123,
    attempt=2,
    data=b'{"task":"backup"}',
)


@pytest.fixture
def sink() -> Iterator[Sink]:
    statuses = {"nightly report": 200, "gone": 404, "broken": 500, "teapot": 418}
    app = Sink(status_for=lambda name, n: statuses.get(name, 200)).start()
    yield app
    app.stop()


def deliver(url: str, trigger: Trigger, token: str = "", timeout_s: float = 5) -> DeliveryReport:
    async def go() -> DeliveryReport:
        delivery = HttpDelivery(DeliveryConfig(), attempt_timeout_s=timeout_s)
        try:
            return await delivery.deliver(url, dataclasses.replace(trigger, app_token=token))
        finally:
            await delivery.close()

    return asyncio.run(go())


def test_posts_the_data_with_every_header_of_the_contract(sink: Sink) -> None:
    assert deliver(sink.url, TRIGGER, token="s3cret").outcome is DeliveryOutcome.SUCCESS
    (call,) = sink.calls_for("nightly report")
    assert call.body == b'{"task":"backup"}'
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["dapr-app-id"] == "billing"
    assert call.headers["dapr-namespace"] == "prod"
    assert call.headers["tock-trigger-id"] == "1765296593123:u1"
    assert call.headers["tock-scheduled-time"] == "2025-12-09T16:09:53.123Z"
    assert call.headers["tock-attempt"] == "2"
    assert call.headers["dapr-api-token"] == "s3cret"


def test_no_token_header_when_the_app_has_none(sink: Sink) -> None:
    deliver(sink.url, TRIGGER)
    (call,) = sink.calls_for("nightly report")
    assert "dapr-api-token" not in call.headers


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("gone", DeliveryOutcome.SUCCESS),
        ("broken", DeliveryOutcome.FAILED),
        ("teapot", DeliveryOutcome.FAILED),
    ],
)
def test_404_is_success_and_other_errors_fail(
    sink: Sink, name: str, outcome: DeliveryOutcome
) -> None:
    trigger = Trigger("default", "default", name, "u", 1, 1, b"")
    assert deliver(sink.url, trigger).outcome is outcome
    assert len(sink.calls_for(name)) == 1


def test_an_app_that_does_not_answer_in_time_is_a_failure() -> None:
    slow = Sink(delay_s=2.0).start()
    try:
        assert deliver(slow.url, TRIGGER, timeout_s=0.3) == DeliveryReport(
            DeliveryOutcome.FAILED, timed_out=True
        )
    finally:
        slow.stop()


def test_an_app_that_is_not_listening_is_a_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert deliver(f"http://127.0.0.1:{port}", TRIGGER).outcome is DeliveryOutcome.FAILED


# -- where a delivery may go -----------------------------------------------------------------


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    """An app on 127.0.0.1 answering every POST with `handler`; its URL is `url_of(runner)`."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner, host: str = "127.0.0.1") -> str:
    (address,) = runner.addresses
    return f"http://{host}:{address[1]}"


async def deliver_once(url: str, hosts: AllowedHosts | None = None) -> DeliveryOutcome:
    delivery = HttpDelivery(DeliveryConfig(), attempt_timeout_s=5, hosts=hosts)
    try:
        report = await delivery.deliver(url, dataclasses.replace(TRIGGER, app_token="s3cret"))
        return report.outcome
    finally:
        await delivery.close()


def run(coroutine: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await coroutine

    asyncio.run(bounded())


def test_a_redirect_is_a_failed_attempt_and_nothing_reaches_the_other_host() -> None:
    reached: list[web.Request] = []

    async def other_host(request: web.Request) -> web.Response:
        reached.append(request)
        return web.Response()

    async def go() -> None:
        other = await serve(other_host)
        for status in (301, 302, 303, 307, 308):

            async def redirect(request: web.Request, status: int = status) -> web.Response:
                location = url_of(other) + request.path
                return web.Response(status=status, headers={"Location": location})

            app = await serve(redirect)
            try:
                assert await deliver_once(url_of(app)) is DeliveryOutcome.FAILED, status
            finally:
                await app.cleanup()
        await other.cleanup()

    run(go())
    assert reached == []


def test_only_64_kib_of_an_answer_is_read_then_the_connection_is_closed() -> None:
    sent: list[int] = []
    closed = asyncio.Event()
    chunk = b"x" * ANSWER_BYTES_MAX

    async def flood(request: web.Request) -> web.StreamResponse:
        # 10 MiB, paced so that the node's reading (or not) decides how much gets out.
        reply = web.StreamResponse(headers={"content-length": str(10 * 1024 * 1024)})
        await reply.prepare(request)
        try:
            for _ in range(160):
                await reply.write(chunk)
                sent.append(len(chunk))
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()
        return reply

    async def go() -> None:
        app = await serve(flood)
        try:
            started = time.monotonic()
            assert await deliver_once(url_of(app)) is DeliveryOutcome.SUCCESS
            assert time.monotonic() - started < 1.0
            async with asyncio.timeout(5):
                await closed.wait()
        finally:
            await app.cleanup()

    run(go())
    # The node closed the connection after its 64 KiB: the app got a few chunks out (some land
    # in socket buffers), far from its 10 MiB.
    assert sum(sent) < 2 * 1024 * 1024, sum(sent)


def test_an_address_outside_the_allow_list_is_never_dialled(sink: Sink) -> None:
    only_other = AllowedHosts(["127.0.0.2"])
    run(_expect(deliver_once(sink.url, only_other), DeliveryOutcome.FAILED))
    # A name that resolves to a refused address is refused as well.
    localhost = sink.url.replace("127.0.0.1", "localhost")
    run(_expect(deliver_once(localhost, only_other), DeliveryOutcome.FAILED))
    assert sink.calls_for("nightly report") == []
    run(_expect(deliver_once(localhost, AllowedHosts(["127.0.0.0/8"])), DeliveryOutcome.SUCCESS))
    run(_expect(deliver_once(localhost, AllowedHosts(["LocalHost"])), DeliveryOutcome.SUCCESS))
    assert len(sink.calls_for("nightly report")) == 2


def test_a_name_that_resolves_elsewhere_after_registration_reaches_nothing(
    sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: `rebind.test` resolves to an allowed address when the app registers, and
    to the node's own loopback when the trigger is delivered."""
    answers = iter(["127.0.0.2", "127.0.0.1"])
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            return real_getaddrinfo(next(answers), *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = sink.url.replace("127.0.0.1", "rebind.test")
    hosts = AllowedHosts(["127.0.0.2/32"])

    async def go() -> None:
        await hosts.check(parse_app_url(url))
        assert await deliver_once(url, hosts) is DeliveryOutcome.FAILED

    run(go())
    assert sink.calls_for("nightly report") == []


def test_registration_refuses_a_target_outside_the_allow_list() -> None:
    async def check(url: str, entries: list[str]) -> None:
        await AllowedHosts(entries).check(parse_app_url(url))

    run(check("http://127.0.0.2:1", ["127.0.0.2"]))
    run(check("http://localhost:1", ["127.0.0.0/8"]))
    run(check("http://[::ffff:10.1.2.3]:1", ["10.0.0.0/8"]))
    run(check("grpc://apps.internal:1", ["apps.internal."]))
    run(check("http://127.0.0.1:1", []))
    for url, entries, message in (
        ("http://127.0.0.1:1", ["127.0.0.2"], "host 127.0.0.1 is not in --app-host-allow"),
        ("http://localhost:1", ["127.0.0.2"], r"resolves to .*127.0.0.1.*not in --app-host-a"),
        ("http://127.1:1", ["127.0.0.2"], "resolves to 127.0.0.1, not in"),
        ("http://no-such-host.invalid:1", ["10.0.0.0/8"], "does not resolve"),
    ):
        with pytest.raises(ValidationError, match=message):
            run(check(url, entries))


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "a b", "http://x", ""])
def test_an_allow_list_entry_is_a_name_an_address_or_a_cidr(entry: str) -> None:
    with pytest.raises(ValidationError, match=r"^app_host_allow: .* is neither a host name"):
        AllowedHosts([entry])


def test_a_stored_url_that_breaks_the_rules_is_a_failed_attempt() -> None:
    run(_expect(deliver_once("http://127.0.0.1:9/x?"), DeliveryOutcome.FAILED))


async def _expect(outcome: Awaitable[DeliveryOutcome], expected: DeliveryOutcome) -> None:
    assert await outcome is expected
