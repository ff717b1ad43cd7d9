"""Delivery against a real HTTP app on 127.0.0.1: body, headers, and what counts as success."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator

import pytest

from node.delivery.http import DeliveryConfig, HttpDelivery
from node.delivery.trigger import DeliveryOutcome, DeliveryReport, Trigger
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
