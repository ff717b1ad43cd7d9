"""Wall-clock times in a time zone and the instants they name, across daylight saving changes.

A cron schedule names wall-clock times ("02:30 every day"); triggers happen at instants. Two
kinds of wall time need a rule, and tock's are:
- In a spring-forward gap a wall time does not exist. It fires at the first instant after the
  gap: 02:30 on the day Berlin jumps from 02:00 to 03:00 fires at 03:00, so a daily job still runs
  that day, and all the wall times inside the gap collapse into that one trigger.
- In an autumn overlap a wall time happens twice. It fires once, at its first occurrence, and
  the repeated hour fires nothing: no job runs twice for one wall time.
Instants here are whole seconds since the Unix epoch, the resolution of cron.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH_WALL = datetime(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)


def search_start_wall(after_s: int, zone: ZoneInfo) -> datetime:
    """The naive wall time from which the next cron match is the next trigger after after_s.

    That is the wall time of after_s itself, except in the second pass of an overlap: the wall
    times left in the overlap then have fired at their first occurrence already, so the search
    starts at the end of the overlap.
    """
    local = datetime.fromtimestamp(after_s, zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold == 0:
        return wall
    first_pass_offset_s = _wall_offset_s(wall, zone, fold=0)
    second_pass_offset_s = _wall_offset_s(wall, zone, fold=1)
    overlap_s = first_pass_offset_s - second_pass_offset_s
    assert overlap_s > 0, "fold 1 is only ever set on the second pass of an overlap"
    transition_s = _first_second_at_offset(zone, after_s - overlap_s, after_s, second_pass_offset_s)
    overlap_end = _EPOCH_WALL + timedelta(seconds=transition_s + first_pass_offset_s)
    assert overlap_end > wall, "after_s lies inside the overlap"
    return overlap_end - _ONE_SECOND


def first_instant_of_wall(wall: datetime, zone: ZoneInfo) -> int:
    """The instant (s) a naive wall time fires at in zone, by the gap and overlap rules above."""
    assert wall.tzinfo is None and wall.microsecond == 0, "a whole-second naive wall time"
    # PEP 495: fold 0 maps with the offset in force before a transition, fold 1 with the one
    # after. They differ only in a gap (fold 0 smaller) or an overlap (fold 0 larger).
    before_offset_s = _wall_offset_s(wall, zone, fold=0)
    after_offset_s = _wall_offset_s(wall, zone, fold=1)
    wall_s = (wall - _EPOCH_WALL) // _ONE_SECOND
    if before_offset_s >= after_offset_s:
        # The wall time exists once, or twice and the first occurrence is the one at fold 0.
        return wall_s - before_offset_s
    # A gap: the transition lies between the two readings of the wall time.
    return _first_second_at_offset(
        zone, wall_s - after_offset_s, wall_s - before_offset_s, after_offset_s
    )


def _first_second_at_offset(zone: ZoneInfo, low_s: int, high_s: int, offset_s: int) -> int:
    """The first second in (low_s, high_s] at which zone's UTC offset is offset_s.

    The window holds one transition, into offset_s; bisection finds it in a dozen steps for
    the usual one-hour change.
    """
    assert _instant_offset_s(low_s, zone) != offset_s, "the window starts before the transition"
    assert _instant_offset_s(high_s, zone) == offset_s, "the window ends after the transition"
    while high_s - low_s > 1:
        middle_s = (low_s + high_s) // 2
        if _instant_offset_s(middle_s, zone) == offset_s:
            high_s = middle_s
        else:
            low_s = middle_s
    return high_s


def _wall_offset_s(wall: datetime, zone: ZoneInfo, fold: int) -> int:
    offset = wall.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None, "a ZoneInfo always knows its offset"
    return offset // _ONE_SECOND


def _instant_offset_s(instant_s: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(instant_s, zone).utcoffset()
    assert offset is not None, "a ZoneInfo always knows its offset"
    return offset // _ONE_SECOND
