"""The injected clock: the fake one moves only when told, and never backwards; the timers of
both are the running event loop's.
"""

from __future__ import annotations

import asyncio

import pytest

from store.clock import FakeClock, SystemClock


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


@pytest.mark.parametrize("clock", [SystemClock(), FakeClock()], ids=["system", "fake"])
def test_the_timers_run_on_the_loop(clock: SystemClock | FakeClock) -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        calls: list[str] = []
        clock.call_later(0.01, calls.append, "due")
        clock.call_later(0.01, calls.append, "cancelled").cancel()
        began = loop.time()
        await clock.sleep(0.05)
        assert loop.time() - began >= 0.05
        return calls

    assert asyncio.run(scenario()) == ["due"]
