"""Each simulated node's clock: the virtual loop's time, plus the node's own wall-clock offset.

Monotonic time is the loop's (it never jumps); wall time is the loop's plus a fixed base plus an
offset that a clock-jump fault moves forward, on one node only, as a badly stepped NTP would.
Sleeps and timers are the virtual loop's, set in the calling process's context, so that a crash
of the node (tests/sim/loop.py) voids them with the rest of its work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Wall ms at loop time 0: a date inside every range the store accepts.
WALL_BASE_MS = 1_750_000_000_000


def true_wall_ms(loop: asyncio.AbstractEventLoop) -> int:
    """The wall time no node reads: what the history's fault windows are measured in."""
    return WALL_BASE_MS + round(loop.time() * 1000)


class NodeClock:
    """A store.clock.Clock for one simulated node."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.offset_ms = 0

    def wall_ms(self) -> int:
        return true_wall_ms(self._loop) + self.offset_ms

    def monotonic(self) -> float:
        return self._loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(
        self, seconds: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        return self._loop.call_later(seconds, callback, *args)

    def jump(self, forward_ms: int) -> None:
        assert forward_ms >= 0, "the simulated clocks only jump forward"
        self.offset_ms += forward_ms
