"""Job operations in the machine: pause and resume, run now, history, exponential retries,
jitter, dead letters and their redrive, and import of exported jobs."""

from __future__ import annotations

import typing

import pytest

from cluster.ring import Ring
from store import job_row
from store.codec import (
    Ack,
    AckEntry,
    Barrier,
    Command,
    EntryKind,
    ForgetDeadLetter,
    ImportJobs,
    Member,
    Outcome,
    Pause,
    Put,
    Redrive,
    Resume,
    RunNow,
    SetMembers,
)
from store.failure_policy import FAILURE_POLICY_DROP, FailureKind, FailurePolicy
from store.history import AttemptOutcome
from store.jobs import Job, JobSpec, jitter_offset_ms
from store.machine import _HANDLERS, ErrorKind, JobMachine

NOW_MS = 1_700_000_000_000
MEMBERS = (Member("n1", "127.0.0.1:7500", "127.0.0.1:3500"),)


def machine() -> JobMachine:
    m = JobMachine(16, Ring)
    assert m.apply(SetMembers(1, MEMBERS, ("n1",))).ok
    return m


def put(m: JobMachine, spec: JobSpec, uid: str = "u1") -> Job:
    result = m.apply(Put("ns", "app", spec, False, NOW_MS, uid, "UTC"))
    assert result.ok, result
    assert isinstance(result.value, Job)
    return result.value


def ack(
    m: JobMachine,
    job: Job,
    outcome: Outcome,
    *,
    kind: EntryKind = EntryKind.OCCURRENCE,
    scheduled_ms: int | None = None,
    history_max: int = 20,
    dead_letters_max: int = 100,
) -> None:
    at = job.next_ms if scheduled_ms is None else scheduled_ms
    entry = AckEntry(job.uid, at, outcome, kind, at + 5, 3, 200, False)
    result = m.apply(Ack(1, "n1", at + 10, (entry,), history_max, dead_letters_max))
    assert result.ok, result


def current(m: JobMachine, name: str = "j") -> Job:
    job = m.get("ns", "app", name)
    assert job is not None
    return job


def test_every_command_but_the_barrier_has_a_handler() -> None:
    every = set(typing.get_args(Command))
    assert set(_HANDLERS) == every - {Barrier}


def test_a_paused_job_does_not_fire_and_resumes_after_now_uncounted() -> None:
    m = machine()
    job = put(m, JobSpec("j", schedule="@every 10s"))
    assert m.apply(Pause("ns", "app", "j")).ok
    paused = current(m)
    assert paused.paused and not paused.fires
    assert m.apply(Pause("ns", "app", "j")).changes == ()  # Idempotent.
    later_ms = job.next_ms + 35_000
    assert m.apply(Resume("ns", "app", "j", later_ms)).ok
    back = current(m)
    assert not back.paused and back.fires
    assert back.next_ms == job.next_ms + 40_000 and back.trigger_count == 0
    assert m.apply(Resume("ns", "app", "j", later_ms)).changes == ()


def test_a_one_shot_whose_time_passed_while_paused_ends_on_resume() -> None:
    m = machine()
    job = put(m, JobSpec("j", due_time="5s"))
    m.apply(Pause("ns", "app", "j"))
    m.apply(Resume("ns", "app", "j", job.next_ms + 1))
    assert m.get("ns", "app", "j") is None


def test_operations_on_a_missing_job_are_not_found() -> None:
    m = machine()
    for command in (Pause("ns", "app", "x"), Resume("ns", "app", "x", NOW_MS)):
        assert m.apply(command).error is ErrorKind.NOT_FOUND
    assert m.apply(RunNow("ns", "app", "x", NOW_MS)).error is ErrorKind.NOT_FOUND


