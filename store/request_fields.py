"""Reading the typed fields of a request body as Dapr does: uint32 counts, durations, one key in
camelCase or snake_case. Pure; every rule has its own 400 message naming the field."""

from __future__ import annotations

import re

from store.bounds import UINT32_MAX
from store.errors import ScheduleError, ValidationError
from store.time_formats import parse_go_duration

# A number given as a decimal string: more digits than uint32 has is refused before int().
_UINT32_DIGITS_MAX = len(str(UINT32_MAX))
# A duration text: far more than any real duration, and far fewer digits than int() takes.
_DURATION_CHARS_MAX = 64
_PROTO_DURATION = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")


def one_of(body: dict[str, object], camel: str, snake: str, where: str) -> object:
    """The value of a key spelled either way; both spellings at once is a 400."""
    if camel in body and snake in body:
        raise ValidationError(f"{where} has both {camel} and {snake}")
    return body.get(camel, body.get(snake))


def uint32(value: object, field: str) -> int:
    """A uint32 as protojson accepts it: a JSON number or a decimal string."""
    number: object = value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        if len(value.lstrip("0")) > _UINT32_DIGITS_MAX:
            raise ValidationError(f"{field} must be at most {UINT32_MAX}")
        number = int(value)
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValidationError(f"{field} must be a non-negative integer")
    if number > UINT32_MAX:
        raise ValidationError(f"{field} must be at most {UINT32_MAX}")
    return number


def duration_ms(value: object, field: str) -> int:
    """A protobuf Duration string ("1s", "0.5s"), or a Go duration ("500ms", "5m")."""
    message = (
        f'{field} must be a non-negative duration such as "1s", "0.5s" or "500ms": got {value!r}'
    )
    if not isinstance(value, str) or len(value) > _DURATION_CHARS_MAX:
        raise ValidationError(message)
    match = _PROTO_DURATION.fullmatch(value)
    if match:
        fraction = (match.group(2) or "").ljust(3, "0")[:3]
        return int(match.group(1)) * 1000 + int(fraction)
    try:
        parsed_ms = parse_go_duration(value)
    except ScheduleError:
        raise ValidationError(message) from None
    if parsed_ms < 0:
        raise ValidationError(message)
    return parsed_ms


def format_proto_duration(ms: int) -> str:
    """A protobuf Duration in its JSON form: "1s", "0.500s"."""
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}s" if millis == 0 else f"{seconds}.{millis:03d}s"
