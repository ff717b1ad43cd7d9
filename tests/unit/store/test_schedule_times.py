"""Go durations, dueTime, ttl and RFC3339 output, checked against hand-computed values.

Method: tables of inputs with their expected milliseconds (worked out by hand; Go's rules for
ParseDuration, including its error texts, taken from the Go source), and one table per error.
Expected instants are written as ISO 8601 with an offset and read back by Python's datetime.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from store.errors import ScheduleError
from store.schedule import format_rfc3339_ms, parse_due_time, parse_go_duration, parse_ttl
from store.time_formats import parse_go_duration_ns

NOW = "2026-06-10T12:10:20+00:00"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def at(text: str) -> int:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, "every expected time states its offset"
    return round(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        ("0s", 0),
        ("5s", 5_000),
        ("300ms", 300),
        ("1.5h", 5_400_000),
        ("2h45m", 9_900_000),
        ("37m25s", 2_245_000),
        ("1h30m", 5_400_000),
        ("-1.5h", -5_400_000),
        ("1.s", 1_000),
        (".5s", 500),
        ("1m0.25s", 60_250),
        ("3h2h", 18_000_000),
        ("1000000ns", 1),
        # A sub-millisecond rest is rounded up, toward +infinity: never early.
        ("1ns", 1),
        ("1us", 1),
        ("1\u00b5s", 1),
        ("1\u03bcs", 1),
        ("1000001ns", 2),
        ("1h1m1s1ms1us1ns", 3_661_002),
        ("-1ns", 0),
        ("-1500us", -1),
        # The int64 limits of Go's time.Duration.
        ("2562047h47m16.854775807s", 9_223_372_036_855),
        ("-2562047h47m16.854775808s", -9_223_372_036_854),
    ],
)
def test_go_duration_in_milliseconds(text: str, expected_ms: int) -> None:
    assert parse_go_duration(text) == expected_ms


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("1.0000000001s", 1_000_000_000),
        ("0.5ns", 0),
        ("1.5us", 1_500),
        ("0.1h", 360_000_000_000),
        ("-2562047h47m16.854775808s", -(2**63)),
    ],
)
def test_go_duration_fractions_truncate_to_the_nanosecond(text: str, expected_ns: int) -> None:
    assert parse_go_duration_ns(text) == expected_ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("x", 'time: invalid duration "x"'),
        (".", 'time: invalid duration "."'),
        (".s", 'time: invalid duration ".s"'),
        ("+", 'time: invalid duration "+"'),
        ("-", 'time: invalid duration "-"'),
        ("--5s", 'time: invalid duration "--5s"'),
        ("5", 'time: missing unit in duration "5"'),
        ("1h5", 'time: missing unit in duration "1h5"'),
        ("5y", 'time: unknown unit "y" in duration "5y"'),
        ("5S", 'time: unknown unit "S" in duration "5S"'),
        ("1 h", 'time: unknown unit " h" in duration "1 h"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        ("5\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "5\\xc3\\xa9"'),
        ('5"', 'time: unknown unit "\\"" in duration "5\\""'),
        ("2562047h47m16.854775808s", 'time: invalid duration "2562047h47m16.854775808s"'),
        ("9999999999999999999h", 'time: invalid duration "9999999999999999999h"'),
        ("1" * 5000 + "s", "time: invalid duration: longer than 4096 characters"),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_go_duration(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC3339, absolute.
        ("2026-12-09T16:09:53+00:00", "2026-12-09T16:09:53+00:00"),
        ("2026-12-09T16:09:53Z", "2026-12-09T16:09:53+00:00"),
        ("2026-12-09T17:09:53+01:00", "2026-12-09T16:09:53+00:00"),
        ("2026-12-09T10:39:53-05:30", "2026-12-09T16:09:53+00:00"),
        ("2026-12-09T16:09:53.123Z", "2026-12-09T16:09:53.123+00:00"),
        ("2026-12-09T16:09:53.5Z", "2026-12-09T16:09:53.500+00:00"),
        ("2026-12-09T16:09:53,5Z", "2026-12-09T16:09:53.500+00:00"),
        # A fraction beyond the millisecond is rounded up: never early.
        ("2026-12-09T16:09:53.1231Z", "2026-12-09T16:09:53.124+00:00"),
        ("2026-12-09T16:09:53.9999Z", "2026-12-09T16:09:54+00:00"),
        ("2028-02-29T00:00:00Z", "2028-02-29T00:00:00+00:00"),
        # A past due time is accepted; it fires at once.
        ("2020-01-01T00:00:00Z", "2020-01-01T00:00:00+00:00"),
        # Go durations from now.
        ("10s", "2026-06-10T12:10:30+00:00"),
        ("1h30m", "2026-06-10T13:40:20+00:00"),
        ("-10s", "2026-06-10T12:10:10+00:00"),
        ("0", NOW),
        ("0.5ms", "2026-06-10T12:10:20.001+00:00"),
        # ISO 8601 durations from now.
        ("PT10S", "2026-06-10T12:10:30+00:00"),
        ("PT1M", "2026-06-10T12:11:20+00:00"),
        ("P1DT2H", "2026-06-11T14:10:20+00:00"),
        ("P1W", "2026-06-17T12:10:20+00:00"),
        ("P1M", "2026-07-10T12:10:20+00:00"),
        ("P1Y", "2027-06-10T12:10:20+00:00"),
        ("P1Y2M3W4DT5H6M7S", "2027-09-04T17:16:27+00:00"),
        ("P0D", NOW),
    ],
)
def test_due_time(text: str, expected: str) -> None:
    assert parse_due_time(text, at(NOW)) == at(expected)


@pytest.mark.parametrize(
    ("base", "text", "expected"),
    [
        # Months first, then an overflowing day spills over, as Go's AddDate does.
        ("2026-01-31T10:00:00+00:00", "P1M", "2026-03-03T10:00:00+00:00"),
        ("2028-01-31T10:00:00+00:00", "P1M", "2028-03-02T10:00:00+00:00"),
        ("2028-02-29T10:00:00+00:00", "P1Y", "2029-03-01T10:00:00+00:00"),
        ("2026-11-15T10:00:00+00:00", "P2M", "2027-01-15T10:00:00+00:00"),
        ("2026-12-31T23:59:59+00:00", "PT1S", "2027-01-01T00:00:00+00:00"),
        # Calendar units are counted in UTC whatever zone the job runs in.
        ("2026-03-28T12:00:00+00:00", "P1D", "2026-03-29T12:00:00+00:00"),
    ],
)
def test_due_time_calendar_units(base: str, text: str, expected: str) -> None:
    assert parse_due_time(text, at(base)) == at(expected)


@pytest.mark.parametrize("text", ["R5/PT10S", "R/PT10S", "R1/2026-12-09T16:09:53Z"])
def test_due_time_refuses_repeats(text: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_due_time(text, at(NOW))
    assert str(raised.value) == "repeats not supported for due time"


UNRECOGNIZED = [
    "",
    "tomorrow",
    "P",
    "PT",
    "P1DT",
    "P1.5D",
    "PT-5S",
    "p1d",
    "P1H",
    "PT1D",
    "P1D2Y",
    "2026-12-09 16:09:53Z",
    "2026-12-09T16:09:53",
    "2026-12-09t16:09:53z",
    "2026-12-09T16:09:53.Z",
    "2026-12-09T16:09:53+0100",
    "2026-12-09T16:09:53+24:00",
    "2026-12-09T16:09:53+01:60",
    "2026-02-30T00:00:00Z",
    "2026-12-09T24:00:00Z",
    "2026-12-09T16:09:60Z",
    "26-12-09T16:09:53Z",
    "\uff12026-12-09T16:09:53Z",
    "5",
    "1y",
    "P99999999Y",
    "P" + "9" * 5000 + "D",
]


@pytest.mark.parametrize("text", UNRECOGNIZED)
def test_due_time_unrecognized(text: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_due_time(text, at(NOW))
    assert str(raised.value) == "due time format not recognized"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-09T16:09:53Z", "2026-12-09T16:09:53+00:00"),
        ("1h", "2026-06-10T13:10:20+00:00"),
        ("PT10S", "2026-06-10T12:10:30+00:00"),
        ("P1M", "2026-07-10T12:10:20+00:00"),
    ],
)
def test_ttl_counts_from_the_given_base(text: str, expected: str) -> None:
    assert parse_ttl(text, at(NOW)) == at(expected)


@pytest.mark.parametrize("text", [*UNRECOGNIZED, "R5/PT10S"])
def test_ttl_unrecognized(text: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_ttl(text, at(NOW))
    assert str(raised.value) == "ttl format not recognized"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (at("2026-12-09T16:09:53.123+00:00"), "2026-12-09T16:09:53.123Z"),
        (at("2026-12-09T17:09:53+01:00"), "2026-12-09T16:09:53.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (at("0999-01-02T03:04:05.006+00:00"), "0999-01-02T03:04:05.006Z"),
    ],
)
def test_format_rfc3339_ms(ms: int, text: str) -> None:
    assert format_rfc3339_ms(ms) == text