def test_run_now_fires_once_outside_the_schedule_even_when_paused() -> None:
    m = machine()
    job = put(m, JobSpec("j", schedule="@every 10s", repeats=2))
    m.apply(Pause("ns", "app", "j"))
    asked_ms = NOW_MS + 1000
    m.apply(RunNow("ns", "app", "j", asked_ms))
    waiting = current(m)
    assert waiting.fires and waiting.fire_ms == asked_ms and waiting.manual_ms == asked_ms
    m.apply(RunNow("ns", "app", "j", asked_ms + 5))  # One pending run at a time.
    assert current(m).manual_ms == asked_ms
    ack(m, waiting, Outcome.SUCCESS, kind=EntryKind.MANUAL, scheduled_ms=asked_ms)
    after = current(m)
    assert after.manual_ms is None and not after.fires
    assert (after.next_ms, after.trigger_count) == (job.next_ms, 0)
    (attempt,) = after.history
    assert attempt.manual and attempt.outcome is AttemptOutcome.SUCCESS


def test_history_keeps_the_newest_attempts_within_its_bound() -> None:
    m = machine()
    put(m, JobSpec("j", schedule="@every 1s"))
    for _ in range(25):
        ack(m, current(m), Outcome.SUCCESS, history_max=20)
    job = current(m)
    assert len(job.history) == 20 and job.trigger_count == 25
    times = [attempt.scheduled_ms for attempt in job.history]
    assert times == sorted(times) and times[-1] == job.last_ms


def test_exponential_retries_grow_to_their_maximum() -> None:
    policy = FailurePolicy(FailureKind.EXPONENTIAL, 1000, 6, 5000, 2.0)
    assert [policy.retry_interval_ms(n) for n in range(1, 7)] == [1000, 2000, 4000, 5000] + [
        5000
    ] * 2
    huge = FailurePolicy(FailureKind.EXPONENTIAL, 100, None, 60_000, 100.0)
    assert huge.retry_interval_ms(10**6) == 60_000
    m = machine()
    put(m, JobSpec("j", due_time="1s", failure_policy=policy))
    gaps = []
    for _ in range(3):
        job = current(m)
        ack(m, job, Outcome.FAILED)
        retried = current(m)
        assert retried.retry_ms is not None
        # The ack helper acks at the scheduled time + 10 ms; the retry counts from then.
        gaps.append(retried.retry_ms - (job.next_ms + 10))
    assert gaps == [1000, 2000, 4000]
    assert [a.outcome for a in current(m).history] == [AttemptOutcome.FAILED] * 3


def test_jitter_delays_each_occurrence_alike_everywhere_and_never_early() -> None:
    m = machine()
    job = put(m, JobSpec("j", schedule="@every 1s", jitter="500ms"))
    offsets = set()
    for _ in range(20):
        job = current(m)
        assert job.next_ms <= job.fire_ms < job.next_ms + 500
        assert job.fire_ms - job.next_ms == jitter_offset_ms(job.uid, job.next_ms, 500)
        offsets.add(job.fire_ms - job.next_ms)
        ack(m, job, Outcome.SUCCESS)
    assert len(offsets) > 10, "the delays spread over the jitter"


def test_an_occurrence_given_up_becomes_a_dead_letter_that_can_be_redriven() -> None:
    m = machine()
    job = put(
        m, JobSpec("j", schedule="@every 1s", data=b'"x"', failure_policy=FAILURE_POLICY_DROP)
    )
    ack(m, job, Outcome.FAILED)
    (letter,), cursor = m.dead_letters("ns", "app", "", None, 10)
    assert cursor is None
    assert (letter.id, letter.name, letter.attempts, letter.data) == (
        job.trigger_id,
        "j",
        1,
        b'"x"',
    )
    assert current(m).history[-1].outcome is AttemptOutcome.DROPPED
    # The job ends; its dead letter stays and can be delivered again.
    m.apply(Pause("ns", "app", "j"))
    redrive = m.apply(Redrive("ns", "app", letter.id, NOW_MS + 5))
    assert redrive.ok and [r.id for r in redrive.redrives] == [letter.id]
    assert [r.id for r in m.redrives_in(frozenset(range(16)))] == [letter.id]
    ack(m, job, Outcome.SUCCESS, kind=EntryKind.REDRIVE, scheduled_ms=letter.scheduled_ms)
    again = m.dead_letter("ns", "app", letter.id)
    assert again is not None and again.redrive_ms is None and again.attempts == 2
    assert again.last_outcome == "success"
    assert m.apply(ForgetDeadLetter("ns", "app", letter.id)).value is True
    assert m.dead_letter("ns", "app", letter.id) is None
    assert m.apply(Redrive("ns", "app", letter.id, NOW_MS)).error is ErrorKind.NOT_FOUND


