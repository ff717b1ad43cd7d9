"""The one injected clock: wall time for schedules, monotonic time for timeouts and leases, and
the node's timers (sleeps and delayed calls).

Nothing else in tock reads the system clock or sets a timer of its own, so tests can drive time
with FakeClock, the simulation runs every node's timers on its virtual loop, and a schedule
computed on one node is computed the same on every node (time arrives in commands).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC): what schedules and dueTimes are measured in."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts, leases and lateness."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        """Call `callback(*args)` on the running loop once `seconds` have passed on this clock;
        cancel the handle to call it off."""
        ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, callback, *args)


class FakeClock:
    """A clock that moves only when told to: deterministic tests of timers and leases.

    `advance` moves it, and so does `sleep`: a sleeper on a fake clock is the one that says the
    time has passed, then yields to the loop once. Timers set with `call_later` fire (through
    the loop, in deadline order) when the clock reaches their deadline, however it got there.
    """

    def __init__(self, wall_ms: int = 1_700_000_000_000, monotonic: float = 1000.0) -> None:
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        # Timers not yet due, by deadline; the order they were set in breaks ties.
        self._timers: list[_FakeTimer] = []
        self._order = itertools.count()

    def wall_ms(self) -> int:
        return self._wall_ms

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        deadline = self._monotonic + max(seconds, 0.0)
        # A handle the loop never schedules: it is how the caller cancels, and nothing more.
        handle = asyncio.TimerHandle(deadline, callback, args, loop)
        timer = _FakeTimer(deadline, next(self._order), handle, loop, callback, args)
        heapq.heappush(self._timers, timer)
        return handle

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a clock never goes back"
        self._monotonic += seconds
        self._wall_ms += round(seconds * 1000)
        while self._timers and self._timers[0].deadline <= self._monotonic:
            heapq.heappop(self._timers).fire()


class _FakeTimer(NamedTuple):
    deadline: float
    order: int
    handle: asyncio.TimerHandle
    loop: asyncio.AbstractEventLoop
    callback: Callable[..., object]
    args: tuple[object, ...]

    def fire(self) -> None:
        """Hand the call to its loop, unless the timer is cancelled before the loop runs it."""
        if not self.handle.cancelled():
            self.loop.call_soon(self._call)

    def _call(self) -> None:
        if not self.handle.cancelled():
            self.callback(*self.args)
