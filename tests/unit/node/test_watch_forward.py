"""The owner's hop to another node's watchers (node/watch/forward.py) against a real HTTP target.

The target is an aiohttp server on 127.0.0.1 standing for the node that holds the watcher: it
records the triggers of every batch it is sent and answers SUCCESS for each, holding its answer
to the first batch until the test lets it go. With one request at a time per node, a second
trigger waits in the owner's lane meanwhile.
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
