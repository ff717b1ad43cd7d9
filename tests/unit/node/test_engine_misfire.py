"""Misfire policies and the lateness histogram: pure tables and properties, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.engine.misfire import skipped_occurrences
from store.jobs import Job, JobSpec, MisfirePolicy, derive_job

CREATED_MS = 1_700_000_000_000
GRACE_MS = 200


def every_second(policy: MisfirePolicy, repeats: int | None = None) -> Job:
    """`@every 1s` whose first occurrence is at CREATED_MS (dueTime), so the k-th is k s later."""
    spec = JobSpec(
        name="tick",
        schedule="@every 1s",
        due_time="2023-11-14T22:13:20Z",
        repeats=repeats,
        misfire_policy=policy,
    )
    job = derive_job(spec, "default", "app", "uid", CREATED_MS, "UTC", 16)
    assert job.next_ms == CREATED_MS
    return job


@pytest.mark.parametrize(
    ("policy", "late_ms", "expected_skips"),
    [
        # Dapr's rule: everything missed is replayed, so nothing is skipped.
        (MisfirePolicy.ALL, 10_500, 0),
        # latest: occurrences 0..9 are past; the most recent past one (9) goes out.
        (MisfirePolicy.LATEST, 10_500, 10),
        # skip: every missed occurrence (0..10) goes; 11 comes in 500 ms, on time.
        (MisfirePolicy.SKIP, 10_500, 11),
        # Late but within the grace: not missed, delivered by every policy.
        (MisfirePolicy.LATEST, GRACE_MS, 0),
        (MisfirePolicy.SKIP, GRACE_MS, 0),
        # Missed, but it is the only past occurrence: latest delivers it, skip does not.
        (MisfirePolicy.LATEST, 900, 0),
        (MisfirePolicy.SKIP, 900, 1),
    ],
)
def test_skipped_occurrences_by_policy(
    policy: MisfirePolicy, late_ms: int, expected_skips: int
) -> None:
    job = every_second(policy)
    skipped = skipped_occurrences(job, CREATED_MS + late_ms, GRACE_MS, skips_max=1000)
    assert skipped == [CREATED_MS + 1000 * k for k in range(expected_skips)]


def test_a_retry_is_never_skipped() -> None:
    job = every_second(MisfirePolicy.SKIP)._replace(attempts=1, retry_ms=CREATED_MS + 1000)
    assert skipped_occurrences(job, CREATED_MS + 60_000, GRACE_MS, skips_max=1000) == []


def test_skips_stop_at_the_bound_and_resume_from_the_advanced_job() -> None:
    job = every_second(MisfirePolicy.SKIP)
    now_ms = CREATED_MS + 10_500
    first = skipped_occurrences(job, now_ms, GRACE_MS, skips_max=4)
    assert first == [CREATED_MS + 1000 * k for k in range(4)]
    advanced = job._replace(next_ms=CREATED_MS + 4000)
    rest = skipped_occurrences(advanced, now_ms, GRACE_MS, skips_max=1000)
    assert rest == [CREATED_MS + 1000 * k for k in range(4, 11)]


def test_skipping_does_not_consume_repeats() -> None:
    """Skipped occurrences do not count, so a run of misses never ends a job early."""
    job = every_second(MisfirePolicy.SKIP, repeats=2)
    skipped = skipped_occurrences(job, CREATED_MS + 5500, GRACE_MS, skips_max=1000)
    assert len(skipped) == 6


@settings(deadline=None, max_examples=60)
@given(
    policy=st.sampled_from([MisfirePolicy.LATEST, MisfirePolicy.SKIP]),
    late_ms=st.integers(0, 30_000),
    grace_ms=st.integers(0, 3000),
)
def test_what_is_left_after_the_skips_is_what_the_policy_delivers(
    policy: MisfirePolicy, late_ms: int, grace_ms: int
) -> None:
    """After its skips, latest delivers an occurrence no later than now with none past it;
    skip delivers one that is not missed. Nothing skipped is within the grace."""
    job = every_second(policy)
    now_ms = CREATED_MS + late_ms
    skipped = skipped_occurrences(job, now_ms, grace_ms, skips_max=1000)
    assert all(now_ms - ms > grace_ms for ms in skipped)
    delivered_ms = CREATED_MS + 1000 * len(skipped)
    if policy is MisfirePolicy.LATEST:
        assert delivered_ms <= now_ms < delivered_ms + 1000 or now_ms - delivered_ms <= grace_ms
    else:
        assert now_ms - delivered_ms <= grace_ms
