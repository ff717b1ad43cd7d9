"""Misfire policies: which missed occurrences of a job to skip instead of delivering.

An occurrence is missed when it comes due more than `grace_ms` late: the cluster was down, the
partition had no owner, or the owner had no lease. `all` (Dapr's rule) delivers every missed
occurrence, oldest first; the machine's sequence does that by itself, so nothing is skipped.
`latest` skips every missed occurrence but the most recent past one, which goes out late.
`skip` skips every missed occurrence; the first one not missed goes out on time.

Pure: the skipped occurrences are computed with `store.jobs.advance`, the same function the
machine applies to a SKIPPED ack, so the engine's view of the sequence and the machine's agree.
"""

from __future__ import annotations

from store.jobs import Job, MisfirePolicy, advance


def skipped_occurrences(job: Job, now_ms: int, grace_ms: int, skips_max: int) -> list[int]:
    """Scheduled ms of the occurrences to skip, oldest first, starting at the job's current one.

    Empty means: deliver the current occurrence now. At most `skips_max` are returned; the rest
    are found again when the job, advanced past these, comes due. Only a first attempt can be
    missed: a retry belongs to an occurrence that was already on its way.
    """
    assert grace_ms >= 0 and skips_max > 0
    policy = job.spec.misfire_policy
    if policy is MisfirePolicy.ALL or job.retry_ms is not None:
        return []
    skipped: list[int] = []
    current: Job | None = job
    while current is not None and len(skipped) < skips_max:
        if now_ms - current.next_ms <= grace_ms:
            # Not missed: this one goes out, and so does everything after it.
            break
        following = advance(current, counted=False)
        if policy is MisfirePolicy.LATEST and (following is None or following.next_ms > now_ms):
            # The most recent past occurrence: `latest` delivers it, late.
            break
        skipped.append(current.next_ms)
        current = following
    return skipped
