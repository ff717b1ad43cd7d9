"""What became of each attempt at a job's occurrences: the job's run history, newest last.

Kept in the replicated job itself, bounded per job (the bound travels in the Ack command that
records the attempt, so every replica keeps the same entries), and so it survives restarts and
failover and travels with an export.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class AttemptOutcome(StrEnum):
    # The app answered 2xx or 404.
    SUCCESS = "success"
    # It answered otherwise, or could not be reached; the occurrence is retried.
    FAILED = "failed"
    # No answer within the delivery timeout; the occurrence is retried.
    TIMEOUT = "timeout"
    # The attempt failed and the failure policy allows no other: the occurrence is given up (and
    # kept as a dead letter).
    DROPPED = "dropped"
    # A misfire policy passed the occurrence over; nothing was sent.
    SKIPPED = "skipped"


class Attempt(NamedTuple):
    """One attempt at one occurrence, as the delivering node reported it."""

    scheduled_ms: int
    # 1, 2, ... for the attempts at one occurrence (0 for a skipped one).
    attempt: int
    outcome: AttemptOutcome
    node: str
    started_ms: int
    duration_ms: int
    # The app's HTTP status (or gRPC code), 0 when there was no answer.
    status: int
    # True for a run asked for by `POST /jobs/{name}/run` rather than by the schedule.
    manual: bool


def recorded(history: tuple[Attempt, ...], attempt: Attempt, kept_max: int) -> tuple[Attempt, ...]:
    """The history with `attempt` added, keeping the newest `kept_max` (none when it is 0)."""
    if kept_max <= 0:
        return ()
    return (*history[-(kept_max - 1) :], attempt) if kept_max > 1 else (attempt,)
