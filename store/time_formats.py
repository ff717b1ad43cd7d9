"""The textual time formats Dapr accepts: Go durations, ISO 8601 durations, RFC3339 instants.

Everything here is pure and works in integer milliseconds since the Unix epoch (UTC). A value
that falls between two milliseconds is rounded up, toward +infinity, because tock promises that
no trigger is ever early: a due time of `...53.0005Z` may fire at `...53.001Z`, never at `.000`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from store.errors import ScheduleError

NS_PER_MS = 1_000_000
MS_PER_SECOND = 1_000

# Go's time.Duration is an int64 count of nanoseconds; ParseDuration rejects what does not fit.
_GO_DURATION_NS_MAX = 2**63 - 1
_GO_DURATION_NS_MIN_MAGNITUDE = 2**63

_GO_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, as Go accepts.
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, as Go accepts.
    "ms": NS_PER_MS,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

# Go scans an element as [0-9]*(\.[0-9]*)? then takes every following rune that is neither a
# digit nor a dot as the unit, so "1 h" has the unknown unit " h" rather than being invalid.
_GO_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_GO_UNIT = re.compile(r"[^0-9.]*")

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)
_ISO_DURATION = re.compile(
    r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)
_ISO_REPEATING = re.compile(r"R[0-9]*/")

# A bound on every time text this module reads: far beyond any real schedule or duration, and
# below the 4300 digits at which Python refuses to convert a string to an int.
TIME_TEXT_CHARS_MAX = 4096

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def parse_go_duration_ns(text: str) -> int:
    """Parse a duration exactly as Go's time.ParseDuration does, to whole nanoseconds.

    The grammar is `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+` with the units ns, us, µs, ms, s, m, h, or
    "0" alone. Fractions are computed exactly and truncated to the nanosecond, as Go does.
    """
    if len(text) > TIME_TEXT_CHARS_MAX:
        raise ScheduleError(f"time: invalid duration: longer than {TIME_TEXT_CHARS_MAX} characters")
    negative = text[:1] == "-"
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0
    if not body:
        raise _invalid_duration(text)
    magnitude_ns = 0
    while body:
        element_ns, body = _leading_go_element(body, text)
        magnitude_ns += element_ns
        if magnitude_ns > _GO_DURATION_NS_MIN_MAGNITUDE:
            raise _invalid_duration(text)
    if negative:
        return -magnitude_ns
    if magnitude_ns > _GO_DURATION_NS_MAX:
        raise _invalid_duration(text)
    return magnitude_ns


def parse_go_duration(text: str) -> int:
    """Parse a Go duration to milliseconds, rounding a sub-millisecond rest up (never early)."""
    return _ceil_div(parse_go_duration_ns(text), NS_PER_MS)


def is_repeating_iso_duration(text: str) -> bool:
    """Whether the text is ISO 8601's repeating form `R<n>/...`, which Dapr refuses for times."""
    return _ISO_REPEATING.match(text) is not None


def parse_point_in_time(text: str, base_ms: int) -> int | None:
    """An absolute instant in ms from a dueTime or ttl string; None if the text is none of them.

    Tried in Dapr's order: RFC3339, then a Go duration after base_ms, then a non-repeating ISO
    8601 duration after base_ms. A result in the past is returned as is.
    """
    if len(text) > TIME_TEXT_CHARS_MAX:
        return None
    absolute_ms = _parse_rfc3339_ms(text)
    if absolute_ms is not None:
        return absolute_ms
    try:
        return base_ms + parse_go_duration(text)
    except ScheduleError:
        return _add_iso_duration(base_ms, text)


def format_rfc3339_ms(ms: int) -> str:
    """An instant as RFC3339 in UTC with three fraction digits: `2026-12-09T16:09:53.123Z`."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


def _parse_rfc3339_ms(text: str) -> int | None:
    """The instant an RFC3339 timestamp names, in ms; None if the text is not one.

    Like Go's time.Parse(time.RFC3339, ...): an upper-case `T` and `Z`, a numeric offset of the
    form +hh:mm, and an optional fraction of a second of any length.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    try:
        days = date(year, month, day).toordinal() - _EPOCH.toordinal()
        datetime(year, month, day, hour, minute, second)  # Validates the time of day.
    except ValueError:
        return None
    offset_seconds = 0
    if sign is not None:
        if int(offset_hours) >= 24 or int(offset_minutes) >= 60:
            return None
        offset_seconds = int(offset_hours) * 3600 + int(offset_minutes) * 60
        offset_seconds = -offset_seconds if sign == "-" else offset_seconds
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds
    fraction_ms = _ceil_div(int(fraction) * MS_PER_SECOND, 10 ** len(fraction)) if fraction else 0
    return seconds * MS_PER_SECOND + fraction_ms


def _add_iso_duration(base_ms: int, text: str) -> int | None:
    """base_ms plus an ISO 8601 duration such as `PT10S` or `P1Y2M3W4DT5H6M7S`; None if not one.

    Years, months and days are calendar units with no fixed length, so they are added the way
    Dapr adds them (Go's AddDate, in UTC): the month moves first and an overflowing day of month
    spills into the next month, so 2026-01-31 plus P1M is 2026-03-03. Hours, minutes and seconds
    are then added as fixed lengths. Components are whole numbers, as Dapr requires.
    """
    match = _ISO_DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    years, months, weeks, days, hours, minutes, seconds = (
        int(part or 0) for part in match.groups()
    )
    try:
        moment = _EPOCH + timedelta(milliseconds=base_ms)
        month_index = moment.year * 12 + moment.month - 1 + years * 12 + months
        year, month_zero_based = divmod(month_index, 12)
        first_of_month = moment.replace(year=year, month=month_zero_based + 1, day=1)
        shifted = first_of_month + timedelta(
            days=moment.day - 1 + weeks * 7 + days, hours=hours, minutes=minutes, seconds=seconds
        )
    except (OverflowError, ValueError):
        return None
    return (shifted - _EPOCH) // _ONE_MS


def _leading_go_element(body: str, original: str) -> tuple[int, str]:
    """The nanoseconds of the first `number unit` element of body, and what follows it."""
    number = _GO_NUMBER.match(body)
    assert number is not None, "the number pattern matches the empty string"
    whole, fraction = number.group(1), number.group(2)
    if not whole and not fraction:
        raise _invalid_duration(original)
    rest = body[number.end() :]
    unit_match = _GO_UNIT.match(rest)
    assert unit_match is not None, "the unit pattern matches the empty string"
    unit = unit_match.group()
    if not unit:
        raise ScheduleError(f"time: missing unit in duration {_go_quote(original)}")
    unit_ns = _GO_UNIT_NS.get(unit)
    if unit_ns is None:
        raise ScheduleError(
            f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(original)}"
        )
    element_ns = int(whole or 0) * unit_ns
    if fraction:
        element_ns += int(fraction) * unit_ns // 10 ** len(fraction)
    return element_ns, rest[unit_match.end() :]


def _invalid_duration(original: str) -> ScheduleError:
    return ScheduleError(f"time: invalid duration {_go_quote(original)}")


def _go_quote(text: str) -> str:
    """Quote as Go's time package does in its errors: non-ASCII and control bytes as \\xNN."""
    pieces = ['"']
    for char in text:
        if char < " " or char >= "\x80":
            pieces.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        elif char in ('"', "\\"):
            pieces.append("\\" + char)
        else:
            pieces.append(char)
    pieces.append('"')
    return "".join(pieces)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
