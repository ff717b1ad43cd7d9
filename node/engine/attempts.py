"""What the engine delivers for a fired timer and what its ack records: a job's occurrence, its
manual run, or a dead letter's redrive. Pure.

The holds and acks are keyed by a job's JobKey and a redrive's key of its own, so that a job and
a dead letter of the same name never displace each other. The wheel keys a job's timer by its
uid instead, the very string the machine holds (no key object per timer), and a redrive by its
key: a uid is a string, a redrive key a tuple, so the two never meet either.
"""

from __future__ import annotations

from node.delivery.trigger import DeliveryReport, Trigger
from store.codec import AckEntry, EntryKind, Outcome
from store.dead_letters import DeadLetter
from store.jobs import Job
from store.machine import AppRoute, JobKey

RedriveKey = tuple[str, str, str, str]
# What the holds and the acks are keyed by: a job, or a dead letter's redrive.
TimerKey = JobKey | RedriveKey
# What the wheel is keyed by: a job's uid, or a dead letter's redrive.
WheelKey = str | RedriveKey
Fireable = Job | DeadLetter

_REDRIVE = "redrive"


def redrive_key(letter: DeadLetter) -> RedriveKey:
    return (_REDRIVE, letter.namespace, letter.app, letter.id)


def is_redrive(key: TimerKey) -> bool:
    return len(key) == 4


def deadline_ms(target: Fireable) -> int | None:
    """When the target's attempt is due; None when it is not to fire at all."""
    if isinstance(target, DeadLetter):
        return target.redrive_ms
    return target.fire_ms if target.fires else None


def kind_of(target: Fireable) -> EntryKind:
    if isinstance(target, DeadLetter):
        return EntryKind.REDRIVE
    return EntryKind.OCCURRENCE if target.manual_ms is None else EntryKind.MANUAL


def trigger_of(target: Fireable, route: AppRoute | None) -> Trigger:
    """The trigger of the target's attempt: a redrive, the job's manual run, or its current
    occurrence (a retry included)."""
    token = route.token if route else ""
    if isinstance(target, DeadLetter):
        return Trigger(
            namespace=target.namespace,
            app=target.app,
            name=target.name,
            uid=target.uid,
            scheduled_ms=target.scheduled_ms,
            attempt=target.attempts + 1,
            data=target.data,
            content_type=target.data_type,
            app_token=token,
        )
    # 0: the job has no timeout of its own, and the node's applies.
    timeout_ms = target.delivery_timeout_ms
    manual = target.manual_ms is not None
    return Trigger(
        namespace=target.namespace,
        app=target.app,
        name=target.name,
        uid=target.uid,
        scheduled_ms=target.manual_ms if target.manual_ms is not None else target.next_ms,
        attempt=1 if manual else target.attempts + 1,
        data=target.spec.data,
        # The stored type ("" for none): each protocol renders the data its own way.
        content_type=target.spec.data_type,
        app_token=token,
        manual=manual,
        timeout_s=timeout_ms / 1000 if timeout_ms else None,
    )


def ack_entry(
    kind: EntryKind,
    trigger: Trigger,
    outcome: Outcome,
    report: DeliveryReport,
    started_ms: int,
    duration_ms: int,
) -> AckEntry:
    """The ack of the attempt `trigger` was, with what the job's history shows of it."""
    return AckEntry(
        trigger.uid,
        trigger.scheduled_ms,
        outcome,
        kind,
        started_ms=started_ms,
        duration_ms=duration_ms,
        status=report.status,
        timed_out=report.timed_out,
    )
