"""Every schedule, dueTime and ttl form tock accepts, and next trigger times.

All times are int milliseconds since the Unix epoch, UTC. Error messages use the words of Dapr's
(robfig/cron as forked in dapr/kit, Go's time package, go-etcd-cron's builder) so a user moving
between Dapr and tock reads the same diagnosis.

A schedule is either an interval (`@every 1h30m`, or a bare Go duration `2h45m`) or a cron
expression (six fields, or a descriptor such as `@daily`), optionally prefixed by `CRON_TZ=Zone `
or `TZ=Zone `. Cron runs on the wall clock of the schedule's zone; daylight saving gaps and
overlaps follow the rules in store/wall_clock.py. Choices beyond Dapr's, each on purpose:
- Leading and trailing whitespace around a schedule is ignored.
- A cron expression no date can match (`0 0 0 30 2 *`) is refused instead of never firing.
- An interval of zero or less is refused, as is a zone prefix on an interval (as Dapr does).
- ISO 8601 years and months in a dueTime or ttl are calendar units added in UTC, as Dapr adds
  them; any `R.../` repeating form is refused for a dueTime.
"""

from __future__ import annotations

import functools
import importlib.metadata
import zoneinfo
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from store.bounds import (
    DURATION_MS_MAX,
    PERIOD_MS_MIN,
    TIME_MS_MAX,
    TIME_RANGE_TEXT,
    time_in_range,
)
from store.cron import WallClockSearch, parse_cron_fields, parse_descriptor
from store.errors import ScheduleError
from store.time_formats import (
    MS_PER_SECOND,
    TIME_TEXT_CHARS_MAX,
    format_rfc3339_ms,
    is_repeating_iso_duration,
    parse_go_duration,
    parse_point_in_time,
)
from store.wall_clock import first_instant_of_wall, search_start_wall

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "check_zone",
    "format_rfc3339_ms",
    "parse_due_time",
    "parse_go_duration",
    "parse_schedule",
    "parse_ttl",
]

# Every node reads zones from the pinned tzdata package, never from the host's files: two hosts
# with different zone data would compute different trigger times for the same job.
zoneinfo.reset_tzpath(to=())
ZONE_DATA_VERSION = importlib.metadata.version("tzdata")

# Parsed schedules are cached because the state machine re-parses a job's schedule on every
# trigger it acknowledges; a cluster holds far fewer distinct schedule texts than this.
SCHEDULE_CACHE_ENTRIES_MAX = 4096

_ZONE_PREFIXES = ("CRON_TZ=", "TZ=")
_EVERY = "@every "
# A single field starting like a number is read as a bare Go duration, so that "5" or "-1s"
# is reported as a bad duration rather than as a cron expression with too few fields.
_DURATION_LEADS = frozenset("0123456789.+-")


@dataclass(frozen=True)
class Schedule(ABC):
    """A parsed schedule: `text` as submitted, `zone` the IANA zone its wall-clock times use."""

    text: str
    zone: str

    @abstractmethod
    def next_after(self, after_ms: int) -> int:
        """The first trigger time strictly after after_ms.

        A ScheduleError when there is none by the end of the time range (TIME_MS_MAX): the
        sequence then ends, and no caller ever sees a time it could not format or store.
        """

    def first_after(self, anchor_ms: int, after_ms: int) -> int:
        """The first trigger time strictly after `after_ms` of the sequence that has a trigger
        at `anchor_ms` (<= after_ms): where a resumed job picks up its schedule."""
        assert anchor_ms <= after_ms
        return self.next_after(after_ms)


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    """`@every D` or a bare duration D: a trigger every interval_ms, counted from the last one.

    The caller passes the previous scheduled time, or the creation time for the first trigger,
    so the first trigger comes one interval after creation and never at creation.
    """

    interval_ms: int

    def __post_init__(self) -> None:
        assert self.interval_ms > 0, "an interval schedule moves forward"

    def next_after(self, after_ms: int) -> int:
        next_ms = after_ms + self.interval_ms
        if next_ms > TIME_MS_MAX:
            raise _no_time_left()
        return next_ms

    def first_after(self, anchor_ms: int, after_ms: int) -> int:
        # An interval's times are anchor + k * interval: step over the whole gap at once.
        assert anchor_ms <= after_ms
        steps = (after_ms - anchor_ms) // self.interval_ms + 1
        return self.next_after(anchor_ms + (steps - 1) * self.interval_ms)


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """A cron expression or descriptor, matched against the wall clock of `zone`, to the second."""

    _search: WallClockSearch = field(compare=False, repr=False)
    _zone_info: ZoneInfo = field(compare=False, repr=False)

    def next_after(self, after_ms: int) -> int:
        after_s = after_ms // MS_PER_SECOND
        try:
            wall = self._search.next_after(search_start_wall(after_s, self._zone_info))
            next_s = first_instant_of_wall(wall, self._zone_info)
        except (OverflowError, ValueError):
            # Past the end of year 9999 in the schedule's zone: datetime (and croniter) can go
            # no further.
            raise _no_time_left() from None
        assert next_s > after_s, "the next trigger is strictly after the given instant"
        next_ms = next_s * MS_PER_SECOND
        if next_ms > TIME_MS_MAX:
            raise _no_time_left()
        return next_ms


