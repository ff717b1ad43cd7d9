"""A job's next occurrences, as the cluster will fire them: read-only, for people to look at.

The sequence is the one the state machine walks when it acknowledges each occurrence
(jobs.advance): it starts at the current occurrence and stops where the job's schedule, its
`repeats` or its ttl ends it. A quarantined job fires nothing, so it has no next occurrence.
"""

from __future__ import annotations

from store.jobs import Job, advance


def upcoming_ms(job: Job, count_max: int) -> list[int]:
    """The scheduled times (ms) of the job's next `count_max` occurrences at most, in order.
    Failed attempts and retries aside: each occurrence is listed once, at its scheduled time."""
    times: list[int] = []
    current: Job | None = None if job.error is not None else job
    while current is not None and len(times) < count_max:
        times.append(current.next_ms)
        current = advance(current, counted=True)
    return times