def test_dead_letters_are_bounded_per_app_oldest_dropped_first() -> None:
    m = machine()
    put(m, JobSpec("j", schedule="@every 1s", failure_policy=FAILURE_POLICY_DROP))
    dropped = 0
    for _ in range(5):
        job = current(m)
        entry = AckEntry(job.uid, job.next_ms, Outcome.FAILED, EntryKind.OCCURRENCE, 0, 0, 500)
        dropped += m.apply(Ack(1, "n1", job.next_ms, (entry,), 20, 3)).dead_letters_dropped
    letters, _ = m.dead_letters("ns", "app", "", None, 10)
    assert dropped == 2 and len(letters) == 3
    assert [letter.scheduled_ms for letter in letters] == sorted(
        letter.scheduled_ms for letter in letters
    )


def test_exported_jobs_import_into_another_cluster_with_their_state() -> None:
    source = machine()
    put(source, JobSpec("a", schedule="@every 1s"), "ua")
    put(source, JobSpec("b", schedule="@every 2s"), "ub")
    ack(source, current(source, "a"), Outcome.SUCCESS)
    source.apply(Pause("ns", "app", "b"))
    exported = tuple(map(job_row.unpack, source.export_state().jobs))
    target = JobMachine(64, Ring)
    result = target.apply(ImportJobs(exported, False))
    assert result.ok and result.value == (2, 0)
    for job in exported:
        imported = target.get(*job.key)
        assert imported is not None
        assert imported._replace(partition=job.partition) == job
    assert target.apply(ImportJobs(exported, False)).value == (0, 2)
    assert target.apply(ImportJobs(exported, True)).value == (2, 0)


def test_an_import_with_one_bad_job_imports_nothing() -> None:
    target = machine()
    good = put(machine(), JobSpec("a", due_time="1s"), "ua")
    bad = good._replace(name="", spec=good.spec._replace(name=""), uid="ub")
    before = target.digest()
    result = target.apply(ImportJobs((good, bad), False))
    assert (result.ok, result.error) == (False, ErrorKind.INVALID)
    assert target.digest() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jitter": "25h"}, "jitter"),
        ({"jitter": "-1s"}, "jitter"),
        ({"deliveryTimeout": "50ms"}, "deliveryTimeout"),
        ({"deliveryTimeout": "2h"}, "deliveryTimeout"),
        ({"failurePolicy": {"exponential": {"multiplier": 0.5}}}, "multiplier"),
        (
            {"failurePolicy": {"exponential": {"initialInterval": "10s", "maxInterval": "1s"}}},
            "maxInterval",
        ),
        ({"failurePolicy": {"exponential": {"initialInterval": "10ms"}}}, "initialInterval"),
    ],
)
def test_bad_operation_fields_are_refused_naming_the_field(
    body: dict[str, object], field: str
) -> None:
    from store.errors import ValidationError
    from store.jobs import JobLimits, spec_from_request

    with pytest.raises(ValidationError, match=field):
        spec_from_request("j", {"dueTime": "1s", **body}, JobLimits())


def test_data_of_another_type_shows_its_type_and_bytes() -> None:
    from store.jobs import spec_to_json

    spec = JobSpec("j", due_time="1s", data=b"\x00\x01", data_type="type.googleapis.com/x.Y")
    assert spec_to_json(spec)["data"] == {"@type": "type.googleapis.com/x.Y", "value": "AAE="}
