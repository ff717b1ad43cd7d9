"""The timing wheel: tables for the edges (slot, level and horizon boundaries, cancel during a
cascade, re-add, past deadlines, year-away timers, limits), then a property test that replays
random add / cancel / advance sequences against a plain dict and checks that every timer fires
exactly once, never before its deadline, in deadline order within each call.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.engine.wheel import TimingWheel
from store.errors import ValidationError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DAY_MS = 86_400_000
# An instant aligned to every level of the default wheel (a multiple of 2**32 ms), in 2024.
ALIGNED_MS = 400 * 2**32
WAKEUPS_MAX = 10_000
# Each side of the default wheel's slot (256 ms), level (2**16, 2**24) and far-store (2**32) edges.
BOUNDARY_OFFSETS_MS = [
    *(0, 1, 255, 256, 257),
    *(2**16 - 1, 2**16, 2**16 + 1, 2**24 - 1, 2**24, 2**24 + 1),
    *(2**32 - 1, 2**32, 2**32 + 1, 3 * 2**32 + 7),
]


def fire_by_engine_loop(wheel: TimingWheel[K, V], until_ms: int) -> dict[K, int]:
    """Drive the wheel as the engine does: wake at next_deadline_ms(), expire at that time.

    Returns each key with the time it fired at; asserts nothing fires before its deadline.
    """
    fired: dict[K, int] = {}
    for _ in range(WAKEUPS_MAX):
        now_ms = wheel.next_deadline_ms()
        if now_ms is None or now_ms > until_ms:
            return fired
        for key, deadline_ms, _ in wheel.expire(now_ms):
            assert deadline_ms <= now_ms, "fired early"
            assert key not in fired, "fired twice"
            fired[key] = now_ms
    raise AssertionError("the wheel kept asking to be woken")


@pytest.mark.parametrize(
    "start_ms",
    [ALIGNED_MS, ALIGNED_MS + 12_345, ALIGNED_MS + 2**32 - 3, ALIGNED_MS - 1],
    ids=["aligned", "mid-block", "3ms-before-epoch", "1ms-before-aligned"],
)
@pytest.mark.parametrize("offset_ms", BOUNDARY_OFFSETS_MS)
def test_timer_fires_exactly_at_its_deadline_across_slot_and_level_boundaries(
    start_ms: int, offset_ms: int
) -> None:
    wheel: TimingWheel[str, int] = TimingWheel(start_ms)
    deadline_ms = start_ms + offset_ms
    wheel.add("job", deadline_ms, 7)
    next_ms = wheel.next_deadline_ms()
    assert next_ms is not None and next_ms <= deadline_ms
    assert wheel.expire(deadline_ms - 1) == []
    assert wheel.expire(deadline_ms) == [("job", deadline_ms, 7)]
    assert len(wheel) == 0 and wheel.next_deadline_ms() is None


@pytest.mark.parametrize("offset_ms", [1, 255, 256, 2**16, 2**24 + 5, 2**32 + 5, 400 * DAY_MS])
def test_engine_loop_wakes_exactly_at_the_deadline(offset_ms: int) -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS + 77)
    deadline_ms = ALIGNED_MS + 77 + offset_ms
    wheel.add("job", deadline_ms, 1)
    assert fire_by_engine_loop(wheel, until_ms=deadline_ms + DAY_MS) == {"job": deadline_ms}


def test_consecutive_deadlines_across_a_block_boundary_fire_one_per_millisecond() -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS)
    deadlines = range(ALIGNED_MS + 250, ALIGNED_MS + 262)
    for deadline_ms in deadlines:
        wheel.add(f"t{deadline_ms}", deadline_ms, deadline_ms)
    for deadline_ms in deadlines:
        assert wheel.expire(deadline_ms) == [(f"t{deadline_ms}", deadline_ms, deadline_ms)]


def test_one_call_returns_everything_due_in_deadline_order() -> None:
    wheel: TimingWheel[int, None] = TimingWheel(ALIGNED_MS)
    deadlines = [ALIGNED_MS + (key * 7_919) % 5_000_000 for key in range(2_000)]
    for key, deadline_ms in enumerate(deadlines):
        wheel.add(key, deadline_ms, None)
    expired = wheel.expire(ALIGNED_MS + 5_000_000)
    assert [deadline_ms for _, deadline_ms, _ in expired] == sorted(deadlines)
    assert len(wheel) == 0


@pytest.mark.parametrize("late_by_ms", [1, 1_000, 10 * DAY_MS])
def test_deadline_already_past_fires_on_the_next_call(late_by_ms: int) -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS)
    wheel.expire(ALIGNED_MS + 500)
    wheel.add("late", ALIGNED_MS + 500 - late_by_ms, 1)
    wheel.add("now", ALIGNED_MS + 500, 2)
    assert wheel.next_deadline_ms() == ALIGNED_MS + 500 - late_by_ms
    assert wheel.expire(ALIGNED_MS + 500) == [
        ("late", ALIGNED_MS + 500 - late_by_ms, 1),
        ("now", ALIGNED_MS + 500, 2),
    ]


def test_a_clock_behind_the_wheel_fires_nothing_new() -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS)
    assert wheel.expire(ALIGNED_MS + 1_000) == []
    wheel.add("soon", ALIGNED_MS + 990, 1)
    assert wheel.expire(ALIGNED_MS + 980) == []
    assert wheel.expire(ALIGNED_MS + 990) == [("soon", ALIGNED_MS + 990, 1)]


@pytest.mark.parametrize(
    "second_offset_ms", [10, 5, 100_000, 2**32 + 9], ids=["later", "earlier", "level", "far"]
)
def test_re_adding_a_key_replaces_its_timer(second_offset_ms: int) -> None:
    wheel: TimingWheel[str, str] = TimingWheel(ALIGNED_MS)
    wheel.add("job", ALIGNED_MS + 7, "old")
    wheel.add("job", ALIGNED_MS + second_offset_ms, "new")
    assert len(wheel) == 1
    fired = wheel.expire(ALIGNED_MS + 2**33)
    assert fired == [("job", ALIGNED_MS + second_offset_ms, "new")]


def test_re_adding_an_overdue_key_moves_it_back_into_the_future() -> None:
    wheel: TimingWheel[str, str] = TimingWheel(ALIGNED_MS + 100)
    wheel.add("job", ALIGNED_MS, "overdue")
    wheel.add("job", ALIGNED_MS + 200, "future")
    assert wheel.expire(ALIGNED_MS + 100) == []
    assert wheel.expire(ALIGNED_MS + 200) == [("job", ALIGNED_MS + 200, "future")]


@pytest.mark.parametrize("offset_ms", [-5, 0, 3, 300, 70_000, 2**32 + 1])
def test_cancel_removes_the_timer_and_frees_its_value_at_once(offset_ms: int) -> None:
    @dataclass
    class Payload:
        name: str

    wheel: TimingWheel[str, Payload] = TimingWheel(ALIGNED_MS)
    payload = Payload("job")
    freed = weakref.ref(payload)
    wheel.add("job", ALIGNED_MS + offset_ms, payload)
    del payload
    gc.collect()
    assert freed() is not None and "job" in wheel
    assert wheel.cancel("job") is True
    assert freed() is None, "a cancelled timer must not linger until its deadline"
    assert "job" not in wheel and len(wheel) == 0
    assert wheel.cancel("job") is False
    assert wheel.expire(ALIGNED_MS + 2**33) == []
    assert wheel.next_deadline_ms() is None


def test_cancel_and_re_add_during_a_cascade_cut_short_by_the_limit() -> None:
    # With 2-bit slots a level-1 slot spans 4 ms: ten timers in the slot starting at +4 cascade
    # together, and limit=1 stops that cascade after moving one of them.
    wheel: TimingWheel[int, int] = TimingWheel(ALIGNED_MS, slot_bits=2, levels=3)
    for key in range(10):
        wheel.add(key, ALIGNED_MS + 4 + key % 4, key)
    assert wheel.expire(ALIGNED_MS + 4, limit=1) == [], "the limit also counts timers moved"
    assert wheel.next_deadline_ms() == ALIGNED_MS + 4, "the unmoved timers are due at +4"
    assert all(wheel.cancel(key) for key in range(1, 10, 2))
    wheel.add(0, ALIGNED_MS + 6, 100)
    assert len(wheel) == 5
    fired = drain(wheel, ALIGNED_MS + 20, limit=1)
    assert sorted(fired) == [
        (0, ALIGNED_MS + 6, 100),
        (2, ALIGNED_MS + 6, 2),
        (4, ALIGNED_MS + 4, 4),
        (6, ALIGNED_MS + 6, 6),
        (8, ALIGNED_MS + 4, 8),
    ]
    assert [deadline for _, deadline, _ in fired] == sorted(deadline for _, deadline, _ in fired)
    assert len(wheel) == 0


def drain(wheel: TimingWheel[int, int], now_ms: int, limit: int) -> list[tuple[int, int, int]]:
    """Call expire(now_ms, limit) until the wheel has nothing more due at now_ms."""
    fired: list[tuple[int, int, int]] = []
    for _ in range(WAKEUPS_MAX):
        next_ms = wheel.next_deadline_ms()
        if next_ms is None or next_ms > now_ms:
            return fired
        batch = wheel.expire(now_ms, limit)
        assert len(batch) <= limit
        fired += batch
    raise AssertionError("the wheel kept asking to be woken")


def test_limit_bounds_each_call_and_the_rest_comes_out_later() -> None:
    wheel: TimingWheel[int, int] = TimingWheel(ALIGNED_MS)
    # Level 0 (the first 256 ms) needs no cascade, so the first call spends its limit on firing.
    for key in range(1_000):
        wheel.add(key, ALIGNED_MS + 200, key)
    for key in range(1_000, 1_050):
        wheel.add(key, ALIGNED_MS + 201, key)
    first = wheel.expire(ALIGNED_MS + 201, limit=100)
    assert len(first) == 100 and all(deadline == ALIGNED_MS + 200 for _, deadline, _ in first)
    assert wheel.next_deadline_ms() == ALIGNED_MS + 200
    rest = drain(wheel, ALIGNED_MS + 201, limit=100)
    fired = first + rest
    assert sorted(key for key, _, _ in fired) == list(range(1_050))
    assert [deadline for _, deadline, _ in fired] == sorted(deadline for _, deadline, _ in fired)


def test_limit_counts_the_timers_moved_down_a_level_as_well_as_those_returned() -> None:
    # Ten timers wait in the level-1 slot starting at +4 (2-bit slots): one call with limit 15
    # moves all ten down to level 0, then has 5 left for firing.
    wheel: TimingWheel[int, int] = TimingWheel(ALIGNED_MS, slot_bits=2, levels=3)
    for key in range(10):
        wheel.add(key, ALIGNED_MS + 4, key)
    assert len(wheel.expire(ALIGNED_MS + 4, limit=15)) == 5
    assert len(wheel.expire(ALIGNED_MS + 4, limit=15)) == 5
    assert len(wheel) == 0


@pytest.mark.parametrize("offset_ms", [-10_000, 2**20], ids=["overdue", "far"])
def test_many_emptied_buckets_do_not_lose_the_live_ones(offset_ms: int) -> None:
    # With 2-bit slots and 2 levels an epoch of the far store spans 16 ms: each timer below gets
    # a bucket of its own, and cancelling most of them makes the bucket queue compact itself.
    start_ms = ALIGNED_MS + 2**21
    wheel: TimingWheel[int, int] = TimingWheel(start_ms, slot_bits=2, levels=2)
    deadlines = {key: start_ms + offset_ms + 16 * key for key in range(300)}
    for key, deadline_ms in deadlines.items():
        wheel.add(key, deadline_ms, key)
    for key in deadlines:
        if key % 4:
            assert wheel.cancel(key)
    fired = fire_by_engine_loop(wheel, until_ms=start_ms + 2**22)
    assert fired == {key: deadlines[key] for key in deadlines if key % 4 == 0}


def test_year_away_timers_come_back_from_the_far_store_and_fire_on_time() -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS + 5)
    deadlines = {"year": ALIGNED_MS + 365 * DAY_MS, "three-years": ALIGNED_MS + 3 * 365 * DAY_MS}
    for key, deadline_ms in deadlines.items():
        wheel.add(key, deadline_ms, 0)
    hourly_fired: dict[str, int] = {}
    now_ms = ALIGNED_MS + 5
    while len(hourly_fired) < len(deadlines):
        now_ms += 3_600_000
        for key, deadline_ms, _ in wheel.expire(now_ms):
            assert deadline_ms <= now_ms
            hourly_fired[key] = now_ms
    assert all(0 <= hourly_fired[key] - deadlines[key] < 3_600_000 for key in deadlines)


def test_a_year_away_timer_costs_two_wakeups_its_epoch_start_and_its_deadline() -> None:
    wheel: TimingWheel[str, int] = TimingWheel(ALIGNED_MS + 5)
    deadline_ms = ALIGNED_MS + 2 * 365 * DAY_MS + 12_345
    wheel.add("job", deadline_ms, 0)
    wakeups: list[int] = []
    fired: list[tuple[str, int, int]] = []
    while (now_ms := wheel.next_deadline_ms()) is not None and len(wakeups) < WAKEUPS_MAX:
        wakeups.append(now_ms)
        fired += wheel.expire(now_ms)
    assert wakeups == [deadline_ms >> 32 << 32, deadline_ms]
    assert fired == [("job", deadline_ms, 0)]


@pytest.mark.parametrize(
    ("now_ms", "slot_bits", "levels"),
    [(-1, 8, 4), (0, 0, 4), (0, 17, 4), (0, 8, 0), (0, 16, 4)],
    ids=["negative-now", "no-slot-bits", "too-many-slot-bits", "no-levels", "horizon-too-far"],
)
def test_bad_sizes_are_rejected(now_ms: int, slot_bits: int, levels: int) -> None:
    with pytest.raises(ValidationError):
        TimingWheel(now_ms, slot_bits=slot_bits, levels=levels)


# Offsets that straddle the slot and level edges of both wheels the property test uses.
EDGE_OFFSETS_MS = [0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 255, 256, 65_536, 2**24, 2**32, 2**33 + 3]
offsets_ms = st.one_of(
    st.integers(-40, 300), st.sampled_from(EDGE_OFFSETS_MS), st.integers(0, 2**34)
)
keys = st.integers(0, 12)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), keys, offsets_ms),
        st.tuples(st.just("cancel"), keys, st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([None, 1, 2, 5]), offsets_ms),
    ),
    max_size=60,
)


class Model:
    """The trivially correct timer set: a dict, scanned in full."""

    def __init__(self) -> None:
        self.timers: dict[int, tuple[int, int]] = {}

    def due(self, now_ms: int) -> dict[int, tuple[int, int]]:
        return {key: timer for key, timer in self.timers.items() if timer[0] <= now_ms}


def check_next_deadline(wheel: TimingWheel[int, int], model: Model) -> None:
    """The wheel asks to be woken no later than the earliest deadline, and only if it has one."""
    next_ms = wheel.next_deadline_ms()
    earliest = min((deadline for deadline, _ in model.timers.values()), default=None)
    if earliest is None:
        assert next_ms is None
    else:
        assert next_ms is not None and next_ms <= earliest


def check_advance(
    wheel: TimingWheel[int, int], model: Model, now_ms: int, limit: int | None
) -> None:
    """Expire up to now_ms and compare with the model: exactly once, never early, in order."""
    due = model.due(now_ms)
    fired: dict[int, tuple[int, int]] = {}
    for _ in range(WAKEUPS_MAX):
        batch = wheel.expire(now_ms, limit)
        assert limit is None or len(batch) <= limit
        assert [deadline for _, deadline, _ in batch] == sorted(d for _, d, _ in batch)
        for key, deadline_ms, value in batch:
            assert key not in fired, "fired twice"
            fired[key] = (deadline_ms, value)
        next_ms = wheel.next_deadline_ms()
        if next_ms is None or next_ms > now_ms:
            break
    assert fired == due
    for key in due:
        del model.timers[key]
    assert len(wheel) == len(model.timers)
    assert all(key in wheel for key in model.timers)


@pytest.mark.parametrize(("slot_bits", "levels"), [(2, 2), (3, 3), (8, 4)])
@settings(deadline=None, max_examples=300)
@given(start_ms=st.integers(0, 2**40), steps=operations)
def test_random_operations_match_a_dict_model(
    slot_bits: int, levels: int, start_ms: int, steps: list[tuple[str, int | None, int]]
) -> None:
    wheel: TimingWheel[int, int] = TimingWheel(start_ms, slot_bits=slot_bits, levels=levels)
    model = Model()
    now_ms = start_ms
    for serial, (operation, argument, offset_ms) in enumerate(steps):
        if operation == "add":
            assert argument is not None
            wheel.add(argument, now_ms + offset_ms, serial)
            model.timers[argument] = (now_ms + offset_ms, serial)
        elif operation == "cancel":
            assert argument is not None
            assert wheel.cancel(argument) == (model.timers.pop(argument, None) is not None)
        else:
            # A negative offset is a clock behind the wheel: the call happens, time stays.
            check_advance(wheel, model, now_ms + offset_ms, argument)
            now_ms = max(now_ms, now_ms + offset_ms)
        check_next_deadline(wheel, model)
