"""The pool of keep-alive connections HTTP delivery posts over, against real servers on
127.0.0.1 that answer with raw bytes: what is reused and what is not, what an app's odd or hostile
answer costs, the bounds on connections, and the reset of `abandon`. Run on uvloop, as nodes are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from cluster.certificates import CertificateAuthority
from node.delivery import http_connections
from node.delivery.http import DeliveryConfig, HttpDelivery
from node.delivery.trigger import ANSWER_BYTES_MAX, DeliveryOutcome, DeliveryReport, Trigger
from tests.support.sink import Sink

TRIGGER = Trigger(
    namespace="prod",
    app="billing",
    name="nightly",
    uid="u1",
    scheduled_ms=1_765_296_593_123,
    attempt=1,
    data=b'{"n":1}',
)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

# What a raw app does with one request's bytes: write its answer, and say whether to go on.
Answer = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


@dataclasses.dataclass
class RawApp:
    """An HTTP app that reads each request whole and answers with whatever `answer` writes;
    it counts connections and requests."""

    answer: Answer
    connections: int = 0
    open_now: int = 0
    open_max: int = 0
    requests: list[bytes] = dataclasses.field(default_factory=list)
    received: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.open_max = max(self.open_max, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                self.received.set()
                if not await self.answer(len(self.requests), writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            self.closed.set()
            writer.close()


def answering(*answers: bytes) -> Answer:
    """Answers request n with `answers[n - 1]` (the last one from then on), keeping the
    connection open."""

    async def answer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(answers[min(n, len(answers)) - 1])
        return True

    return answer


def run(test: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await test

    uvloop.run(bounded())


async def post_all(
    url: str, count: int, *, delivery: HttpDelivery | None = None, trigger: Trigger = TRIGGER
) -> list[DeliveryReport]:
    own = delivery is None
    delivery = delivery or HttpDelivery(DeliveryConfig(), attempt_timeout_s=5)
    try:
        return [await delivery.deliver(url, trigger) for _ in range(count)]
    finally:
        if own:
            await delivery.close()


def test_one_connection_serves_trigger_after_trigger() -> None:
    async def go() -> None:
        app = RawApp(answering(OK))
        async with app as url:
            reports = await post_all(url, 20)
            assert {r.status for r in reports} == {200}
            assert (len(app.requests), app.connections) == (20, 1)

    run(go())


def test_the_request_is_the_contract_and_nothing_else() -> None:
    async def go() -> None:
        app = RawApp(answering(OK))
        async with app as url:
            trigger = dataclasses.replace(TRIGGER, name="a/b c", manual=True, app_token="s3")
            await post_all(f"{url}/base/", 1, trigger=trigger)
            (request,) = app.requests
            head, body = request.split(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            assert lines[0] == "POST /base/job/a%2Fb%20c HTTP/1.1"
            assert sorted(lines[1:]) == sorted(
                [
                    f"host: {url.removeprefix('http://')}",
                    "content-type: application/json",
                    "content-length: 7",
                    "dapr-app-id: billing",
                    "dapr-namespace: prod",
                    "tock-trigger-id: 1765296593123:u1",
                    "tock-scheduled-time: 2025-12-09T16:09:53.123Z",
                    "tock-attempt: 1",
                    "tock-manual: true",
                    "dapr-api-token: s3",
                ]
            )
            assert body == b'{"n":1}'

    run(go())


@pytest.mark.parametrize(
    "trigger",
    [
        dataclasses.replace(TRIGGER, app_token="a\r\nx-evil: 1"),
        dataclasses.replace(TRIGGER, namespace="p\nq"),
        dataclasses.replace(TRIGGER, app="a\x00"),
    ],
)
def test_a_header_value_that_would_end_its_line_fails_and_sends_nothing(trigger: Trigger) -> None:
    async def go() -> None:
        app = RawApp(answering(OK))
        async with app as url:
            (report,) = await post_all(url, 1, trigger=trigger)
            assert report == DeliveryReport(DeliveryOutcome.FAILED)
            assert (app.connections, app.requests) == (0, [])

    run(go())


def test_chunked_and_informational_answers_are_read_and_the_connection_reused() -> None:
    chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"

    async def go() -> None:
        app = RawApp(answering(chunked, early, OK))
        async with app as url:
            reports = await post_all(url, 3)
            assert [r.status for r in reports] == [404, 204, 200]
            assert [r.outcome for r in reports] == [DeliveryOutcome.SUCCESS] * 3
            assert app.connections == 1

    run(go())


def test_an_answer_that_closes_or_is_not_http_is_never_reused() -> None:
    closing = b"HTTP/1.1 500 Oops\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    unframed = b"HTTP/1.1 200 OK\r\n\r\nthe body runs to the end of the connection"
    garbage = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"

    async def answer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write([closing, unframed, garbage, OK][min(n, 4) - 1])
        return n >= 4  # the app closes after each of the first three

    async def go() -> None:
        app = RawApp(answer)
        async with app as url:
            reports = await post_all(url, 5)
            assert [r.status for r in reports] == [500, 200, 0, 200, 200]
            assert [r.outcome for r in reports][2] is DeliveryOutcome.FAILED
            assert app.connections == 4

    run(go())


def test_a_second_answer_to_one_request_is_never_read_as_the_next_ones() -> None:
    twice = OK + b"HTTP/1.1 500 Stale\r\ncontent-length: 0\r\n\r\n"

    async def go() -> None:
        app = RawApp(answering(twice, b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"))
        async with app as url:
            reports = await post_all(url, 2)
            assert [r.status for r in reports] == [200, 201]
            assert app.connections == 2

    run(go())


def test_an_endless_head_is_a_failure_after_its_bound() -> None:
    async def answer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            writer.write(b"x-padding: " + b"p" * 1000 + b"\r\n")
            await writer.drain()
        return False

    async def go() -> None:
        app = RawApp(answer)
        async with app as url:
            (report,) = await post_all(url, 1)
            assert report == DeliveryReport(DeliveryOutcome.FAILED)

    run(go())


def test_a_long_body_is_dropped_at_its_bound_and_the_status_stands() -> None:
    async def answer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 100000000\r\n\r\n")
        for _ in range(100):
            writer.write(b"b" * ANSWER_BYTES_MAX)
            await writer.drain()
        return False

    async def go() -> None:
        app = RawApp(answer)
        async with app as url:
            reports = await post_all(url, 2)
            assert [r.status for r in reports] == [202, 202]
            assert app.connections == 2

    run(go())


def test_at_most_connections_per_host_at_once_the_rest_wait() -> None:
    async def slow(n: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(OK)
        return True

    async def go() -> None:
        app = RawApp(slow)
        async with app as url:
            config = DeliveryConfig(connections_max=8, connections_per_host_max=3)
            delivery = HttpDelivery(config, attempt_timeout_s=5)
            reports = await asyncio.gather(*(delivery.deliver(url, TRIGGER) for _ in range(12)))
            assert {r.status for r in reports} == {200}
            assert (app.open_max, app.connections) == (3, 3)
            await delivery.close()

    run(go())


def test_abandon_resets_connections_in_use_and_idle() -> None:
    answered = asyncio.Event()

    async def hold_the_second(n: int, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            writer.write(OK)
            answered.set()
            return True
        await asyncio.sleep(10)
        return False

    async def go() -> None:
        idle_app, busy_app = RawApp(answering(OK)), RawApp(hold_the_second)
        async with idle_app as idle_url, busy_app as busy_url:
            delivery = HttpDelivery(DeliveryConfig(), attempt_timeout_s=20)
            await post_all(idle_url, 1, delivery=delivery)
            await post_all(busy_url, 1, delivery=delivery)
            in_flight = asyncio.ensure_future(delivery.deliver(busy_url, TRIGGER))
            busy_app.received.clear()
            await asyncio.wait_for(busy_app.received.wait(), 5)
            idle_app.closed.clear()
            delivery.abandon()
            assert (await in_flight).outcome is DeliveryOutcome.FAILED
            await asyncio.wait_for(idle_app.closed.wait(), 5)
            # A fresh connection serves what comes next.
            assert (await delivery.deliver(idle_url, TRIGGER)).status == 200
            assert idle_app.connections == 2
            await delivery.close()

    run(go())


def test_an_idle_connection_is_closed_after_the_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_connections, "KEEPALIVE_S", 0.2)

    async def go() -> None:
        app = RawApp(answering(OK))
        async with app as url:
            delivery = HttpDelivery(DeliveryConfig(), attempt_timeout_s=5)
            await post_all(url, 1, delivery=delivery)
            app.closed.clear()
            await asyncio.wait_for(app.closed.wait(), 5)
            assert app.open_now == 0
            assert (await delivery.deliver(url, TRIGGER)).status == 200
            assert app.connections == 2
            await delivery.close()

    run(go())


def test_a_host_nobody_delivers_to_any_more_leaves_no_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_connections, "KEEPALIVE_S", 0.1)

    async def go() -> None:
        delivery = HttpDelivery(DeliveryConfig(), attempt_timeout_s=5)
        for _ in range(5):  # an app moving its URL from port to port
            async with RawApp(answering(OK)) as url:
                assert (await delivery.deliver(url, TRIGGER)).status == 200
        assert delivery.host_pools == 5
        # Ten sweeps: the first closes the idle connections, a later one drops their pools.
        await asyncio.sleep(1.0)
        assert delivery.host_pools == 0
        await delivery.close()

    run(go())


def test_https_checks_the_app_certificate_against_the_ca_file(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "ca")
    stranger = CertificateAuthority(tmp_path / "other")

    def https_sink(issuer: CertificateAuthority, name: str) -> Sink:
        files = issuer.issue(tmp_path, name)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert_file, files.key_file)
        return Sink(tls=context).start()

    trusted, untrusted = https_sink(authority, "app"), https_sink(stranger, "stranger")
    try:

        async def go() -> None:
            config = DeliveryConfig(ca_file=tmp_path / "ca" / "ca.pem")
            delivery = HttpDelivery(config, attempt_timeout_s=5)
            reports = await post_all(trusted.url, 3, delivery=delivery)
            assert {r.status for r in reports} == {200}
            report = await delivery.deliver(untrusted.url, TRIGGER)
            assert report == DeliveryReport(DeliveryOutcome.FAILED)
            await delivery.close()

        run(go())
        assert len(trusted.calls_for("nightly")) == 3
        assert untrusted.calls_for("nightly") == []
    finally:
        trusted.stop()
        untrusted.stop()
