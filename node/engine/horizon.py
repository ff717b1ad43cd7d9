"""The timer horizon: which owned jobs hold a wheel timer now, and when the rest are looked for.

A timer costs its owner about 240 bytes (its key, its deadline, two dict entries), as much again
as the job's row. Most jobs of a large cluster are due hours or days away (daily crons, one-shots
far ahead), so only jobs due by `end_ms` hold a timer. Every half horizon the engine moves
`end_ms` a whole horizon past now and scans the owned rows for the jobs that came into it; the
scan is spread over turns of the loop, `rows_per_turn` rows at a time, and is over long
before the old end is reached.

Why no job is missed. An applied change arms its job against the end as it is when the change
is seen. The end moves before the rows are read, and rows are read from the machine, which is
never behind the changes already seen. So a change applied before the rows were read shows in
them, and one applied after is seen against the new end: every job due in the new range is
either in the rows or armed by its change. A row that is stale by the time it is decoded only
chooses which jobs to look at again: each is armed as the machine holds it then.

Pure: the engine reads the clock and the machine and arms the timers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from store import job_row
from store.jobs import Job


class Horizon:
    __slots__ = ("_half_ms", "_length_ms", "_refill_from_ms", "_rows", "_rows_per_turn", "end_ms")

    def __init__(self, now_ms: int, length_ms: int, rows_per_turn: int) -> None:
        self._length_ms = length_ms
        self._rows_per_turn = rows_per_turn
        self._half_ms = length_ms // 2
        # Jobs due at or before end_ms hold a timer.
        self.end_ms = now_ms + length_ms
        # The rows of the refill under way, and the end it moved from.
        self._rows: Iterator[bytes] | None = None
        self._refill_from_ms = self.end_ms

    def holds(self, fire_ms: int) -> bool:
        """Whether a job due at fire_ms holds a timer now."""
        return fire_ms <= self.end_ms

    @property
    def refilling(self) -> bool:
        return self._rows is not None

    def refill_due(self, now_ms: int) -> bool:
        return self._rows is None and now_ms >= self.end_ms - self._half_ms

    def begin_refill(self, now_ms: int, rows: list[bytes]) -> None:
        """Move the end a horizon past now; `rows` are the owned rows, read in the same turn
        of the loop (no change is seen between the move and the read)."""
        assert self._rows is None, "one refill at a time"
        self._refill_from_ms = self.end_ms
        self.end_ms = max(self.end_ms, now_ms + self._length_ms)
        self._rows = iter(rows)

    def next_ms(self, now_ms: int) -> int:
        """When the loop must come back for the refill: now while one is under way."""
        return now_ms if self._rows is not None else self.end_ms - self._half_ms

    def step(self) -> list[Job]:
        """Of the refill's next rows, the jobs that came into the horizon with it (as the rows
        had them). The refill ends with the step that reads its last row."""
        assert self._rows is not None, "no refill under way"
        chunk = list(itertools.islice(self._rows, self._rows_per_turn))
        if len(chunk) < self._rows_per_turn:
            self._rows = None
        start, end = self._refill_from_ms, self.end_ms
        return [
            job for job in map(job_row.unpack, chunk) if job.fires and start < job.fire_ms <= end
        ]
