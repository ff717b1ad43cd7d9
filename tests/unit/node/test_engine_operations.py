"""Job operations through the engine, end to end on real parts (a single-node Raft store, HTTP
sinks, real time): pause and resume, run now, per-job delivery timeouts, attempt history, dead
letters and their redrive, exponential retries and jitter as the app sees them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise

import pytest

from node.engine.engine import EngineConfig
from store.codec import Pause, Redrive, Resume, RunNow
from store.failure_policy import FAILURE_POLICY_DROP, FailureKind, FailurePolicy
from store.history import AttemptOutcome
from store.jobs import Job
from store.machine import JobMachine
from tests.support.sink import Call, Sink
from tests.unit.node.engine_harness import NAMESPACE, SLOW_S, Harness

# Per job name: the HTTP status for its n-th call (1-based); 200 when absent (conftest.py).
SCRIPTS: dict[str, Callable[[int], int]] = {}
# How late a retry may reach the sink on a loaded machine, beyond its interval.
SLACK_MS = 400


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, sink: Sink, slow_sink: Sink
) -> Iterator[Harness]:
    node = Harness(tmp_path_factory.mktemp("operations"), EngineConfig()).start()
    node.register("app", sink.url)
    node.register("slow", slow_sink.url)
    yield node
    node.close()


def in_flight(harness: Harness, name: str) -> bool:
    return any(key[2] == name for key in list(harness.engine._held))


def poll(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.02)


def scheduled_ms(call: Call) -> int:
    return int(datetime.fromisoformat(call.headers["tock-scheduled-time"]).timestamp() * 1000)


def stored(machine: JobMachine, name: str, app: str = "app") -> Job:
    job = machine.get(NAMESPACE, app, name)
    assert job is not None, name
    return job


def current(harness: Harness, name: str, app: str = "app") -> Job:
    job = harness.job(name, app)
    assert job is not None
    return job


def test_a_paused_job_does_not_fire_and_resumes_after_now(harness: Harness, sink: Sink) -> None:
    harness.put("napping", schedule="@every 1s")
    sink.wait_for("napping", 1, timeout_s=5.0)
    harness.propose(Pause(NAMESPACE, "app", "napping"))
    # A call already in flight when the pause applied may still land: count from just after.
    poll(lambda: not in_flight(harness, "napping"))
    before = len(sink.calls_for("napping"))
    assert sink.wait_for("napping", before + 1, timeout_s=2.5)[before:] == []
    resumed_ms = harness.clock.wall_ms()
    harness.propose(Resume(NAMESPACE, "app", "napping", resumed_ms))
    calls = sink.wait_for("napping", before + 1, timeout_s=5.0)
    assert len(calls) == before + 1
    assert scheduled_ms(calls[before]) > resumed_ms
    assert calls[before].received_ms >= scheduled_ms(calls[before])
    harness.delete("napping")


def test_run_now_on_a_paused_job_delivers_once_marked_manual(harness: Harness, sink: Sink) -> None:
    job = harness.put("on-demand", schedule="@every 1h", repeats=5)
    harness.propose(Pause(NAMESPACE, "app", "on-demand"))
    harness.propose(RunNow(NAMESPACE, "app", "on-demand", harness.clock.wall_ms()))
    (call,) = sink.wait_for("on-demand", 1, timeout_s=5.0)
    assert call.headers["tock-manual"] == "true"
    assert call.headers["tock-attempt"] == "1"
    harness.wait_until(lambda m: stored(m, "on-demand").manual_ms is None)
    after = current(harness, "on-demand")
    assert (after.trigger_count, after.next_ms, after.paused) == (
        job.trigger_count,
        job.next_ms,
        True,
    )
    (attempt,) = after.history
    assert (attempt.manual, attempt.outcome, attempt.status) == (True, "success", 200)
    assert call.headers["tock-trigger-id"] == f"{attempt.scheduled_ms}:{job.uid}"
    # Paused again without a manual run: nothing more goes out.
    assert sink.wait_for("on-demand", 2, timeout_s=1.0) == [call]
    harness.delete("on-demand")


def test_a_per_job_timeout_shorter_than_the_nodes_times_the_attempt_out(
    harness: Harness, slow_sink: Sink
) -> None:
    harness.put("impatient", app="slow", due_time="100ms", delivery_timeout="300ms")
    harness.wait_until(lambda m: bool(stored(m, "impatient", "slow").history))
    (attempt,) = current(harness, "impatient", "slow").history
    assert attempt.outcome is AttemptOutcome.TIMEOUT
    assert attempt.status == 0
    assert 250 <= attempt.duration_ms < SLOW_S * 1000
    harness.delete("impatient", "slow")


def test_history_after_retries_shows_failures_then_the_success(
    harness: Harness, sink: Sink
) -> None:
    SCRIPTS["shaky"] = lambda n: 503 if n <= 2 else 200
    policy = FailurePolicy(FailureKind.CONSTANT, interval_ms=200, max_retries=5)
    job = harness.put("shaky", schedule="@every 1h", due_time="100ms", failure_policy=policy)
    harness.wait_until(lambda m: stored(m, "shaky").trigger_count == 1)
    history = current(harness, "shaky").history
    assert [(a.attempt, a.outcome, a.status) for a in history] == [
        (1, "failed", 503),
        (2, "failed", 503),
        (3, "success", 200),
    ]
    assert {a.scheduled_ms for a in history} == {job.next_ms}
    assert all(a.started_ms >= job.next_ms and a.duration_ms >= 0 for a in history)
    assert [a.started_ms for a in history] == sorted(a.started_ms for a in history)
    harness.delete("shaky")


def test_a_dropped_occurrence_becomes_a_dead_letter_and_its_redrive_delivers_it(
    harness: Harness, sink: Sink
) -> None:
    SCRIPTS["fragile"] = lambda n: 500 if n == 1 else 200
    job = harness.put("fragile", due_time="100ms", failure_policy=FAILURE_POLICY_DROP)
    harness.wait_gone("fragile")
    letter_id = f"{job.next_ms}:{job.uid}"
    letter = harness.machine.read(lambda m: m.dead_letter(NAMESPACE, "app", letter_id))
    assert letter is not None
    assert (letter.attempts, letter.last_outcome, letter.redrive_ms) == (1, "failed", None)
    harness.propose(Redrive(NAMESPACE, "app", letter_id, harness.clock.wall_ms()))
    first, again = sink.wait_for("fragile", 2, timeout_s=5.0)
    assert again.headers["tock-trigger-id"] == first.headers["tock-trigger-id"] == letter_id
    assert again.headers["tock-attempt"] == "2"
    assert again.body == first.body
    harness.wait_until(
        lambda m: m.dead_letter(NAMESPACE, "app", letter_id).redrive_ms is None  # type: ignore[union-attr]
    )
    redriven = harness.machine.read(lambda m: m.dead_letter(NAMESPACE, "app", letter_id))
    assert redriven is not None
    assert (redriven.attempts, redriven.last_outcome) == (2, "success")
    # Once: the redrive is disarmed after its ack.
    assert len(sink.wait_for("fragile", 3, timeout_s=1.0)) == 2


def test_exponential_retries_reach_the_app_at_growing_intervals(
    harness: Harness, sink: Sink
) -> None:
    SCRIPTS["backoff"] = lambda n: 500 if n <= 3 else 200
    policy = FailurePolicy(
        FailureKind.EXPONENTIAL,
        interval_ms=200,
        max_retries=5,
        max_interval_ms=5000,
        multiplier=2.0,
    )
    harness.put("backoff", due_time="100ms", failure_policy=policy)
    harness.wait_gone("backoff")
    calls = sink.calls_for("backoff")
    assert len(calls) == 4
    gaps = [later.received_ms - earlier.received_ms for earlier, later in pairwise(calls)]
    for gap, interval in zip(gaps, (200, 400, 800), strict=True):
        assert interval <= gap < interval + SLACK_MS, gaps


def test_jitter_is_never_early_and_spreads_the_occurrences(harness: Harness, sink: Sink) -> None:
    names = [f"jittered-{i}" for i in range(8)]
    jobs = [harness.put(name, due_time="300ms", jitter="1s") for name in names]
    for name in names:
        harness.wait_gone(name)
    offsets = []
    for job, name in zip(jobs, names, strict=True):
        (call,) = sink.calls_for(name)
        assert call.received_ms >= job.fire_ms >= job.next_ms
        offsets.append(job.fire_ms - job.next_ms)
    assert all(0 <= offset < 1000 for offset in offsets)
    assert len(set(offsets)) >= 4, offsets
    assert max(offsets) - min(offsets) >= 200, offsets
