"""Schedules: parsing, next trigger times and error messages, checked against hand-computed times.

Method: every expected time below was worked out by hand from a calendar and the zone's rules
(Berlin: CET +01:00 / CEST +02:00, changing at 01:00 UTC on the last Sundays of March and
October; New York: EST -05:00 / EDT -04:00, changing at 02:00 local on the second Sunday of March
and the first Sunday of November), then written with its offset so it can be read back. Python's
datetime.fromisoformat turns them into epoch milliseconds; nothing in store/ is used for that.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from store.errors import ScheduleError
from store.schedule import (
    CronSchedule,
    IntervalSchedule,
    Schedule,
    check_zone,
    parse_schedule,
)

# Wednesday 10 June 2026, in the middle of a summer with no DST change near it.
NOW = "2026-06-10T12:10:20+00:00"


def at(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 timestamp with an explicit offset."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, "every expected time states its offset"
    return round(moment.timestamp() * 1000)


def next_times(schedule: Schedule, after: str, count: int) -> list[int]:
    times = [at(after)]
    for _ in range(count):
        times.append(schedule.next_after(times[-1]))
    return times[1:]


# Examples from Dapr's Jobs API documentation and integration tests, plus each grammar feature.
@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        # Dapr docs: every hour on the half hour; every day at 03:15.
        ("0 30 * * * *", "UTC", "2026-06-10T12:30:00+00:00"),
        ("0 15 3 * * *", "UTC", "2026-06-11T03:15:00+00:00"),
        # Dapr's daprd schedule test: 03:02:01 on 4 May or on any Saturday in May (both day
        # fields restricted, so either fires); 1 May 2027 is a Saturday.
        ("1 2 3 4 5 6", "UTC", "2027-05-01T03:02:01+00:00"),
        ("15,45 * * * * *", "UTC", "2026-06-10T12:10:45+00:00"),
        ("5/15 * * * * *", "UTC", "2026-06-10T12:10:35+00:00"),
        ("*/7 * * * * *", "UTC", "2026-06-10T12:10:21+00:00"),
        ("0 */20 9-17/4 * * *", "UTC", "2026-06-10T13:00:00+00:00"),
        ("0 0 12 * JAN-Mar,dec sun", "UTC", "2026-12-06T12:00:00+00:00"),
        ("0 0 0 29 feb ?", "UTC", "2028-02-29T00:00:00+00:00"),
        ("0 0 0 13 * *", "UTC", "2026-06-13T00:00:00+00:00"),
        ("0 0 0 * * fri", "UTC", "2026-06-12T00:00:00+00:00"),
        # Both day fields restricted: the 13th or a Friday, whichever comes first.
        ("0 0 0 13 * 5", "UTC", "2026-06-12T00:00:00+00:00"),
        # `*/2` restricts the day of month (odd days): the 11th comes before Friday the 12th.
        ("0 0 0 */2 * fri", "UTC", "2026-06-11T00:00:00+00:00"),
        # `?` leaves the day of month unrestricted, so only Fridays fire.
        ("0 0 0 ? * fri", "UTC", "2026-06-12T00:00:00+00:00"),
        # A full range is still a restriction in robfig/cron: 1-31 or Monday is every day.
        ("0 0 0 1-31 * mon", "UTC", "2026-06-11T00:00:00+00:00"),
        ("0 0 9 * * mon-fri", "America/New_York", "2026-06-10T09:00:00-04:00"),
        ("CRON_TZ=Asia/Kathmandu 0 0 9 * * *", "UTC", "2026-06-11T09:00:00+05:45"),
        ("TZ=Australia/Sydney 0 0 9 * * *", "UTC", "2026-06-11T09:00:00+10:00"),
        ("  0 30 * * * *  ", "UTC", "2026-06-10T12:30:00+00:00"),
    ],
)
def test_cron_next_time(text: str, zone: str, expected: str) -> None:
    schedule = parse_schedule(text, zone)
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(at(NOW)) == at(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2027-01-01T00:00:00+00:00"),
        ("@monthly", "2026-07-01T00:00:00+00:00"),
        ("@weekly", "2026-06-14T00:00:00+00:00"),
        ("@daily", "2026-06-11T00:00:00+00:00"),
        ("@midnight", "2026-06-11T00:00:00+00:00"),
        ("@hourly", "2026-06-10T13:00:00+00:00"),
        ("CRON_TZ=Europe/Berlin @daily", "2026-06-11T00:00:00+02:00"),
        ("TZ=America/New_York @weekly", "2026-06-14T00:00:00-04:00"),
    ],
)
def test_descriptor_next_time(text: str, expected: str) -> None:
    assert parse_schedule(text, "UTC").next_after(at(NOW)) == at(expected)


@pytest.mark.parametrize(
    ("text", "interval_ms"),
    [
        ("2h45m", 9_900_000),
        ("37m25s", 2_245_000),
        ("@every 1h30m", 5_400_000),
        ("@every 1s", 1_000),
        ("1.5h", 5_400_000),
        ("300ms", 300),
        ("+10s", 10_000),
        ("@every 100500us", 101),
    ],
)
def test_interval_is_counted_from_the_given_instant(text: str, interval_ms: int) -> None:
    schedule = parse_schedule(text, "Europe/Berlin")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.interval_ms == interval_ms
    assert schedule.zone == "Europe/Berlin"
    assert schedule.next_after(at(NOW)) == at(NOW) + interval_ms
    assert schedule.next_after(at(NOW) + 1) == at(NOW) + 1 + interval_ms


def test_interval_ignores_daylight_saving() -> None:
    schedule = parse_schedule("@every 1h", "Europe/Berlin")
    assert schedule.next_after(at("2026-03-29T01:30:00+01:00")) == at("2026-03-29T03:30:00+02:00")


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-06-10T12:29:59.999+00:00", "2026-06-10T12:30:00+00:00"),
        ("2026-06-10T12:30:00+00:00", "2026-06-10T13:30:00+00:00"),
        ("2026-06-10T12:30:00.001+00:00", "2026-06-10T13:30:00+00:00"),
    ],
)
def test_cron_next_time_is_strictly_after_and_whole_second(after: str, expected: str) -> None:
    assert parse_schedule("0 30 * * * *", "UTC").next_after(at(after)) == at(expected)


def test_zone_prefix_overrides_the_default_zone() -> None:
    schedule = parse_schedule("TZ=America/New_York 0 30 2 * * *", "Europe/Berlin")
    assert schedule.zone == "America/New_York"
    assert schedule.text == "TZ=America/New_York 0 30 2 * * *"
    assert parse_schedule("0 30 2 * * *", "Europe/Berlin").zone == "Europe/Berlin"


def test_parsing_is_cached() -> None:
    assert parse_schedule("0 30 * * * *", "UTC") is parse_schedule("0 30 * * * *", "UTC")
    assert parse_schedule("0 30 * * * *", "UTC") != parse_schedule("0 30 * * * *", "Asia/Tokyo")


# Daylight saving time: a wall time in a spring gap fires at the first instant after the gap; a
# wall time in an autumn overlap fires once, at its first occurrence.
@pytest.mark.parametrize(
    ("text", "zone", "after", "expected"),
    [
        # Berlin, spring 29 March 2026: 02:00 CET becomes 03:00 CEST.
        (
            "0 30 * * * *",
            "Europe/Berlin",
            "2026-03-29T01:00:00+01:00",
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",  # 02:30 does not exist.
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:30:00+02:00",
            ],
        ),
        (
            "0 */15 * * * *",
            "Europe/Berlin",
            "2026-03-29T01:40:00+01:00",
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",  # 02:00 to 02:45 collapse into 03:00.
                "2026-03-29T03:15:00+02:00",
            ],
        ),
        (
            "0 30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T00:00:00+01:00",
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        ),
        # Berlin, autumn 25 October 2026: 03:00 CEST becomes 02:00 CET.
        (
            "0 30 * * * *",
            "Europe/Berlin",
            "2026-10-25T01:00:00+02:00",
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:30:00+02:00",  # 02:30 CET, the repeat, does not fire.
                "2026-10-25T03:30:00+01:00",
                "2026-10-25T04:30:00+01:00",
            ],
        ),
        (
            "0 30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T03:00:00+02:00",
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        # New York, spring 8 March 2026: 02:00 EST becomes 03:00 EDT.
        (
            "0 30 * * * *",
            "America/New_York",
            "2026-03-08T01:00:00-05:00",
            [
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00",
            ],
        ),
        (
            "0 30 2 * * *",
            "America/New_York",
            "2026-03-07T00:00:00-05:00",
            [
                "2026-03-07T02:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
            ],
        ),
        # New York, autumn 1 November 2026: 02:00 EDT becomes 01:00 EST.
        (
            "0 30 * * * *",
            "America/New_York",
            "2026-11-01T00:00:00-04:00",
            [
                "2026-11-01T00:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T02:30:00-05:00",  # 01:30 EST, the repeat, does not fire.
            ],
        ),
        # 02:30 is not ambiguous in New York: the day has 25 hours and 02:30 comes once.
        (
            "0 30 2 * * *",
            "America/New_York",
            "2026-10-31T00:00:00-04:00",
            [
                "2026-10-31T02:30:00-04:00",
                "2026-11-01T02:30:00-05:00",
                "2026-11-02T02:30:00-05:00",
            ],
        ),
        (
            "0 30 1 * * *",
            "America/New_York",
            "2026-10-31T00:00:00-04:00",
            [
                "2026-10-31T01:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
            ],
        ),
    ],
)
def test_daylight_saving_transitions(text: str, zone: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(text, zone)
    assert next_times(schedule, after, len(expected)) == [at(time) for time in expected]


@pytest.mark.parametrize(
    ("text", "zone", "after", "expected"),
    [
        # From inside the repeated hour the search resumes after it ends.
        ("0 30 * * * *", "Europe/Berlin", "2026-10-25T02:10:00+01:00", "2026-10-25T03:30:00+01:00"),
        ("0 30 2 * * *", "Europe/Berlin", "2026-10-25T02:45:00+01:00", "2026-10-26T02:30:00+01:00"),
        (
            "0 30 * * * *",
            "America/New_York",
            "2026-11-01T01:10:00-05:00",
            "2026-11-01T02:30:00-05:00",
        ),
        ("0 0 3 * * *", "Europe/Berlin", "2026-10-25T02:59:59+01:00", "2026-10-25T03:00:00+01:00"),
        # From the first pass, the rest of the first pass still fires.
        ("0 45 2 * * *", "Europe/Berlin", "2026-10-25T02:10:00+02:00", "2026-10-25T02:45:00+02:00"),
        # From the first instant after a gap, the next trigger is a later one.
        ("0 30 2 * * *", "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"),
        # Lord Howe Island moves its clocks by 30 minutes: 02:00 becomes 02:30 in October.
        (
            "0 15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-04T01:00:00+10:30",
            "2026-10-04T02:30:00+11:00",
        ),
    ],
)
def test_next_time_around_transitions(text: str, zone: str, after: str, expected: str) -> None:
    assert parse_schedule(text, zone).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty spec string"),
        ("   ", "empty spec string"),
        ("0 * * * *", "expected exactly 6 fields, found 5: [0 * * * *]"),
        ("0 0 0 * * * 2026", "expected exactly 6 fields, found 7: [0 0 0 * * * 2026]"),
        ("@x", "unrecognized descriptor: @x"),
        ("@Daily", "unrecognized descriptor: @Daily"),
        ("@every", "unrecognized descriptor: @every"),
        ("@every x", 'failed to parse duration @every x: time: invalid duration "x"'),
        ("@every 5", 'failed to parse duration @every 5: time: missing unit in duration "5"'),
        (
            "@every 5y",
            'failed to parse duration @every 5y: time: unknown unit "y" in duration "5y"',
        ),
        ("@every 0s", "schedule interval must be positive: @every 0s"),
        ("@every -1m", "schedule interval must be positive: @every -1m"),
        ("0", "schedule interval must be positive: 0"),
        ("-2h", "schedule interval must be positive: -2h"),
        ("-", 'failed to parse duration -: time: invalid duration "-"'),
        ("5", 'failed to parse duration 5: time: missing unit in duration "5"'),
        (
            "CRON_TZ=Mars/Olympus 0 * * * * *",
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus",
        ),
        ("TZ=Europe/Berlin", "timezone prefix TZ=Europe/Berlin is not followed by a schedule"),
        ("TZ=UTC @every 1h", "timezone is not supported for @every schedules: @every 1h"),
        ("CRON_TZ=UTC 90m", "timezone is not supported for @every schedules: 90m"),
        ("60 * * * * *", "end of range (60) above maximum (59): 60"),
        ("0 60 * * * *", "end of range (60) above maximum (59): 60"),
        ("0 0 24 * * *", "end of range (24) above maximum (23): 24"),
        ("0 0 0 32 * *", "end of range (32) above maximum (31): 32"),
        ("0 0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("0 0 0 * 13 *", "end of range (13) above maximum (12): 13"),
        ("0 0 0 * 0 *", "beginning of range (0) below minimum (1): 0"),
        ("0 0 0 * * 7", "end of range (7) above maximum (6): 7"),
        ("0 0 0 * * 5-sun", "beginning of range (5) beyond end of range (0): 5-sun"),
        ("5-2 * * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("1-2-3 * * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * * *", "too many slashes: */2/3"),
        ("*/0 * * * * *", "step of range should be a positive number: */0"),
        ("*/x * * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("a * * * * *", 'failed to parse int from a: strconv.Atoi: parsing "a": invalid syntax'),
        (
            "0 0 0 * foo *",
            'failed to parse int from foo: strconv.Atoi: parsing "foo": invalid syntax',
        ),
        (
            "0 0 0 * * monday",
            'failed to parse int from monday: strconv.Atoi: parsing "monday": invalid syntax',
        ),
        (
            "1_0 * * * * *",
            'failed to parse int from 1_0: strconv.Atoi: parsing "1_0": invalid syntax',
        ),
        ("+-1 * * * * *", 'failed to parse int from +: strconv.Atoi: parsing "+": invalid syntax'),
        (
            "99999999999999999999 * * * * *",
            "failed to parse int from 99999999999999999999: strconv.Atoi: "
            'parsing "99999999999999999999": value out of range',
        ),
        ("0 0 0 30 2 *", "schedule never fires: no date matches 0 0 0 30 2 *"),
        (
            "0 0 0 31 apr,jun,sep,nov *",
            "schedule never fires: no date matches 0 0 0 31 apr,jun,sep,nov *",
        ),
        (", * * * * *", "schedule never fires: no date matches , * * * * *"),
        ("0 " * 3000, "schedule is longer than 4096 characters"),
    ],
)
def test_schedule_error_messages(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(text, "UTC")
    assert str(raised.value) == message


def test_bad_default_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"^provided bad location Nowhere/City: unknown"):
        parse_schedule("@daily", "Nowhere/City")
    with pytest.raises(ScheduleError, match=r"^provided bad location Nowhere/City: unknown"):
        parse_schedule("@every 1h", "Nowhere/City")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires"])
def test_check_zone_accepts_iana_zones(zone: str) -> None:
    assert check_zone(zone) == zone


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "Local", "europe/berlin", "America", "../etc/passwd", "zone.tab"]
)
def test_check_zone_refuses_anything_else(zone: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        check_zone(zone)
    assert str(raised.value) == f"provided bad location {zone}: unknown time zone {zone}"
