"""The node's log lines: JSON with the node id and the event's fields (a call's extra= and the
fields of its context), text with the fields appended, and contexts that nest and end."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from node.logs import JsonFormatter, LogFormat, TextFormatter, configure_logging, log_fields

REQUIRED_KEYS = {"time", "level", "node", "logger", "message"}


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("tock.test")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args, None, extra=extra
    )


def test_a_json_line_has_the_node_and_the_fields_of_its_context_and_its_call() -> None:
    with log_fields(request_id="r-1"), log_fields(job="nightly"):
        line = JsonFormatter("n2").format(record("fired %s", "once", app="billing"))
    parsed = json.loads(line)
    assert parsed.keys() >= REQUIRED_KEYS
    assert parsed["node"] == "n2"
    assert parsed["logger"] == "tock.test"
    assert parsed["level"] == "INFO"
    assert parsed["message"] == "fired once"
    assert parsed["time"].endswith("Z") and "T" in parsed["time"]
    assert (parsed["request_id"], parsed["job"], parsed["app"]) == ("r-1", "nightly", "billing")


def test_a_context_ends_with_its_block() -> None:
    with log_fields(request_id="r-1"):
        pass
    parsed = json.loads(JsonFormatter("n1").format(record("after")))
    assert "request_id" not in parsed


def test_each_task_keeps_its_own_fields() -> None:
    lines: list[dict[str, object]] = []

    async def handle(request_id: str) -> None:
        with log_fields(request_id=request_id):
            await asyncio.sleep(0.01)
            lines.append(json.loads(JsonFormatter("n1").format(record("handled"))))

    async def both() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(both())
    assert sorted(str(line["request_id"]) for line in lines) == ["a", "b"]


def test_a_json_line_carries_the_traceback_and_any_field_type() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("tock.test")
        exc_record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            sys.exc_info(),
            extra={"when": object()},
        )
    parsed = json.loads(JsonFormatter("n1").format(exc_record))
    assert "ValueError: boom" in parsed["exception"]
    assert parsed["when"].startswith("<object")


def test_a_text_line_appends_the_fields() -> None:
    with log_fields(request_id="r-9"):
        line = TextFormatter().format(record("hello", job="j"))
    assert line.endswith("INFO tock.test: hello request_id=r-9 job=j")


def test_configure_logging_writes_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("debug", LogFormat.JSON, "n7")
        logging.getLogger("tock.test").debug("configured", extra={"job": "x"})
        (line,) = capsys.readouterr().err.splitlines()
        assert json.loads(line)["node"] == "n7" and json.loads(line)["job"] == "x"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
