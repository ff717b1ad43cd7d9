"""Slots: at most `size` holders at once, the others served first come, first served.

What asyncio.Semaphore does, with every operation O(1) however many wait. Python 3.11's Semaphore
scans all its waiters on each acquire (`locked()` asks whether any waiter is not cancelled) and
removes a woken waiter from the middle of its deque: with the thousands of triggers of a burst
waiting for a watch stream's slots, that was ~10 % of a node's CPU, growing with the square of
the burst. Here a release hands its slot straight to the first waiter still waiting, and a
waiter cancelled meanwhile is skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """Use as `async with slots:`; one instance per event loop."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"slots must be positive, not {size}")
        self._free = size
        # Invariant: a slot is free only while nobody waits (a release hands it over).
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def __aenter__(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                # Handed a slot, then cancelled before it could use it: pass it on.
                self._release()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1
