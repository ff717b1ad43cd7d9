"""The one injected clock: wall time for schedules, monotonic time for timeouts and leases.

Nothing else in tock reads the system clock, so tests can drive time with FakeClock and a
schedule computed on one node is computed the same on every node (time arrives in commands).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC): what schedules and dueTimes are measured in."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts, leases and lateness."""
        ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to: deterministic tests of timers and leases."""

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