def parse_schedule(text: str, default_zone: str) -> Schedule:
    """Parse a schedule; its zone is the prefix's if it has one, else default_zone.

    default_zone is the zone of the node that accepted the job, recorded in the job so that
    every node computes the same times.
    """
    return _parse_schedule_cached(text, default_zone)


def parse_due_time(text: str, now_ms: int) -> int:
    """A dueTime: RFC3339, or a Go or ISO 8601 duration after now_ms. A past time is allowed."""
    if is_repeating_iso_duration(text):
        raise ScheduleError("repeats not supported for due time")
    due_ms = parse_point_in_time(text, now_ms)
    if due_ms is None:
        raise ScheduleError("due time format not recognized")
    if not time_in_range(due_ms):
        raise ScheduleError(f"dueTime must be between {TIME_RANGE_TEXT}: got {text}")
    return due_ms


def parse_ttl(text: str, base_ms: int) -> int:
    """A ttl as the instant it ends: RFC3339, or a Go or ISO 8601 duration after base_ms."""
    expiry_ms = None if is_repeating_iso_duration(text) else parse_point_in_time(text, base_ms)
    if expiry_ms is None:
        raise ScheduleError("ttl format not recognized")
    if not time_in_range(expiry_ms):
        raise ScheduleError(f"ttl must end between {TIME_RANGE_TEXT}: got {text}")
    return expiry_ms


def check_zone(zone: str) -> str:
    """The zone itself if it is an IANA time zone known to zoneinfo, else a ScheduleError."""
    _zone_info(zone)
    return zone


@functools.lru_cache(maxsize=SCHEDULE_CACHE_ENTRIES_MAX)
def _parse_schedule_cached(text: str, default_zone: str) -> Schedule:
    spec = text.strip()
    if not spec:
        raise ScheduleError("empty spec string")
    if len(spec) > TIME_TEXT_CHARS_MAX:
        raise ScheduleError(f"schedule is longer than {TIME_TEXT_CHARS_MAX} characters")
    zone, body = _split_zone_prefix(spec)
    if _is_interval(body):
        if zone is not None:
            raise ScheduleError(f"timezone is not supported for @every schedules: {body}")
        check_zone(default_zone)
        return IntervalSchedule(text, default_zone, _parse_interval_ms(body))
    zone = default_zone if zone is None else zone
    fields = parse_descriptor(body) if body.startswith("@") else parse_cron_fields(body)
    if not fields.can_fire():
        raise ScheduleError(f"schedule never fires: no date matches {body}")
    return CronSchedule(text, zone, WallClockSearch(fields), _zone_info(zone))


def _split_zone_prefix(spec: str) -> tuple[str | None, str]:
    """The zone named by a `CRON_TZ=` or `TZ=` prefix (None without one), and the rest."""
    if not spec.startswith(_ZONE_PREFIXES):
        return None, spec
    parts = spec.split(maxsplit=1)
    if len(parts) == 1:
        raise ScheduleError(f"timezone prefix {spec} is not followed by a schedule")
    zone = parts[0].partition("=")[2]
    return check_zone(zone), parts[1]


def _is_interval(body: str) -> bool:
    return body.startswith(_EVERY) or (len(body.split()) == 1 and body[0] in _DURATION_LEADS)


def _parse_interval_ms(body: str) -> int:
    duration_text = body.removeprefix(_EVERY)
    try:
        interval_ms = parse_go_duration(duration_text)
    except ScheduleError as error:
        raise ScheduleError(f"failed to parse duration {body}: {error}") from None
    if interval_ms <= 0:
        raise ScheduleError(f"schedule interval must be positive: {body}")
    if interval_ms < PERIOD_MS_MIN:
        raise ScheduleError(f"schedule interval must be at least {PERIOD_MS_MIN}ms: {body}")
    if interval_ms > DURATION_MS_MAX:
        raise ScheduleError(
            f"schedule interval must be at most {DURATION_MS_MAX // 3_600_000}h: {body}"
        )
    return interval_ms


def _no_time_left() -> ScheduleError:
    return ScheduleError("schedule has no trigger time left before the end of year 9999")


def _zone_info(zone: str) -> ZoneInfo:
    # ZoneInfo keeps its own cache of the zones it has loaded.
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"provided bad location {zone}: unknown time zone {zone}") from None
