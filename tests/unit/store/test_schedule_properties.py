"""Properties of schedules, checked by hypothesis against independent brute-force oracles.

Method: random cron expressions are built from known value sets, so an oracle can search without
parsing: day by day in UTC for the calendar rules, and minute by minute over real instants near
the daylight saving transitions of several zones for the gap and overlap rules. The oracles use
only Python's datetime and zoneinfo. Around them: next times are strictly after the given
instant, whole seconds, and never decrease as the given instant increases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import ScheduleError
from store.schedule import (
    format_rfc3339_ms,
    parse_due_time,
    parse_go_duration,
    parse_schedule,
)
from store.time_formats import parse_go_duration_ns

EXAMPLES = settings(deadline=None, max_examples=150)
ORACLE_YEARS_MAX = 9  # February 29th comes back within 8 years, across 2100 included.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
MINUTE_S = 60

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "Australia/Lord_Howe",  # Half-hour changes.
    "Africa/Casablanca",  # Several changes a year, around Ramadan.
    "Pacific/Apia",  # Skipped 30 December 2011 entirely.
)


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    starred: bool


@dataclass(frozen=True)
class Spec:
    seconds: Field
    minutes: Field
    hours: Field
    days_of_month: Field
    months: Field
    days_of_week: Field

    def text(self) -> str:
        fields = (
            self.seconds,
            self.minutes,
            self.hours,
            self.days_of_month,
            self.months,
            self.days_of_week,
        )
        return " ".join(field.text for field in fields)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months.values:
            return False
        in_month = day.day in self.days_of_month.values
        in_week = day.isoweekday() % 7 in self.days_of_week.values
        if self.days_of_month.starred or self.days_of_week.starred:
            return in_month and in_week
        return in_month or in_week


def field_strategy(low: int, high: int) -> st.SearchStrategy[Field]:
    star = st.just(Field("*", frozenset(range(low, high + 1)), starred=True))
    values = st.sets(st.integers(low, high), min_size=1, max_size=4).map(
        lambda chosen: Field(",".join(map(str, sorted(chosen))), frozenset(chosen), False)
    )
    stepped = st.tuples(st.integers(low, high), st.integers(low, high), st.integers(1, 9)).map(
        lambda triple: Field(
            f"{min(triple[:2])}-{max(triple[:2])}/{triple[2]}",
            frozenset(range(min(triple[:2]), max(triple[:2]) + 1, triple[2])),
            starred=False,
        )
    )
    return st.one_of(star, values, stepped)


SPECS = st.builds(
    Spec,
    field_strategy(0, 59),
    field_strategy(0, 59),
    field_strategy(0, 23),
    field_strategy(1, 31),
    field_strategy(1, 12),
    field_strategy(0, 6),
)
# 2000-01-01 to 2099-12-31, with milliseconds.
INSTANTS_MS = st.integers(946_684_800_000, 4_102_444_799_999)


def utc_oracle(spec: Spec, after_ms: int) -> int | None:
    """The first matching second after after_ms, searched day by day in UTC; None if none."""
    start = (EPOCH + timedelta(seconds=after_ms // 1000 + 1)).replace(tzinfo=None)
    day = start.date()
    for _ in range(ORACLE_YEARS_MAX * 366):
        if spec.day_matches(day):
            found = first_time_of_day(spec, day, start)
            if found is not None:
                return round((found.replace(tzinfo=UTC) - EPOCH).total_seconds())
        day += DAY
    return None


def first_time_of_day(spec: Spec, day: date, start: datetime) -> datetime | None:
    floor = start.time() if day == start.date() else time(0, 0, 0)
    for hour in sorted(spec.hours.values):
        for minute in sorted(spec.minutes.values):
            if (hour, minute) < (floor.hour, floor.minute):
                continue
            for second in sorted(spec.seconds.values):
                if time(hour, minute, second) >= floor:
                    return datetime.combine(day, time(hour, minute, second))
    return None


@EXAMPLES
@given(SPECS, INSTANTS_MS)
def test_cron_agrees_with_a_day_by_day_oracle(spec: Spec, after_ms: int) -> None:
    expected_s = utc_oracle(spec, after_ms)
    if expected_s is None:
        with pytest.raises(ScheduleError, match=r"^schedule never fires"):
            parse_schedule(spec.text(), "UTC")
        return
    assert parse_schedule(spec.text(), "UTC").next_after(after_ms) == expected_s * 1000


def zone_transitions(zone_name: str) -> list[int]:
    """Every instant (s) in 2010-2027 at which zone's UTC offset changes."""
    zone = ZoneInfo(zone_name)

    def offset(instant_s: int) -> timedelta | None:
        return datetime.fromtimestamp(instant_s, zone).utcoffset()

    transitions = []
    day_s = 86_400
    start_s = round((datetime(2010, 1, 1, tzinfo=UTC) - EPOCH).total_seconds())
    for low_s in range(start_s, start_s + 18 * 365 * day_s, day_s):
        high_s = low_s + day_s
        if offset(low_s) == offset(high_s):
            continue
        while high_s - low_s > 1:
            middle_s = (low_s + high_s) // 2
            low_s, high_s = (
                (middle_s, high_s) if offset(middle_s) == offset(low_s) else (low_s, middle_s)
            )
        transitions.append(high_s)
    return transitions


