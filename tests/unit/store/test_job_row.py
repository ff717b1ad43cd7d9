"""store/job_row.py: a job packed as the one bytes object the machine keeps, and built again.

Method: round trips of real jobs (derived from hypothesis specs, and moved along their life by
the machine's own settlement rules), and the row against the snapshot columns it must match.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings

from store import job_row
from store.codec import AckEntry, Outcome
from store.errors import ValidationError
from store.failure_policy import FailureKind, FailurePolicy
from store.history import Attempt, AttemptOutcome
from store.jobs import Job, JobSpec, derive_job, quarantined
from store.settlement import settle
from tests.unit.store.test_bounds import specs

NOW_MS = 1_700_000_000_000


def derived(spec: JobSpec) -> Job:
    return derive_job(spec, "ns", "app", "Qx3-_uid0123456", NOW_MS, "Europe/Paris", 64)


@settings(deadline=None, max_examples=200)
@given(specs())
def test_every_derivable_job_round_trips(spec: JobSpec) -> None:
    try:
        job = derived(spec)
    except ValidationError:
        return  # the spec is refused: there is no job to keep
    assert job_row.unpack(job_row.pack(job)) == job


def test_a_job_with_every_field_set_round_trips_with_its_types() -> None:
    policy = FailurePolicy(FailureKind.EXPONENTIAL, 1000, 7, 60_000, 1.5)
    spec = JobSpec(
        name="every-field",
        schedule="@every 1s",
        repeats=5,
        ttl="1h",
        data=b'{"x":1}',
        data_type="application/json",
        failure_policy=policy,
        jitter="250ms",
        delivery_timeout="2s",
    )
    job = derived(spec)
    entry = AckEntry(job.uid, job.next_ms, Outcome.FAILED, started_ms=NOW_MS, status=503)
    job = settle(job, entry, "n1", NOW_MS + 5, 10).job or job
    job = quarantined(job._replace(paused=True, manual_ms=NOW_MS + 9), "why")
    assert job.history and job.retry_ms is not None and job.attempts == 1
    back = job_row.unpack(job_row.pack(job))
    assert back == job
    assert back.spec.failure_policy == policy
    assert type(back.spec.misfire_policy) is type(job.spec.misfire_policy)
    assert all(type(a.outcome) is AttemptOutcome for a in back.history)
    assert all(type(a) is Attempt for a in back.history)
    # The spec's name is the job's own string, not a second copy.
    assert back.spec.name is back.name


def test_a_row_is_a_fraction_of_the_job_it_holds() -> None:
    job = derived(JobSpec(name="scale-0000001", schedule="@every 24h", data=b'{"bench":1}'))
    assert sys.getsizeof(job_row.pack(job)) < 200


@pytest.mark.parametrize("partition", [0, 1, 127, 128, 255, 256, 1023, 65_535])
def test_the_partition_is_read_from_the_row_bytes_in_every_encoding(partition: int) -> None:
    job = derived(JobSpec(name="p", due_time="1s"))._replace(partition=partition)
    row = job_row.pack(job)
    assert job_row.partition(row) == partition == job_row.fields(row)[0]


def test_the_row_fields_follow_the_snapshot_columns() -> None:
    job = derived(JobSpec(name="cols", due_time="5s"))
    fields = job_row.fields(job_row.pack(job))
    assert len(fields) == len(job_row.ROW_FIELDS)
    named = dict(zip(job_row.ROW_FIELDS, fields, strict=True))
    assert named["uid"] == job.uid and named["next_ms"] == job.next_ms
    assert named["spec.due_time"] == "5s" and named["spec.misfire_policy"] == "all"
