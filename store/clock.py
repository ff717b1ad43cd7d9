"""The one injected clock: wall time for schedules, monotonic time for timeouts and leases, and
the timers of the node's logic.

Nothing else in tock reads the system clock, so tests can drive time with FakeClock and a
schedule computed on one node is computed the same on every node (time arrives in commands).
The timers (`sleep`, `call_later`) are the running event loop's: the simulation runs its nodes
on a loop of virtual time, so the same timers move with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC): what schedules and dueTimes are measured in."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts, leases and lateness."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`: a pause of the node's logic (a retry, a poll)."""
        ...

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        """Call `callback(*args)` on the loop in `seconds`, unless the handle is cancelled."""
        ...


class LoopTimers:
    """The timers of a clock whose time is the running event loop's."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, callback, *args)


class SystemClock(LoopTimers):
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock(LoopTimers):
    """A clock that moves only when told to: deterministic tests of timers and leases. Its
    timers are the running loop's; `advance` moves what it reads, not them."""

    def __init__(self, wall_ms: int = 1_700_000_000_000, monotonic: float = 1000.0) -> None:
        self._wall_ms = wall_ms
        self._monotonic = monotonic

    def wall_ms(self) -> int:
        return self._wall_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a clock never goes back"
        self._monotonic += seconds
        self._wall_ms += round(seconds * 1000)