TRANSITIONS = [(zone, instant) for zone in ZONES for instant in zone_transitions(zone)]


@st.composite
def near_transition(draw: st.DrawFn) -> tuple[str, int]:
    """A zone and an instant (ms) within 30 hours of one of its offset changes."""
    zone, transition_s = draw(st.sampled_from(TRANSITIONS))
    return zone, transition_s * 1000 + draw(st.integers(-30 * 3_600_000, 30 * 3_600_000))


MINUTE_CRONS = st.tuples(
    st.one_of(st.just("*"), st.sets(st.integers(0, 59), min_size=1, max_size=4).map(sorted)),
    st.one_of(st.just("*"), st.sets(st.integers(0, 23), min_size=1, max_size=3).map(sorted)),
)


def render(values: str | list[int]) -> str:
    return values if isinstance(values, str) else ",".join(map(str, values))


def matches(wall: datetime, minutes: str | list[int], hours: str | list[int]) -> bool:
    return (minutes == "*" or wall.minute in minutes) and (hours == "*" or wall.hour in hours)


def zone_oracle(
    minutes: str | list[int], hours: str | list[int], zone: ZoneInfo, after_s: int
) -> int:
    """The first instant after after_s at which the rules fire, scanning minute by minute.

    An instant fires when its wall time matches and is not a repeat (fold 0), or when it ends a
    gap containing a matching wall time.
    """
    instant_s = (after_s // MINUTE_S + 1) * MINUTE_S
    while True:
        local = datetime.fromtimestamp(instant_s, zone).replace(tzinfo=None, fold=0)
        previous = datetime.fromtimestamp(instant_s - MINUTE_S, zone).replace(tzinfo=None)
        in_gap = previous + timedelta(minutes=1)
        while in_gap < local:
            if matches(in_gap, minutes, hours):
                return instant_s
            in_gap += timedelta(minutes=1)
        is_repeat = datetime.fromtimestamp(instant_s, zone).fold == 1
        if not is_repeat and matches(local, minutes, hours):
            return instant_s
        instant_s += MINUTE_S
        assert instant_s - after_s < 4 * 86_400, "every generated cron fires daily"


@EXAMPLES
@given(near_transition(), MINUTE_CRONS)
def test_cron_agrees_with_an_instant_oracle_across_transitions(
    zone_and_after: tuple[str, int], fields: tuple[str | list[int], str | list[int]]
) -> None:
    zone, after_ms = zone_and_after
    minutes, hours = fields
    text = f"0 {render(minutes)} {render(hours)} * * *"
    expected_s = zone_oracle(minutes, hours, ZoneInfo(zone), after_ms // 1000)
    assert parse_schedule(text, zone).next_after(after_ms) == expected_s * 1000


CRON_TEXTS = st.sampled_from(
    [
        "* * * * * *",
        "0 30 * * * *",
        "0 */15 * * * *",
        "0 30 2 * * *",
        "0 30 1 * * *",
        "0 0 0 * * *",
        "30 59 23 * * *",
        "0 0 12 * * sun",
        "0 0 0 29 2 *",
        "7 13 1-3 * * *",
    ]
)


@EXAMPLES
@given(CRON_TEXTS, near_transition(), st.integers(0, 40 * 3_600_000))
def test_next_time_is_strictly_after_whole_and_monotone(
    text: str, zone_and_after: tuple[str, int], later_by_ms: int
) -> None:
    zone, after_ms = zone_and_after
    schedule = parse_schedule(text, zone)
    first_ms = schedule.next_after(after_ms)
    later_ms = schedule.next_after(after_ms + later_by_ms)
    assert first_ms > after_ms
    assert first_ms % 1000 == 0
    assert later_ms >= first_ms
    # Chaining next times never stalls nor goes back.
    assert schedule.next_after(first_ms) > first_ms


@EXAMPLES
@given(st.integers(100, 10**9), INSTANTS_MS)
def test_interval_next_time(interval_ms: int, after_ms: int) -> None:
    schedule = parse_schedule(f"@every {interval_ms}ms", "Europe/Berlin")
    assert schedule.next_after(after_ms) == after_ms + interval_ms > after_ms


@EXAMPLES
@given(
    st.booleans(),
    st.lists(st.integers(0, 10_000), min_size=6, max_size=6),
)
def test_go_duration_sums_its_elements(negative: bool, amounts: list[int]) -> None:
    hours, minutes, seconds, millis, micros, nanos = amounts
    text = f"{'-' if negative else ''}{hours}h{minutes}m{seconds}s{millis}ms{micros}us{nanos}ns"
    magnitude_ns = (
        ((hours * 60 + minutes) * 60 + seconds) * 10**9 + millis * 10**6 + micros * 1000 + nanos
    )
    expected_ns = -magnitude_ns if negative else magnitude_ns
    assert parse_go_duration_ns(text) == expected_ns
    assert parse_go_duration(text) == -(-expected_ns // 10**6)


@EXAMPLES
@given(st.integers(0, 253_402_300_799_999), INSTANTS_MS)
def test_rfc3339_output_reads_back(ms: int, now_ms: int) -> None:
    assert parse_due_time(format_rfc3339_ms(ms), now_ms) == ms


def test_every_zone_has_transitions_to_sample() -> None:
    assert {zone for zone, _ in TRANSITIONS} == set(ZONES)
