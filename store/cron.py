"""Cron expressions as Dapr reads them, and the search for the next wall-clock second they match.

The grammar and its error messages are robfig/cron's, as forked in dapr/kit: six fields
`second minute hour day-of-month month day-of-week`, numbers, `*` and `?`, ranges `a-b`, steps
`/n`, lists `a,b`, case-insensitive names `jan`-`dec` and `sun`-`sat`, day of week 0-6 with 0 for
Sunday (7 is refused, as Dapr refuses it). Day of month and day of week combine as in Vixie cron:
when both are restricted a day matching either fires, otherwise a day must match both, where
"restricted" means the field has no `*` or `?` with a step of at most 1 (so `*/2` restricts).

The search runs on naive wall-clock date-times, which have no daylight saving time, so croniter
only does calendar arithmetic here; store/wall_clock.py maps wall times to instants.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from croniter import croniter

from store.errors import ScheduleError

CRON_FIELD_COUNT = 6

# The longest day of month each month can have; February has one every leap year.
_DAYS_IN_MONTH_MAX = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31}
_DAYS_IN_MONTH_MAX |= {11: 30, 12: 31}

_DESCRIPTOR_FIELDS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

# Go's strconv.Atoi: an optional sign and ASCII digits. Python's int() would also take spaces,
# underscores and non-ASCII digits, which Dapr refuses.
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_INT_DIGITS_MAX = 18

# A naive origin for the reused croniter; every search moves it first.
_SEARCH_ORIGIN = datetime(1970, 1, 1)


@dataclass(frozen=True)
class _FieldBounds:
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)

    def all_values(self) -> frozenset[int]:
        return frozenset(range(self.low, self.high + 1))


_SECOND = _FieldBounds(0, 59)
_MINUTE = _FieldBounds(0, 59)
_HOUR = _FieldBounds(0, 23)
_DAY_OF_MONTH = _FieldBounds(1, 31)
_MONTH = _FieldBounds(
    1,
    12,
    {
        name: number
        for number, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            start=1,
        )
    },
)
_DAY_OF_WEEK = _FieldBounds(
    0,
    6,
    {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
)
_BOUNDS_IN_ORDER = (_SECOND, _MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)


@dataclass(frozen=True)
class CronFields:
    """The values each of the six fields allows, and how the two day fields combine."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    # True when both day fields are restricted: a day matching either of them fires.
    days_either: bool

    def can_fire(self) -> bool:
        """Whether some date matches, so that a search for the next one ends."""
        every_field = (self.seconds, self.minutes, self.hours, self.days_of_month, self.months)
        if not all(every_field) or not self.days_of_week:
            return False
        if self.days_either:
            return True
        # Both fields must match and one of them is unrestricted: the days of month decide.
        return any(
            day <= _DAYS_IN_MONTH_MAX[month] for month in self.months for day in self.days_of_month
        )

    def croniter_expression(self) -> str:
        """The same schedule in croniter's syntax (seconds first), with explicit value lists."""
        days_of_month, days_of_week = self.days_of_month, self.days_of_week
        every_day = _DAY_OF_MONTH.all_values(), _DAY_OF_WEEK.all_values()
        if self.days_either and (days_of_month == every_day[0] or days_of_week == every_day[1]):
            # Either field already allows every day. Rendered as '*', croniter would switch to
            # "both must match", so both are rendered as '*'.
            days_of_month, days_of_week = every_day
        values = (
            self.seconds,
            self.minutes,
            self.hours,
            days_of_month,
            self.months,
            days_of_week,
        )
        return " ".join(
            _render(field_values, bounds)
            for field_values, bounds in zip(values, _BOUNDS_IN_ORDER, strict=True)
        )


def parse_cron_fields(spec: str) -> CronFields:
    """Parse six whitespace-separated cron fields, with robfig/cron's error messages."""
    fields = spec.split()
    if len(fields) != CRON_FIELD_COUNT:
        raise ScheduleError(
            f"expected exactly {CRON_FIELD_COUNT} fields, found {len(fields)}: [{' '.join(fields)}]"
        )
    parsed = [
        _parse_field(text, bounds) for text, bounds in zip(fields, _BOUNDS_IN_ORDER, strict=True)
    ]
    (seconds, _), (minutes, _), (hours, _), (days_of_month, dom_starred) = parsed[:4]
    (months, _), (days_of_week, dow_starred) = parsed[4:]
    return CronFields(
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=months,
        days_of_week=days_of_week,
        days_either=not (dom_starred or dow_starred),
    )


