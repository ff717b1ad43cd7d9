"""The injected clock: the fake one moves only when told (or slept on), and never backwards;
timers of both fire on the loop."""

from __future__ import annotations

import asyncio

import pytest

from store.clock import FakeClock, SystemClock

# Bounds each scenario: every one finishes in milliseconds.
WAIT_S = 5.0


def test_fake_clock_moves_wall_and_monotonic_together() -> None:
    clock = FakeClock(wall_ms=1_000, monotonic=5.0)
    clock.advance(1.5)
    assert clock.wall_ms() == 2_500
    assert clock.monotonic() == 6.5


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock()
    with pytest.raises(AssertionError):
        clock.advance(-0.001)


def test_system_clock_monotonic_never_decreases() -> None:
    clock = SystemClock()
    readings = [clock.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)
    assert clock.wall_ms() > 1_700_000_000_000


def test_fake_sleep_moves_the_clock_and_yields_to_the_loop() -> None:
    async def scenario() -> tuple[float, list[str]]:
        clock = FakeClock(monotonic=10.0)
        seen: list[str] = []
        asyncio.get_running_loop().call_soon(seen.append, "other work")
        await clock.sleep(2.5)
        return clock.monotonic(), seen

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT_S)) == (12.5, ["other work"])


def test_fake_timers_fire_on_the_loop_in_deadline_order_once_the_clock_reaches_them() -> None:
    async def scenario() -> list[list[str]]:
        clock = FakeClock()
        fired: list[str] = []
        clock.call_later(2.0, fired.append, "late")
        clock.call_later(1.0, fired.append, "early")
        clock.call_later(1.0, fired.append, "early, set second")
        clock.call_later(1.5, fired.append, "cancelled").cancel()
        seen = []
        clock.advance(0.999)
        await asyncio.sleep(0)
        seen.append(list(fired))
        clock.advance(0.001)
        # Due, but run by the loop: nothing is called from inside advance().
        seen.append(list(fired))
        await clock.sleep(1.0)
        seen.append(list(fired))
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT_S)) == [
        [],
        [],
        ["early", "early, set second", "late"],
    ]


def test_a_fake_timer_cancelled_after_it_fell_due_is_not_called() -> None:
    async def scenario() -> list[str]:
        clock = FakeClock()
        fired: list[str] = []
        handle = clock.call_later(1.0, fired.append, "fired")
        clock.advance(1.0)
        handle.cancel()
        await asyncio.sleep(0)
        return fired

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT_S)) == []


def test_system_clock_timers_run_on_the_loop() -> None:
    async def scenario() -> tuple[str, bool]:
        clock = SystemClock()
        fired: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        clock.call_later(0.01, fired.set_result, "fired")
        clock.call_later(0.0, fired.set_result, "cancelled").cancel()
        started = clock.monotonic()
        await clock.sleep(0.02)
        return await fired, clock.monotonic() - started >= 0.02

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT_S)) == ("fired", True)
