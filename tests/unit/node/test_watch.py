"""The watch stream and app tokens on one real node: what an app holding the stream sees.

Each test acts for an app of its own on a shared node, so the tests do not see each other's
triggers. Waits are bounded by WAIT_S; DELIVERY_TIMEOUT_S is the node's ack timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import uuid
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest

from node.client.client import TockClient, WatchStream, WatchTrigger
from node.delivery.trigger import DeliveryOutcome, Trigger
from node.internal_auth import SIGNATURE_HEADER, RequestSigner
from node.watch.forward import INTERNAL_DELIVER_PATH
from node.watch.frames import decode_outcomes, encode_forward
from store.clock import FakeClock, SystemClock
from store.errors import JobNotFound
from store.schedule import format_rfc3339_ms
from tests.support.sink import Sink
from tests.support.watch_streams import hand_over_on_close
from tests.unit.node.watch_node import WatchNode

DELIVERY_TIMEOUT_S = 1.5
WAIT_S = 10.0
# How long a test listens to be sure that nothing more arrives.
QUIET_S = 0.7


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchNode]:
    live = WatchNode(tmp_path_factory.mktemp("watch") / "n1", DELIVERY_TIMEOUT_S).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    app = Sink().start()
    yield app
    app.stop()


def scenario(node: WatchNode, body: Callable[[TockClient], Awaitable[None]]) -> None:
    """Run `body` with a client acting for an app no other test uses."""

    async def run() -> None:
        async with TockClient(node.base_url, app_id=f"app-{uuid.uuid4().hex[:8]}") as client:
            await body(client)

    asyncio.run(asyncio.wait_for(run(), 60))


async def next_batch(stream: WatchStream, timeout_s: float = WAIT_S) -> list[WatchTrigger]:
    return await asyncio.wait_for(anext(stream), timeout_s)


async def nothing_more(stream: WatchStream) -> None:
    with pytest.raises(TimeoutError):
        await next_batch(stream, QUIET_S)


async def wait_gone(client: TockClient, name: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                await client.get(name)
            except JobNotFound:
                return
            await asyncio.sleep(0.05)


def test_a_watcher_gets_the_triggers_and_the_record_follows_its_stream(
    node: WatchNode, sink: Sink
) -> None:
    async def body(client: TockClient) -> None:
        await client.register_app(sink.url)
        before = set(node.watchers())
        async with client.watch() as stream:
            # Recorded by the time the handshake answers: the new entry is this app's.
            (app,) = set(node.watchers()) - before
            assert node.watchers()[app] == {"n1": 1}
            await client.create("report", due_time="200ms", data={"task": "backup"})
            (trigger,) = await next_batch(stream)
            assert (trigger.name, trigger.data, trigger.attempt) == (
                "report",
                b'{"task":"backup"}',
                1,
            )
            scheduled_ms = int(trigger.trigger_id.split(":")[0])
            assert trigger.scheduled_time == format_rfc3339_ms(scheduled_ms)
            await stream.ack([(trigger.id, "SUCCESS")])
            await wait_gone(client, "report")
            await nothing_more(stream)
        await wait_until(lambda: app not in node.watchers())
        assert sink.calls_for("report") == []

    scenario(node, body)


async def wait_until(predicate: Callable[[], bool]) -> None:
    # The record is read from the node's replica, which raises no event this loop could await.
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def test_a_failed_ack_is_retried_per_the_failure_policy(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        policy = {"constant": {"interval": "100ms", "maxRetries": 2}}
        async with client.watch() as stream:
            await client.create("flaky", due_time="100ms", failure_policy=policy)
            attempts = []
            for _ in range(3):
                (trigger,) = await next_batch(stream)
                attempts.append((trigger.attempt, trigger.trigger_id))
                await stream.ack([(trigger.id, "FAILED")])
            assert [attempt for attempt, _ in attempts] == [1, 2, 3]
            assert len({trigger_id for _, trigger_id in attempts}) == 1
            await wait_gone(client, "flaky")
            await nothing_more(stream)

    scenario(node, body)


def test_unknown_and_repeated_ack_ids_are_ignored(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        async with client.watch() as stream:
            await client.create("once", schedule="@every 1s", repeats=2)
            (first,) = await next_batch(stream)
            await stream.ack([(first.id + 1000, "FAILED"), (first.id, "SUCCESS")])
            # A repeated id, even with another status, changes nothing.
            await stream.ack([(first.id, "FAILED")])
            (second,) = await next_batch(stream)
            assert (second.attempt, second.id) == (1, first.id + 1)
            assert second.trigger_id != first.trigger_id
            await stream.ack([(second.id, "SUCCESS")])
            await wait_gone(client, "once")

    scenario(node, body)


def test_a_trigger_not_acked_in_time_fails_its_attempt(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        policy = {"constant": {"interval": "100ms", "maxRetries": 1}}
        async with client.watch() as stream:
            await client.create("silent", due_time="0s", failure_policy=policy)
            (first,) = await next_batch(stream)
            (second,) = await next_batch(stream, DELIVERY_TIMEOUT_S + WAIT_S)
            assert (first.attempt, second.attempt) == (1, 2)
            await stream.ack([(first.id, "SUCCESS")])  # Too late: that attempt has failed.
            await stream.ack([(second.id, "SUCCESS")])
            await wait_gone(client, "silent")

    scenario(node, body)


def test_two_watchers_share_the_load(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        names = [f"crowd-{k}" for k in range(30)]
        got: dict[str, list[str]] = {"a": [], "b": []}

        async def serve(stream: WatchStream, who: str) -> None:
            async def handle(trigger: WatchTrigger) -> bool:
                got[who].append(trigger.name)
                return True

            await stream.serve(handle)

        async with client.watch() as a, client.watch() as b:
            serving = [asyncio.create_task(serve(a, "a")), asyncio.create_task(serve(b, "b"))]
            for name in names:
                await client.create(name, due_time="500ms")
            for name in names:
                await wait_gone(client, name)
            for task in serving:
                task.cancel()
        assert sorted(got["a"] + got["b"]) == sorted(names)
        assert got["a"] and got["b"]

    scenario(node, body)


def test_triggers_of_a_closed_stream_go_to_another_watcher(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        async with client.watch() as a, client.watch() as b:
            await client.create("handover", due_time="200ms")
            await hand_over_on_close(a, b, WAIT_S)
            await wait_gone(client, "handover")

    scenario(node, body)


def test_without_watchers_triggers_go_to_the_url_with_the_apps_token(
    node: WatchNode, sink: Sink
) -> None:
    async def body(client: TockClient) -> None:
        await client.register_app(sink.url, token="s3cret")
        assert (await client.app_info())["hasToken"] is True
        async with client.watch() as stream:
            await client.create("fallback", due_time="200ms")
            (trigger,) = await next_batch(stream)
            # Closed with the trigger in flight and no other watcher: the URL gets it.
        calls = await asyncio.to_thread(sink.wait_for, "fallback", 1, WAIT_S)
        assert [call.headers["tock-trigger-id"] for call in calls] == [trigger.trigger_id]
        assert calls[0].headers["dapr-api-token"] == "s3cret"
        await wait_gone(client, "fallback")

    scenario(node, body)


def test_an_app_without_a_token_gets_no_token_header(node: WatchNode, sink: Sink) -> None:
    async def body(client: TockClient) -> None:
        await client.register_app(sink.url)
        await client.create("plain", due_time="0s")
        (call,) = await asyncio.to_thread(sink.wait_for, "plain", 1, WAIT_S)
        assert "dapr-api-token" not in call.headers

    scenario(node, body)


def test_a_trigger_of_an_app_without_url_waits_for_a_watcher(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        await client.create("patient", due_time="0s")
        await asyncio.sleep(QUIET_S)
        async with client.watch() as stream:
            (trigger,) = await next_batch(stream)
            assert (trigger.name, trigger.attempt) == ("patient", 1)
            await stream.ack([(trigger.id, "SUCCESS")])
            await wait_gone(client, "patient")

    scenario(node, body)


def test_a_text_frame_closes_the_stream(node: WatchNode) -> None:
    async def body(client: TockClient) -> None:
        async with client.watch() as stream:
            await stream._socket.send_str("hello")
            with pytest.raises(StopAsyncIteration):
                await next_batch(stream)

    scenario(node, body)


def test_the_internal_route_takes_only_a_fresh_members_signature_and_only_once(
    node: WatchNode,
) -> None:
    trigger = Trigger("default", "app", "job", "uid", 1, 1, b"")
    payload = encode_forward([trigger], 1000)
    other = encode_forward([dataclasses.replace(trigger, uid="other")], 1000)
    member = RequestSigner(node.config.secret, SystemClock())

    def signed(
        signer: RequestSigner, body: bytes = payload, audience: str = node.config.http
    ) -> dict[str, str]:
        signature = signer.signature(audience, "POST", INTERNAL_DELIVER_PATH, body)
        return {SIGNATURE_HEADER: signature}

    good = signed(member)
    stale = FakeClock(wall_ms=SystemClock().wall_ms() - 60_000)
    refused = [
        {},
        {SIGNATURE_HEADER: "garbage"},
        signed(RequestSigner("not the secret", SystemClock())),
        # Signed for another body: a request altered on the way.
        signed(member, other),
        # Signed for another member: a request to it, replayed here.
        signed(member, audience="127.0.0.1:1"),
        # Signed a minute ago: a recorded request, outside the freshness window.
        signed(RequestSigner(node.config.secret, stale)),
    ]

    async def body(client: TockClient) -> None:
        url = client.base_url + INTERNAL_DELIVER_PATH
        async with aiohttp.ClientSession() as session:
            for headers in refused:
                async with session.post(url, data=payload, headers=headers) as reply:
                    assert reply.status == 401, headers
            async with session.post(url, data=payload, headers=good) as reply:
                # No watcher of that app here: the owner is told to look elsewhere.
                assert reply.status == 200
                assert decode_outcomes(await reply.read(), 1, 1024) == [
                    DeliveryOutcome.UNDELIVERABLE
                ]
            # The same request again, as a recording of it would be sent: refused.
            async with session.post(url, data=payload, headers=good) as reply:
                assert reply.status == 401
                assert "replayed" in (await reply.json())["message"]

    scenario(node, body)


def test_a_watch_with_a_namespace_that_is_not_utf8_is_a_400_and_watching_goes_on(
    node: WatchNode,
) -> None:
    # The upgrade headers of a real handshake, with the namespace as bytes no node can encode:
    # before the edge checked it, the recorded watcher killed the announcer for good.
    host, _, port = node.config.http.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    try:
        connection.putrequest("GET", "/v1.0/apps/bad-namespace/watch")
        handshake = {
            "Upgrade": b"websocket",
            "Connection": b"Upgrade",
            "Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": b"13",
            "dapr-namespace": b"ns\xff",
        }
        for key, value in handshake.items():
            connection.putheader(key, value)
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 400
        assert b"dapr-namespace is not valid UTF-8" in answer.read()
    finally:
        connection.close()

    async def body(client: TockClient) -> None:
        before = set(node.watchers())
        async with client.watch():
            # Recorded by the time the handshake answers: the announcer is alive.
            assert len(set(node.watchers()) - before) == 1

    scenario(node, body)
