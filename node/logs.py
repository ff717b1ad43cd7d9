"""A node's log: one line per event, as text or as one JSON object a line (`--log-format`).

Every line carries the time, the level, the logger and the message; JSON adds the node id. The
fields of the event come from two places, merged: a call's `extra=` (e.g. `extra={"job": name}`)
and the fields the code around it declared for its whole extent with `log_fields(...)` (the
request id of an HTTP request, the job, app and trigger id of a delivery), kept in a contextvar
so that every line logged while handling that request or delivery carries them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

# The attributes every LogRecord has: whatever else a record holds came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Read-only mappings: a context's fields are replaced, never changed in place.
_FIELDS: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "tock_log_fields", default=MappingProxyType({})
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class _Fields:
    """The context manager of `log_fields`. A class rather than a generator: every delivery
    enters one, and a generator's context manager costs about twice as much."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, object]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _FIELDS.set(MappingProxyType({**_FIELDS.get(), **self._fields}))

    def __exit__(self, *_exception: object) -> None:
        _FIELDS.reset(self._token)


def log_fields(**fields: object) -> AbstractContextManager[None]:
    """Add `fields` to every line logged in this context (this task and the tasks it starts)."""
    return _Fields(fields)


def event_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields of one event: those of its context, then those of its call's `extra=`."""
    fields = dict(_FIELDS.get())
    fields.update(
        (key, value)
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    )
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (RFC 3339, UTC, ms), level, node, logger, message, the
    event's fields, and the traceback of an exception as `exception`."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self._node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "node": self._node_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in event_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a field of any type is written, never the reason a line is lost.
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the event's fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = event_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={value}" for key, value in fields.items())


def configure_logging(level: str, log_format: LogFormat, node_id: str) -> None:
    """Send the root logger's records to stderr in `log_format`, from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(node_id) if log_format is LogFormat.JSON else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
