"""A job's next occurrences: the sequence the machine walks, cut by repeats, ttl and the end of
a schedule, and empty for a quarantined job."""

from __future__ import annotations

from datetime import UTC, datetime

from store.jobs import Job, JobSpec, advance, derive_job, quarantined
from store.upcoming import upcoming_ms

NOW_MS = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
SECOND_MS = 1000
DAY_MS = 86_400_000


def job(**spec: object) -> Job:
    return derive_job(JobSpec("j", **spec), "ns", "app", "uid", NOW_MS, "UTC", 16)  # type: ignore[arg-type]


def test_an_interval_lists_the_current_occurrence_then_one_every_period() -> None:
    assert upcoming_ms(job(schedule="@every 2s"), 4) == [
        NOW_MS + k * 2 * SECOND_MS for k in (1, 2, 3, 4)
    ]


def test_a_cron_schedule_lists_its_wall_clock_times() -> None:
    first = NOW_MS + (2 * 3600 + 30 * 60) * SECOND_MS
    assert upcoming_ms(job(schedule="0 30 2 * * *"), 3) == [first + k * DAY_MS for k in range(3)]


def test_repeats_end_the_list_counting_what_already_fired() -> None:
    fired_once = advance(job(schedule="@every 1s", repeats=3), counted=True)
    assert fired_once is not None
    assert upcoming_ms(fired_once, 10) == [NOW_MS + 2 * SECOND_MS, NOW_MS + 3 * SECOND_MS]


def test_a_ttl_ends_the_list() -> None:
    assert upcoming_ms(job(schedule="@every 1s", ttl="3s"), 10) == [
        NOW_MS + k * SECOND_MS for k in (1, 2, 3)
    ]


def test_a_due_time_alone_is_one_occurrence() -> None:
    assert upcoming_ms(job(due_time="10s"), 10) == [NOW_MS + 10 * SECOND_MS]


def test_a_quarantined_job_fires_nothing() -> None:
    assert upcoming_ms(quarantined(job(schedule="@every 1s"), "broken"), 10) == []
