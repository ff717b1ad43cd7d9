"""The owner's hop to another node's watchers (node/watch/forward.py) against a real HTTP target.

The target is an aiohttp server on 127.0.0.1 standing for the node that holds the watcher: it
records the triggers of every batch it is sent and answers SUCCESS for each, holding its answer
to the first batch until the test lets it go. With one request at a time per node, a second
trigger waits in the owner's lane meanwhile. A plain TCP server stands for it where the test must
tell a connection reset from a close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from node.delivery.trigger import DeliveryOutcome, Trigger
from node.internal_auth import RequestSigner
from node.supervisor import Supervisor
from node.watch.forward import INTERNAL_DELIVER_PATH, MSGPACK, ForwardConfig, Forwarder
from node.watch.frames import decode_forward, encode_outcomes
from store.clock import SystemClock
from tests.support.cluster_secret import TEST_CLUSTER_SECRET
from tests.unit.node.api_node import free_port

ACK_TIMEOUT_S = 3.0
WAIT_S = 10.0


class Target:
    """The node holding the watcher, as the owner's forwarder sees it."""

    def __init__(self) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.batches: list[list[str]] = []
        self.first_received = asyncio.Event()
        self.release_first = asyncio.Event()

    async def deliver(self, request: web.Request) -> web.Response:
        triggers, _ = decode_forward(await request.read(), 1 << 20)
        self.batches.append([trigger.name for trigger in triggers])
        if len(self.batches) == 1:
            self.first_received.set()
            await self.release_first.wait()
        body = encode_outcomes([DeliveryOutcome.SUCCESS] * len(triggers))
        return web.Response(body=body, content_type=MSGPACK)


@asynccontextmanager
async def serving(target: Target) -> AsyncIterator[Forwarder]:
    app = web.Application()
    app.router.add_post(INTERNAL_DELIVER_PATH, target.deliver)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = target.address.split(":")
    await web.TCPSite(runner, host, int(port)).start()
    forwarder = Forwarder(
        ForwardConfig(requests_per_node_max=1),
        ACK_TIMEOUT_S,
        RequestSigner(TEST_CLUSTER_SECRET, SystemClock()),
        Supervisor(),
    )
    try:
        yield forwarder
    finally:
        target.release_first.set()
        await forwarder.close()
        await runner.cleanup()


def trigger(name: str) -> Trigger:
    return Trigger("default", "app", name, f"uid-{name}", 1, 1, b"{}")


def test_a_delivery_abandoned_while_its_trigger_waits_in_the_lane_sends_nothing() -> None:
    # The engine abandons a delivery when its lease lapses: a trigger still queued for the hop
    # must then never reach the other node (nor, through it, the app).
    async def body() -> None:
        target = Target()
        async with serving(target) as forwarder:
            first = asyncio.create_task(forwarder.deliver(target.address, trigger("first")))
            await asyncio.wait_for(target.first_received.wait(), WAIT_S)
            abandoned = asyncio.create_task(forwarder.deliver(target.address, trigger("later")))
            await asyncio.sleep(0.1)  # queued behind the request in flight
            abandoned.cancel()
            target.release_first.set()
            assert await asyncio.wait_for(first, WAIT_S) is DeliveryOutcome.SUCCESS
            last = forwarder.deliver(target.address, trigger("last"))
            assert await asyncio.wait_for(last, WAIT_S) is DeliveryOutcome.SUCCESS
        assert target.batches == [["first"], ["last"]]

    asyncio.run(asyncio.wait_for(body(), 30))


class RawTarget:
    """A plain TCP server reading one request: it tells a reset (RST) from a close (FIN)."""

    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.ending: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.received.set()
        try:
            ended = "closed" if not await reader.read(1) else "more bytes"
        except ConnectionResetError:
            ended = "reset"
        self.ending.set_result(ended)
        writer.close()


def test_abandon_cuts_a_batch_in_flight_with_a_connection_reset() -> None:
    # The owner's fence: what the kernel still holds of a batch must never go out once a link
    # comes back, so the connection is reset (SO_LINGER 0), not closed.
    async def body() -> None:
        target = RawTarget()
        server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        forwarder = Forwarder(
            ForwardConfig(),
            ACK_TIMEOUT_S,
            RequestSigner(TEST_CLUSTER_SECRET, SystemClock()),
            Supervisor(),
        )
        try:
            delivery = asyncio.create_task(forwarder.deliver(address, trigger("cut")))
            await asyncio.wait_for(target.received.wait(), WAIT_S)
            forwarder.abandon()
            assert await asyncio.wait_for(delivery, WAIT_S) is DeliveryOutcome.UNDELIVERABLE
            assert await asyncio.wait_for(target.ending, WAIT_S) == "reset"
        finally:
            await forwarder.close()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(body(), 30))