def parse_descriptor(spec: str) -> CronFields:
    """The fields of a descriptor: `@yearly` (or `@annually`), `@monthly`, `@weekly`, `@daily`
    (or `@midnight`) and `@hourly`."""
    fields = _DESCRIPTOR_FIELDS.get(spec)
    if fields is None:
        raise ScheduleError(f"unrecognized descriptor: {spec}")
    return parse_cron_fields(fields)


class WallClockSearch:
    """The next wall-clock second, strictly after a given one, that a cron expression matches.

    One croniter is built per schedule and moved for each search, under a lock because parsed
    schedules are cached and shared between threads: building a croniter costs several times
    more than moving one.
    """

    def __init__(self, fields: CronFields) -> None:
        assert fields.can_fire(), "a schedule that never fires would make croniter search forever"
        self._iterator = croniter(
            fields.croniter_expression(), _SEARCH_ORIGIN, second_at_beginning=True
        )
        self._lock = threading.Lock()

    def next_after(self, wall: datetime) -> datetime:
        assert wall.tzinfo is None, "the search runs on naive wall-clock time"
        with self._lock:
            self._iterator.set_current(wall, force=True)
            found = self._iterator.get_next(datetime)
        assert found > wall, "croniter returns a time strictly after its current one"
        return found


def _parse_field(text: str, bounds: _FieldBounds) -> tuple[frozenset[int], bool]:
    """The values of a comma-separated list of ranges, and whether it holds a plain `*` or `?`."""
    values: set[int] = set()
    starred = False
    # robfig/cron skips empty list items, so "1,,2" is "1,2"; a field of commas only allows
    # nothing and is refused as a schedule that never fires.
    for expression in filter(None, text.split(",")):
        range_values, range_starred = _parse_range(expression, bounds)
        values |= range_values
        starred = starred or range_starred
    return frozenset(values), starred


def _parse_range(expression: str, bounds: _FieldBounds) -> tuple[frozenset[int], bool]:
    """`number | name | * | ? | start-end`, optionally followed by `/step`."""
    range_and_step = expression.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end, starred = bounds.low, bounds.high, True
    else:
        (start, end), starred = _parse_bounds(low_and_high, expression, bounds), False
    step = 1
    if len(range_and_step) > 2:
        raise ScheduleError(f"too many slashes: {expression}")
    if len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        # "N/step" means "N-max/step".
        if len(low_and_high) == 1:
            end = bounds.high
        starred = starred and step <= 1
    _check_range(start, end, step, expression, bounds)
    return frozenset(range(start, end + 1, step)), starred


def _parse_bounds(
    low_and_high: list[str], expression: str, bounds: _FieldBounds
) -> tuple[int, int]:
    if len(low_and_high) > 2:
        raise ScheduleError(f"too many hyphens: {expression}")
    start = _parse_int_or_name(low_and_high[0], bounds)
    end = _parse_int_or_name(low_and_high[1], bounds) if len(low_and_high) == 2 else start
    return start, end


def _check_range(start: int, end: int, step: int, expression: str, bounds: _FieldBounds) -> None:
    if start < bounds.low:
        raise ScheduleError(
            f"beginning of range ({start}) below minimum ({bounds.low}): {expression}"
        )
    if end > bounds.high:
        raise ScheduleError(f"end of range ({end}) above maximum ({bounds.high}): {expression}")
    if start > end:
        raise ScheduleError(
            f"beginning of range ({start}) beyond end of range ({end}): {expression}"
        )
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expression}")


def _parse_int_or_name(text: str, bounds: _FieldBounds) -> int:
    named = bounds.names.get(text.lower())
    return named if named is not None else _parse_int(text)


def _parse_int(text: str) -> int:
    """Go's strconv.Atoi followed by robfig/cron's refusal of negative numbers."""
    if _GO_INT.fullmatch(text) is None:
        raise ScheduleError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    if len(text.lstrip("+-").lstrip("0")) > _GO_INT_DIGITS_MAX:
        raise ScheduleError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": value out of range'
        )
    number = int(text)
    if number < 0:
        raise ScheduleError(f"negative number ({number}) not allowed: {text}")
    return number


def _render(values: frozenset[int], bounds: _FieldBounds) -> str:
    if values == bounds.all_values():
        return "*"
    return ",".join(str(value) for value in sorted(values))
