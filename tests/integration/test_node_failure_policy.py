"""Failure policies against a real 3-process cluster and a real HTTP app that fails on cue.

Method: the sink answers each job's first calls with a scripted status; the calls it records
are counted once no more come, and their `tock-attempt`, `tock-trigger-id` and arrival times
checked: one occurrence, retried at the policy's interval until it succeeds or runs out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.node_helpers import App, Rig, running_rig, settle, steps
from tests.support.sink import Call

ALWAYS = 1_000_000
# A retry comes at its interval after the failed attempt's ack commits: allow this much more.
RETRY_LATE_MS_MAX = 1200


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("failure-policy")) as rig:
        yield rig


@pytest.fixture
def app(rig: Rig) -> App:
    return rig.app()


def run_once(
    rig: Rig, app: App, answers: tuple[int, int], body: dict[str, object], expected: int
) -> list[Call]:
    """Create a one-shot job due in 1 s whose first `answers[0]` calls get status `answers[1]`;
    return its calls once `expected` came and then no more (the quiet wait outlasts the
    longest retry interval used here)."""
    name = app.name("job")
    times, status = answers
    rig.script.fail(name, times, status)
    app.create(name, {"dueTime": "1s", **body}, node=2)
    return settle(rig.sink, name, expected, quiet_s=3.0, timeout_s=6 + 1.5 * expected)


def assert_one_occurrence_retried(calls: list[Call]) -> None:
    """Every call is an attempt at the same occurrence, numbered 1, 2, ..."""
    assert [c.headers["tock-attempt"] for c in calls] == [str(i + 1) for i in range(len(calls))]
    assert len({c.headers["tock-trigger-id"] for c in calls}) == 1


def gaps_ms(calls: list[Call]) -> list[int]:
    return steps([c.received_ms for c in calls])


def test_an_app_failing_twice_then_succeeding_gets_three_calls_a_second_apart(
    rig: Rig, app: App
) -> None:
    calls = run_once(rig, app, (2, 500), {}, expected=3)
    assert len(calls) == 3
    assert_one_occurrence_retried(calls)
    assert all(1000 <= gap <= 1000 + RETRY_LATE_MS_MAX for gap in gaps_ms(calls)), gaps_ms(calls)


def test_the_default_policy_tries_an_always_failing_app_exactly_four_times(
    rig: Rig, app: App
) -> None:
    calls = run_once(rig, app, (ALWAYS, 503), {}, expected=4)
    assert len(calls) == 4
    assert_one_occurrence_retried(calls)
    # The exhausted one-shot job is over, like a delivered one.
    assert app.get(calls[0].name, node=3).status == 404


def test_drop_tries_once(rig: Rig, app: App) -> None:
    calls = run_once(rig, app, (ALWAYS, 500), {"failurePolicy": {"drop": {}}}, expected=1)
    assert len(calls) == 1


def test_a_404_answer_counts_as_success(rig: Rig, app: App) -> None:
    assert len(run_once(rig, app, (ALWAYS, 404), {}, expected=1)) == 1


def test_constant_with_four_retries_makes_five_attempts_at_its_interval(rig: Rig, app: App) -> None:
    policy = {"constant": {"interval": "500ms", "maxRetries": 4}}
    calls = run_once(rig, app, (ALWAYS, 500), {"failurePolicy": policy}, expected=5)
    assert len(calls) == 5
    assert_one_occurrence_retried(calls)
    assert all(500 <= gap <= 500 + RETRY_LATE_MS_MAX for gap in gaps_ms(calls)), gaps_ms(calls)


def test_a_long_interval_is_honoured(rig: Rig, app: App) -> None:
    policy = {"constant": {"interval": "2500ms", "maxRetries": 1}}
    calls = run_once(rig, app, (ALWAYS, 500), {"failurePolicy": policy}, expected=2)
    assert len(calls) == 2
    assert 2500 <= gaps_ms(calls)[0] <= 2500 + RETRY_LATE_MS_MAX, gaps_ms(calls)


def test_an_exhausted_trigger_is_skipped_and_the_schedule_goes_on(rig: Rig, app: App) -> None:
    name = app.name("recurring")
    rig.script.fail(name, ALWAYS)
    body = {"schedule": "@every 1s", "repeats": 3, "failurePolicy": {"drop": {}}}
    app.create(name, body)
    calls = settle(rig.sink, name, 3, quiet_s=1.6, timeout_s=12)
    assert [c.headers["tock-attempt"] for c in calls] == ["1", "1", "1"]
    assert len({c.headers["tock-trigger-id"] for c in calls}) == 3
    assert app.get(name).status == 404
