"""A lease lapse while triggers are out on watch streams, on real parts: a single-node Raft store,
the engine, real WebSockets (watch_engine_harness.py), real time.

A trigger whose frame was written has reached the app, or will, whatever the node does: when the
lease lapses, its answer is awaited rather than dropped (dropping it made the job fire again
once the lease was back: a duplicate for a node that was only slow to commit a heartbeat), and
nothing more of that delivery goes out (not to another stream, not to the app's URL) until the
lease is back. Each test acts for an app of its own; the app's URL is a sink that must stay
silent, since its streams take every trigger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from node.client.client import SUCCESS, WatchStream, WatchTrigger
from node.engine.engine import EngineConfig
from tests.support.sink import Sink
from tests.unit.node.watch_engine_harness import WatchHarness

WAIT_S = 10.0
# How long a test listens to be sure that nothing more arrives.
QUIET_S = 0.7
SCENARIO_S = 60.0
# One app per test, each with the sink as its URL.
APPS = ("answered", "closing")

# conftest.py's sink answers 200 to every call here.
SCRIPTS: dict[str, Callable[[int], int]] = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[WatchHarness]:
    node = WatchHarness(tmp_path_factory.mktemp("engine-watch"), EngineConfig()).start()
    for app in APPS:
        node.register(app, sink.url)
    yield node
    node.close()


def scenario(body: Callable[[aiohttp.ClientSession], Awaitable[None]]) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            await body(session)

    asyncio.run(asyncio.wait_for(run(), SCENARIO_S))


async def open_stream(
    session: aiohttp.ClientSession, harness: WatchHarness, app: str
) -> WatchStream:
    return WatchStream(await session.ws_connect(f"{harness.watch_url}/{app}"))


async def next_batch(stream: WatchStream, timeout_s: float = WAIT_S) -> list[WatchTrigger]:
    return await asyncio.wait_for(anext(stream), timeout_s)


async def nothing_more(stream: WatchStream) -> None:
    with pytest.raises(TimeoutError):
        await next_batch(stream, QUIET_S)


async def trigger_out(
    session: aiohttp.ClientSession, harness: WatchHarness, app: str, name: str
) -> tuple[WatchStream, WatchTrigger, int]:
    """Open a stream of `app` and put a one-shot job due at once; return the stream, the job's
    trigger as it came out on it, and how many deliveries the engine had spared before."""
    stream = await open_stream(session, harness, app)
    spared = harness.engine.metrics.deliveries_spared
    harness.put(name, app=app, due_time="200ms")
    (trigger,) = await next_batch(stream)
    return stream, trigger, spared


@asynccontextmanager
async def lease_lapsed(harness: WatchHarness, spared: int) -> AsyncIterator[None]:
    """Lapse the engine's lease until the block ends; enter once it has spared one delivery
    more than `spared` (bounded by WAIT_S)."""
    harness.lease_held = False
    try:
        deadline = time.monotonic() + WAIT_S
        while harness.engine.metrics.deliveries_spared == spared:
            assert time.monotonic() < deadline, "the delivery out on the stream was not spared"
            await asyncio.sleep(0.02)
        yield
    finally:
        harness.lease_held = True


def test_the_answer_to_a_trigger_out_on_a_stream_is_recorded_through_a_lease_lapse(
    harness: WatchHarness, sink: Sink
) -> None:
    app = "answered"

    async def body(session: aiohttp.ClientSession) -> None:
        abandoned = harness.engine.metrics.deliveries_abandoned
        stream, trigger, spared = await trigger_out(session, harness, app, "once")
        async with lease_lapsed(harness, spared):
            job = harness.job("once", app=app)
            assert job is not None and job.trigger_count == 0
            await stream.ack([(trigger.id, SUCCESS)])
            # Recorded while the lease is still out: the one-shot job is done.
            await asyncio.to_thread(harness.wait_gone, "once", app)
        await nothing_more(stream)
        assert harness.engine.metrics.deliveries_abandoned == abandoned

    scenario(body)
    assert sink.calls_for("once") == []


def test_a_spared_delivery_whose_stream_closes_sends_nothing_more_until_the_lease_is_back(
    harness: WatchHarness, sink: Sink
) -> None:
    app = "closing"

    async def body(session: aiohttp.ClientSession) -> None:
        first, sent, spared = await trigger_out(session, harness, app, "again")
        # A second stream, open only now: the trigger went out on the first.
        second = await open_stream(session, harness, app)
        async with lease_lapsed(harness, spared):
            await first.close()
            # Neither the other stream nor the URL: that would be a send without a lease.
            await nothing_more(second)
            assert sink.calls_for("again") == []
            job = harness.job("again", app=app)
            assert job is not None and job.trigger_count == 0
        # Back under a lease, the occurrence goes out again, as for an abandoned delivery.
        (resent,) = await next_batch(second)
        assert (resent.trigger_id, resent.attempt) == (sent.trigger_id, sent.attempt)
        await second.ack([(resent.id, SUCCESS)])
        await asyncio.to_thread(harness.wait_gone, "again", app)
        await nothing_more(second)

    scenario(body)
    assert sink.calls_for("again") == []
