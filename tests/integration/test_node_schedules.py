"""Schedules against a real 3-process cluster and a real HTTP app: every example schedule of
Dapr's docs fires when it should, never early, with the headers of the trigger contract, and
`repeats` and `ttl` end it exactly.

Method: short schedules (`@every 1s`, `*/2 * * * * *`, a dueTime 1-2 s out) are created over
HTTP and their deliveries recorded by the sink; the docs' long schedules (hours, days, years)
cannot be waited for, so their first trigger, GET's status.nextTrigger, is checked against a
time computed by hand here from the creation window (independent of store/schedule.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.node_helpers import (
    App,
    Rig,
    rfc3339_ms,
    running_rig,
    scheduled_ms,
    settle,
    steps,
)
from tests.support.sink import Call

# Deliveries of a short schedule arrive within this of their time on an idle machine; the
# bound is loose because the machine is shared with other test processes.
LATE_MS_MAX = 1500
TRIGGER_ID = re.compile(r"^(\d+):([A-Za-z0-9_-]{16})$")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("schedules")) as rig:
        yield rig


@pytest.fixture
def app(rig: Rig) -> App:
    return rig.app()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def assert_on_time(calls: list[Call]) -> None:
    """Never early, and not much late."""
    for c in calls:
        late_ms = c.received_ms - scheduled_ms(c)
        assert 0 <= late_ms <= LATE_MS_MAX, (late_ms, c.headers)


def assert_gone_everywhere(app: App, name: str) -> None:
    for node in (1, 2, 3):
        assert app.get(name, node).status == 404, f"{name} still on n{node}"


def test_every_second_with_repeats_fires_exactly_that_often_with_spec_headers(
    rig: Rig, app: App
) -> None:
    name = app.name("every")
    app.create(name, {"schedule": "@every 1s", "repeats": 3, "data": {"n": 1}}, node=2)
    calls = settle(rig.sink, name, 3, quiet_s=1.6, timeout_s=12)
    assert len(calls) == 3
    times = [scheduled_ms(c) for c in calls]
    assert steps(times) == [1000, 1000]
    assert_on_time(calls)
    uids = set()
    for c in calls:
        headers = {k.lower(): v for k, v in c.headers.items()}
        assert headers["dapr-app-id"] == app.id
        assert headers["dapr-namespace"] == "default"
        assert headers["tock-attempt"] == "1"
        assert headers["content-type"] == "application/json"
        assert RFC3339_MS.match(headers["tock-scheduled-time"]), headers
        trigger = TRIGGER_ID.match(headers["tock-trigger-id"])
        assert trigger is not None, headers
        assert int(trigger[1]) == scheduled_ms(c)
        uids.add(trigger[2])
        assert c.body == b'{"n":1}'
    assert len(uids) == 1, "one job, one uid on every occurrence"
    assert_gone_everywhere(app, name)


@pytest.mark.parametrize("form", ["go", "iso8601", "rfc3339"])
def test_a_due_time_fires_once_at_that_time_then_the_job_is_gone(
    rig: Rig, app: App, form: str
) -> None:
    name = app.name("once")
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    due_time = {"go": "2s", "iso8601": "PT2S", "rfc3339": at.isoformat()}[form]
    before = now_ms()
    app.create(name, {"dueTime": due_time}, node=3)
    after = now_ms()
    calls = settle(rig.sink, name, 1, quiet_s=1.5, timeout_s=10)
    assert len(calls) == 1
    if form == "rfc3339":
        assert scheduled_ms(calls[0]) == round(at.timestamp() * 1000)
    else:
        assert before + 2000 <= scheduled_ms(calls[0]) <= after + 2000
    assert_on_time(calls)
    assert_gone_everywhere(app, name)


def test_a_due_time_then_a_schedule_fires_first_at_the_due_time(rig: Rig, app: App) -> None:
    name = app.name("due-then-every")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    body = {"dueTime": due.isoformat(), "schedule": "@every 1s", "repeats": 3}
    app.create(name, body)
    calls = settle(rig.sink, name, 3, quiet_s=1.6, timeout_s=12)
    due_ms = round(due.timestamp() * 1000)
    assert [scheduled_ms(c) for c in calls] == [due_ms, due_ms + 1000, due_ms + 2000]
    assert_on_time(calls)


def test_cron_every_two_seconds_stops_exactly_at_its_ttl(rig: Rig, app: App) -> None:
    name = app.name("cron-ttl")
    before = now_ms()
    app.create(name, {"schedule": "*/2 * * * * *", "ttl": "7s"}, node=2)
    after = now_ms()
    calls = settle(rig.sink, name, 3, quiet_s=2.6, timeout_s=14)
    times = [scheduled_ms(c) for c in calls]
    assert times, "a 7 s ttl covers at least three even seconds"
    assert all(t % 2000 == 0 for t in times), times
    assert steps(times) == [2000] * (len(times) - 1)
    # None skipped at the start, none invented past the ttl, none missing before it.
    assert before < times[0] <= after + 2000
    assert times[-1] <= after + 7000
    assert times[-1] + 2000 > before + 7000
    assert_on_time(calls)
    assert_gone_everywhere(app, name)


def test_repeats_and_ttl_together_stop_at_whichever_comes_first(rig: Rig, app: App) -> None:
    name = app.name("repeats-ttl")
    app.create(name, {"schedule": "@every 1s", "repeats": 2, "ttl": "10s"})
    assert len(settle(rig.sink, name, 2, quiet_s=1.6, timeout_s=10)) == 2
    assert_gone_everywhere(app, name)


# -- the docs' long schedules: their first trigger, computed by hand ------------------------


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _next_matching(after_ms: int, step: timedelta, matches: Callable[[datetime], bool]) -> int:
    """The first instant strictly after `after_ms`, on a whole `step`, that `matches`."""
    at = _utc(after_ms).replace(microsecond=0)
    at = at.replace(second=0) if step >= timedelta(minutes=1) else at
    at = at.replace(minute=0) if step >= timedelta(hours=1) else at
    at = at.replace(hour=0) if step >= timedelta(days=1) else at
    for _ in range(400 * 24 * 60):
        at += step
        if matches(at):
            return round(at.timestamp() * 1000)
    raise AssertionError("no match within a year")


def _every(ms: int) -> Callable[[int], int]:
    return lambda created_ms: created_ms + ms


def _cron(step: timedelta, matches: Callable[[datetime], bool]) -> Callable[[int], int]:
    return lambda created_ms: _next_matching(created_ms, step, matches)


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
LONG_SCHEDULES: dict[str, Callable[[int], int]] = {
    "0 30 * * * *": _cron(MINUTE, lambda t: t.minute == 30),
    "0 15 3 * * *": _cron(MINUTE, lambda t: (t.hour, t.minute) == (3, 15)),
    "2h45m": _every((2 * 60 + 45) * 60_000),
    "37m25s": _every((37 * 60 + 25) * 1000),
    "@every 1h30m": _every(90 * 60_000),
    "@hourly": _cron(HOUR, lambda t: True),
    "@daily": _cron(DAY, lambda t: True),
    "@midnight": _cron(DAY, lambda t: True),
    # Cron's day-of-week 0 is Sunday; Python's weekday() 6 is.
    "@weekly": _cron(DAY, lambda t: t.weekday() == 6),
    "@monthly": _cron(DAY, lambda t: t.day == 1),
    "@yearly": _cron(DAY, lambda t: (t.month, t.day) == (1, 1)),
    "@annually": _cron(DAY, lambda t: (t.month, t.day) == (1, 1)),
    "CRON_TZ=Asia/Kolkata 0 0 9 * * *": _cron(
        MINUTE, lambda t: (t.hour, t.minute) == (3, 30)
    ),  # 09:00 in India (UTC+05:30, no daylight saving) is 03:30 UTC.
}


@pytest.mark.parametrize("schedule", LONG_SCHEDULES)
def test_a_long_schedule_first_triggers_at_the_time_computed_by_hand(
    app: App, schedule: str
) -> None:
    name = app.name("long")
    before = now_ms()
    app.create(name, {"schedule": schedule}, node=1)
    after = now_ms()
    # Read on another node: every node computes the same times for the job.
    answer = app.get(name, node=3)
    assert answer.status == 200, answer
    next_ms = rfc3339_ms(answer.json["status"]["nextTrigger"])
    expected = LONG_SCHEDULES[schedule]
    assert expected(before) <= next_ms <= expected(after), answer.json
    assert answer.json["status"]["count"] == 0
    assert answer.json["schedule"] == schedule
