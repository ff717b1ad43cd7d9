"""CrossToLoop: calls from another thread run on the loop in order, several per wake-up, and
neither a failing call nor a closed loop loses the others or raises in the caller."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from store.raft.bridge import CrossToLoop

WAIT_S = 5.0


def run(test: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(test, 10))


async def drained(cross: CrossToLoop) -> None:
    """Return once every call crossed so far has run: they run in order, so a last one that
    sets an event runs after them."""
    done = asyncio.Event()
    cross(done.set)
    await asyncio.wait_for(done.wait(), WAIT_S)


def test_calls_from_a_thread_run_in_order_on_one_wakeup(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        wakeups: list[object] = []
        real = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> asyncio.Handle:
            wakeups.append(callback)
            return real(callback, *args)

        monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
        cross = CrossToLoop(loop)
        seen: list[int] = []

        def call_from_thread() -> None:
            for k in range(200):
                cross(seen.append, k)

        thread = threading.Thread(target=call_from_thread)
        thread.start()
        # Blocking the loop on purpose (bounded by the thread's short work): every call is made
        # before the loop can drain, so the first call's wake-up carries all of them.
        thread.join(WAIT_S)
        assert seen == []
        await drained(cross)
        assert seen == list(range(200))
        # One wake-up for all 200 calls (drained()'s own call joined the same drain).
        assert len(wakeups) == 1

    run(body())


def test_a_call_after_a_drain_schedules_a_new_one() -> None:
    async def body() -> None:
        cross = CrossToLoop(asyncio.get_running_loop())
        seen: list[int] = []
        cross(seen.append, 1)
        await drained(cross)
        assert seen == [1]
        cross(seen.append, 2)
        await drained(cross)
        assert seen == [1, 2]

    run(body())


def test_a_failing_call_does_not_drop_the_next(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    async def body() -> None:
        cross = CrossToLoop(asyncio.get_running_loop())
        seen: list[str] = []
        cross(fail)
        cross(seen.append, "after")
        await drained(cross)
        assert seen == ["after"]

    with caplog.at_level(logging.ERROR, logger="store.raft.bridge"):
        run(body())
    assert "boom" in caplog.text


def test_a_closed_loop_drops_calls_without_raising() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    cross = CrossToLoop(loop)
    seen: list[int] = []
    cross(seen.append, 1)
    cross(seen.append, 2)
    assert seen == []
