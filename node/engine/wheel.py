"""A hierarchical timing wheel: one timer per key, armed at an int ms deadline, caller-driven.

Why a wheel and not a heap: the engine keeps one timer per owned job (up to millions) and re-arms
or cancels one on every trigger and every update. A heap with lazy cancellation keeps cancelled
entries until their deadline comes round; the wheel inserts and cancels in O(1) whatever the
number of timers, and a cancelled timer is freed at once.

Layout, with the defaults (8 slot bits, 4 levels): level 0 has 256 slots of 1 ms that cover the
current 256 ms block; level 1 has 256 slots of 256 ms that cover the current 65.5 s block; level 2
has slots of 65.5 s, level 3 slots of 4.66 h, for a horizon of 2**32 ms (49.7 days). A timer lives
at the lowest level whose block also holds the wheel's time, so a level-0 slot holds timers of one
exact deadline: nothing needs rounding and nothing can fire early. Deadlines beyond the horizon
wait in a far-future store of buckets, one per 2**32 ms epoch. When the wheel's time reaches the
start of a coarse slot (or of an epoch), that slot's timers move down to finer levels: a cascade,
at most one per level for each timer.

Tickless: a bitmap per level marks its non-empty slots, so the next thing to do is found in
O(levels) whatever the gap, and empty slots cost nothing. Timers whose deadline is behind the
wheel's time (added late, or left over when a call reached its limit) wait in an overdue store of
buckets visited in deadline order, and come out first on the next call.

The wheel is pure: it never reads a clock and never sleeps. The caller passes its own now_ms (tock
uses Clock.wall_ms()); it sleeps until next_deadline_ms(), and calls expire() again for as long as
next_deadline_ms() <= now_ms (a call with a limit may stop early).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

from store.errors import ValidationError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

SLOT_BITS_DEFAULT: Final = 8
LEVELS_DEFAULT: Final = 4
# 2**16 slots per level is already 4 MB of empty buckets per level; more buys nothing.
SLOT_BITS_MAX: Final = 16
# Deadlines are int ms since the epoch; a horizon past 2**62 ms (146 million years) is pointless.
HORIZON_BITS_MAX: Final = 62
# A bucket-number heap may hold this many numbers of emptied buckets before it is rebuilt.
STALE_NUMBERS_SLACK: Final = 64

# Where a timer is kept, besides the wheel levels 0 .. levels-1 (the far store is `levels`).
_OVERDUE: Final = -1
_MISSING: Final = object()


class _Buckets(Generic[K, V]):
    """Buckets of timers numbered by int and visited in number order (a sparse bucket queue).

    The heap holds bucket numbers, not timers. The number of a bucket that empties stays in the
    heap until it reaches the top, or until stale numbers outnumber live ones and the heap is
    rebuilt; so removing a timer is O(1) and frees it at once, and the heap stays bounded.
    """

    __slots__ = ("_buckets", "_numbers")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[K, V]] = {}
        self._numbers: list[int] = []

    def put(self, number: int, key: K, value: V) -> None:
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = {}
            heapq.heappush(self._numbers, number)
        bucket[key] = value

    def adopt(self, number: int, bucket: dict[K, V]) -> None:
        """Take a whole non-empty bucket as bucket `number`, which must not exist yet."""
        assert bucket, "an empty bucket would never be visited"
        assert number not in self._buckets, "adopting over a live bucket would lose timers"
        self._buckets[number] = bucket
        heapq.heappush(self._numbers, number)

    def discard(self, number: int, key: K) -> bool:
        bucket = self._buckets.get(number)
        if bucket is None or bucket.pop(key, _MISSING) is _MISSING:
            return False
        if not bucket:
            del self._buckets[number]
            if len(self._numbers) > 2 * len(self._buckets) + STALE_NUMBERS_SLACK:
                # A sorted list is a valid heap; this drops the numbers of emptied buckets.
                self._numbers = sorted(self._buckets)
        return True

    def first(self) -> int | None:
        """The lowest number of a non-empty bucket, or None."""
        numbers, buckets = self._numbers, self._buckets
        while numbers and numbers[0] not in buckets:
            heapq.heappop(numbers)
        return numbers[0] if numbers else None

    def bucket(self, number: int) -> dict[K, V]:
        return self._buckets[number]

    def take(self, number: int) -> dict[K, V] | None:
        """Remove bucket `number` and return it (None if it has no timers)."""
        return self._buckets.pop(number, None)


class TimingWheel(Generic[K, V]):
    """Timers keyed by K, each with an int ms deadline and a value V; one timer per key.

    `expire(now_ms)` returns every timer whose deadline <= now_ms and never one whose deadline is
    later. Within one call the timers come out in deadline order; timers with equal deadlines
    come out in no particular order. A timer added with a deadline the wheel has already passed
    comes out on the next call whose now_ms reaches its deadline.
    """

    __slots__ = (
        "_bitmaps",
        "_deadlines",
        "_far",
        "_horizon_bits",
        "_level_by_width",
        "_levels",
        "_lows",
        "_overdue",
        "_slot_bits",
        "_slot_mask",
        "_slots",
        "_tick",
        "_unplaced",
    )

    def __init__(
        self, now_ms: int, *, slot_bits: int = SLOT_BITS_DEFAULT, levels: int = LEVELS_DEFAULT
    ) -> None:
        """Parameters: now_ms is the wheel's starting time (ms, not negative); each level has
        2**slot_bits slots; `levels` levels span 2**(slot_bits * levels) ms before the far store.
        Raises ValidationError for sizes outside the limits above."""
        _validate(now_ms, slot_bits, levels)
        self._slot_bits = slot_bits
        self._slot_mask = (1 << slot_bits) - 1
        self._levels = levels
        self._horizon_bits = slot_bits * levels
        # The level of a deadline is that of the highest bit in which it differs from the tick.
        self._level_by_width = tuple(
            max(width - 1, 0) // slot_bits for width in range(1 + self._horizon_bits)
        )
        self._slots: list[list[dict[K, V]]] = [
            [{} for _ in range(1 << slot_bits)] for _ in range(levels)
        ]
        self._bitmaps = [0] * levels
        # A lower bound of the deadlines in each slot (exact until a cancel), so that the caller
        # wakes at the first deadline rather than at the start of a coarse slot.
        self._lows = [[0] * (1 << slot_bits) for _ in range(levels)]
        self._deadlines: dict[K, int] = {}
        self._overdue: _Buckets[K, V] = _Buckets()
        self._far: _Buckets[K, V] = _Buckets()
        # The timers of the coarse slot being cascaded, not yet moved to their finer place.
        self._unplaced: dict[K, V] = {}
        # The earliest time the wheel levels may hold: every deadline before it is overdue.
        self._tick = now_ms

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def add(self, key: K, deadline_ms: int, value: V) -> None:
        """Arm the timer of `key`, replacing the one it had. O(1)."""
        deadlines = self._deadlines
        old_deadline = deadlines.get(key)
        if old_deadline is not None:
            self._discard(key, old_deadline)
        deadlines[key] = deadline_ms
        self._place(key, deadline_ms, value)

    def cancel(self, key: K) -> bool:
        """Remove the timer of `key` and free it now; False if it had none. O(1)."""
        deadline = self._deadlines.pop(key, None)
        if deadline is None:
            return False
        self._discard(key, deadline)
        return True

    def next_deadline_ms(self) -> int | None:
        """When the caller must call expire() next: never later than the earliest deadline.

        It may be earlier (after a cancel, or for timers beyond the horizon); None if no timers.
        O(levels) amortised.
        """
        overdue = self._overdue.first()
        if overdue is not None:
            return overdue
        if self._unplaced:
            return self._tick
        event = self._next_event()
        if event is None:
            return None
        at_ms, level = event
        if level == self._levels:
            return at_ms
        return self._lows[level][(at_ms >> (level * self._slot_bits)) & self._slot_mask]

    def expire(self, now_ms: int, limit: int | None = None) -> list[tuple[K, int, V]]:
        """Remove and return (key, deadline_ms, value) of the timers whose deadline <= now_ms.

        `limit` bounds the work of this call: the timers it returns plus the timers it moves
        between levels number at most `limit`. When it stops early, next_deadline_ms() <= now_ms
        and the rest comes out in later calls. A now_ms behind an earlier one moves nothing back.
        """
        assert limit is None or limit > 0, "a limit must let each call make progress"
        budget = sys.maxsize if limit is None else limit
        expired: list[tuple[K, int, V]] = []
        budget = self._expire_overdue(now_ms, expired, budget)
        while budget > 0:
            if self._unplaced:
                budget = self._cascade(budget)
            elif self._tick <= now_ms:
                budget = self._advance(now_ms, expired, budget)
            else:
                break
        return expired

    def _expire_overdue(self, now_ms: int, expired: list[tuple[K, int, V]], budget: int) -> int:
        overdue = self._overdue
        while budget > 0:
            deadline = overdue.first()
            if deadline is None or deadline > now_ms:
                break
            bucket = overdue.bucket(deadline)
            budget = self._emit(deadline, bucket, expired, budget)
            if not bucket:
                overdue.take(deadline)
        return budget

    def _advance(self, now_ms: int, expired: list[tuple[K, int, V]], budget: int) -> int:
        """Move the tick to the next event at or before now_ms and handle it, or past now_ms."""
        event = self._next_event()
        if event is None or event[0] > now_ms:
            self._move_tick(now_ms + 1)
            return budget
        at_ms, level = event
        if level > 0:
            # The start of a coarse slot: moving the tick there detaches it for the cascade.
            self._move_tick(at_ms)
            return budget
        bucket = self._detach(0, at_ms & self._slot_mask)
        self._move_tick(at_ms + 1)
        budget = self._emit(at_ms, bucket, expired, budget)
        if bucket:
            # The limit cut this slot short; its rest is now behind the tick, hence overdue.
            self._overdue.adopt(at_ms, bucket)
        return budget

    def _emit(
        self, deadline: int, bucket: dict[K, V], expired: list[tuple[K, int, V]], budget: int
    ) -> int:
        """Move up to `budget` timers of `bucket`, all due at `deadline`, to `expired`."""
        deadlines = self._deadlines
        if len(bucket) <= budget:
            for key in bucket:
                # Re-check the deadline on expiry: a misplaced timer would be a bug, not a fire.
                stored = deadlines.pop(key)
                assert stored == deadline, "a timer sat in the wrong slot"
            expired += [(key, deadline, value) for key, value in bucket.items()]
            budget -= len(bucket)
            bucket.clear()
            return budget
        # popitem() takes from the end in O(1); taking from the front of a dict is not O(1).
        for _ in range(budget):
            key, value = bucket.popitem()
            stored = deadlines.pop(key)
            assert stored == deadline, "a timer sat in the wrong slot"
            expired.append((key, deadline, value))
        return 0

    def _cascade(self, budget: int) -> int:
        """Move up to `budget` timers of the slot being cascaded to their finer place."""
        unplaced, deadlines, place = self._unplaced, self._deadlines, self._place
        if len(unplaced) <= budget:
            self._unplaced = {}
            for key, value in unplaced.items():
                place(key, deadlines[key], value)
            return budget - len(unplaced)
        for _ in range(budget):
            key, value = unplaced.popitem()
            place(key, deadlines[key], value)
        return 0

    def _next_event(self) -> tuple[int, int] | None:
        """(time, level) of the first non-empty slot: a level-0 slot's time is its deadline,
        a coarse slot's time is its start; the far store's level is `levels`. None if empty."""
        tick, slot_bits = self._tick, self._slot_bits
        for level, bitmap in enumerate(self._bitmaps):
            if bitmap:
                # Slots before the tick's own are empty (at coarse levels the tick's own is too),
                # so the lowest set bit is the next slot.
                index = (bitmap & -bitmap).bit_length() - 1
                shift = level * slot_bits
                block_shift = shift + slot_bits
                return (tick >> block_shift << block_shift) | (index << shift), level
        epoch = self._far.first()
        return None if epoch is None else (epoch << self._horizon_bits, self._levels)

    def _move_tick(self, tick: int) -> None:
        """Advance the tick; if it lands on the start of a non-empty coarse slot (or epoch),
        detach that slot for the cascade. Only the highest level the tick is aligned to can
        have one: the finer levels' slots of a block that just began are empty."""
        assert tick > self._tick, "the wheel never goes back"
        assert not self._unplaced, "a cascade must finish before the tick moves on"
        self._tick = tick
        if tick & self._slot_mask:
            return
        trailing_zeros = (tick & -tick).bit_length() - 1
        level = min(trailing_zeros // self._slot_bits, self._levels)
        if level == self._levels:
            bucket = self._far.take(tick >> self._horizon_bits)
        else:
            index = (tick >> (level * self._slot_bits)) & self._slot_mask
            bucket = self._detach(level, index) if self._bitmaps[level] >> index & 1 else None
        if bucket:
            self._unplaced = bucket

    def _detach(self, level: int, index: int) -> dict[K, V]:
        slots = self._slots[level]
        bucket = slots[index]
        slots[index] = {}
        self._bitmaps[level] &= ~(1 << index)
        return bucket

    def _where(self, deadline: int) -> tuple[int, int]:
        """(level, slot index) of a deadline; _OVERDUE with the deadline as bucket number, or
        `levels` (the far store) with the epoch as bucket number."""
        tick = self._tick
        if deadline < tick:
            return _OVERDUE, deadline
        width = (deadline ^ tick).bit_length()
        if width > self._horizon_bits:
            return self._levels, deadline >> self._horizon_bits
        level = self._level_by_width[width]
        return level, (deadline >> (level * self._slot_bits)) & self._slot_mask

    def _place(self, key: K, deadline: int, value: V) -> None:
        level, index = self._where(deadline)
        if level == _OVERDUE:
            self._overdue.put(index, key, value)
        elif level == self._levels:
            self._far.put(index, key, value)
        else:
            slot = self._slots[level][index]
            if not slot:
                self._bitmaps[level] |= 1 << index
                self._lows[level][index] = deadline
            elif deadline < self._lows[level][index]:
                self._lows[level][index] = deadline
            slot[key] = value

    def _discard(self, key: K, deadline: int) -> None:
        level, index = self._where(deadline)
        if level == _OVERDUE:
            found = self._overdue.discard(index, key)
        elif level == self._levels:
            found = self._far.discard(index, key)
        else:
            slot = self._slots[level][index]
            found = slot.pop(key, _MISSING) is not _MISSING
            if found and not slot:
                self._bitmaps[level] &= ~(1 << index)
        if not found:
            # Only a timer of the slot being cascaded is not yet where its deadline says.
            del self._unplaced[key]


def _validate(now_ms: int, slot_bits: int, levels: int) -> None:
    if now_ms < 0:
        raise ValidationError(f"now_ms must not be negative, got {now_ms}")
    if not 1 <= slot_bits <= SLOT_BITS_MAX:
        raise ValidationError(f"slot_bits must be in 1..{SLOT_BITS_MAX}, got {slot_bits}")
    if levels < 1 or slot_bits * levels > HORIZON_BITS_MAX:
        raise ValidationError(
            f"levels must be at least 1 with slot_bits * levels <= {HORIZON_BITS_MAX},"
            f" got {levels} levels of {slot_bits} bits"
        )
