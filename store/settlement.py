"""What one acked attempt does to its job: the pure rules the machine applies for every ack entry
of a job's occurrence or manual run, history included (dead letters' redrives are the machine's).

An occurrence delivered, or given up after its last allowed attempt, is counted and the job
moves to its next occurrence; a failed attempt with retries left schedules the next attempt; a
skipped occurrence moves on uncounted. A manual run never moves the schedule. Every attempt is
recorded in the job's history, and an occurrence given up becomes a dead letter.
"""

from __future__ import annotations

from typing import NamedTuple

from store.codec import AckEntry, EntryKind, Outcome
from store.dead_letters import DeadLetter
from store.history import Attempt, AttemptOutcome, recorded
from store.jobs import Job, advance, record_failure, retries_left


class Settled(NamedTuple):
    # The job afterwards; None once its sequence ended (the machine deletes it).
    job: Job | None
    # The occurrence given up, when it was.
    dead_letter: DeadLetter | None


def settle(job: Job, entry: AckEntry, node: str, now_ms: int, history_max: int) -> Settled:
    """The job after the acked attempt `entry` (for its current occurrence or its manual run)."""
    manual = entry.kind is EntryKind.MANUAL
    # The job at its next occurrence, once this one is done (delivered or skipped).
    moved = None
    if not manual and entry.outcome is not Outcome.FAILED:
        moved = advance(job, counted=entry.outcome is Outcome.SUCCESS)
        if moved is None:
            # The sequence ended: the job goes, and its history with it. Most acks of a burst
            # of one-shot jobs end here, on every replica: nothing else to build.
            return Settled(None, None)
    outcome = _attempt_outcome(job, entry, manual)
    attempt = Attempt(
        scheduled_ms=entry.scheduled_ms,
        attempt=0 if entry.outcome is Outcome.SKIPPED else (1 if manual else job.attempts + 1),
        outcome=outcome,
        node=node,
        started_ms=entry.started_ms,
        duration_ms=entry.duration_ms,
        status=entry.status,
        manual=manual,
    )
    history = recorded(job.history, attempt, history_max)
    if manual:
        return Settled(job._replace(manual_ms=None, history=history), None)
    if moved is not None:
        return Settled(moved._replace(history=history), None)
    with_history = job._replace(history=history)
    letter = None
    if outcome is AttemptOutcome.DROPPED:
        letter = DeadLetter(
            id=job.trigger_id,
            namespace=job.namespace,
            app=job.app,
            name=job.name,
            uid=job.uid,
            scheduled_ms=job.next_ms,
            attempts=attempt.attempt,
            last_outcome=str(AttemptOutcome.TIMEOUT if entry.timed_out else AttemptOutcome.FAILED),
            failed_ms=now_ms,
            data=job.spec.data,
            data_type=job.spec.data_type,
        )
    return Settled(record_failure(with_history, now_ms), letter)


def _attempt_outcome(job: Job, entry: AckEntry, manual: bool) -> AttemptOutcome:
    if entry.outcome is Outcome.SUCCESS:
        return AttemptOutcome.SUCCESS
    if entry.outcome is Outcome.SKIPPED:
        return AttemptOutcome.SKIPPED
    if not manual and not retries_left(job):
        return AttemptOutcome.DROPPED
    return AttemptOutcome.TIMEOUT if entry.timed_out else AttemptOutcome.FAILED
