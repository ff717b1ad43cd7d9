"""What the engine does with each ack once the batcher gives its batch a verdict. Pure.

Each pending ack is sent again now (in the machine's new epoch), sent again after a pause, or
its job's hold ends (the job is re-armed from the machine, which holds whatever the ack did).
Sending an ack again spares the app a duplicate whenever the machine would still apply it;
ending the hold instead fires the occurrence again, unless the ack had applied after all.

An ack is sent again while the machine still counts it (`still_counted`) and, on the engine's
side, until stop() has given up on what had not settled (`stopped`): a stop that is under way
goes on sending acks again until its deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.engine.acks import AckVerdict, PendingAck
from store.codec import Outcome
from store.machine import PAST_EPOCHS_KEPT

# For acks bounced as STALE: the machine's epoch now, and whether this node owns each ack's job
# there. Called only for that verdict (it reads the machine).
OwnersNow = Callable[[Sequence[PendingAck]], tuple[int, Sequence[bool]]]


@dataclass(frozen=True)
class Settlement:
    """What to do with the acks of one verdict: send some again now (already in their new
    epoch), some after a pause, and end the holds of the rest; and how many entries that sends
    again or drops, for the metrics."""

    now: tuple[PendingAck, ...] = ()
    later: tuple[PendingAck, ...] = ()
    end: tuple[PendingAck, ...] = ()
    resent: int = 0
    dropped: int = 0


def settle(
    pendings: Sequence[PendingAck],
    verdict: AckVerdict,
    *,
    epoch: int,
    stopped: bool,
    owners_now: OwnersNow,
) -> Settlement:
    """The fate of each ack of a batch. `epoch` is the epoch this engine is in; `stopped`
    whether stop() has given up on what had not settled."""
    if verdict is AckVerdict.STALE:
        return resend_owned(pendings, stopped, owners_now)
    if verdict is AckVerdict.UNAVAILABLE:
        return retry_later(pendings, epoch)
    if verdict is AckVerdict.UNKNOWN:
        return resend_idempotent(pendings, epoch)
    return Settlement(end=tuple(pendings))


def resend_owned(
    pendings: Sequence[PendingAck], stopped: bool, owners_now: OwnersNow
) -> Settlement:
    """STALE: send again at once, in the machine's new epoch, the acks of jobs this node still
    owns there (the delivery happened: recording it avoids a duplicate); end the others' holds
    (their new owner delivers again: at least once)."""
    epoch, owned = owners_now(pendings)
    now: list[PendingAck] = []
    end: list[PendingAck] = []
    for pending, mine in zip(pendings, owned, strict=True):
        if mine and not stopped:
            now.append(pending._replace(epoch=epoch))
        else:
            end.append(pending)
    return Settlement(now=tuple(now), end=tuple(end), resent=_entries(now), dropped=_entries(end))


def retry_later(pendings: Sequence[PendingAck], epoch: int) -> Settlement:
    """UNAVAILABLE (certainly not applied): send the acks the machine still counts again after
    a pause, since a new leader takes a moment; end the others' holds. Redelivering instead
    would flood the app while the store has no leader, until the lease runs out."""
    later = [pending for pending in pendings if still_counted(pending, epoch)]
    end = [pending for pending in pendings if not still_counted(pending, epoch)]
    return Settlement(later=tuple(later), end=tuple(end))


def resend_idempotent(pendings: Sequence[PendingAck], epoch: int) -> Settlement:
    """UNKNOWN (leadership changed under the ack): send again, after a pause, the acks the
    machine still counts and that are safe to apply twice; end the others' holds.

    A SUCCESS or SKIPPED entry is idempotent: if the first copy applied, the job has moved past
    that occurrence and the machine ignores the second. Sending it again spares the app a
    duplicate that ending the hold would cause (the job, re-read, would fire again). A FAILED
    entry would count an attempt twice, so its hold ends: at worst one extra attempt. The lease
    does not matter here: it may well lapse during the election that made the outcome unknown,
    but it guards firing, and this delivery has already happened; what matters is whether the
    machine still counts the ack."""
    later: list[PendingAck] = []
    end: list[PendingAck] = []
    for pending in pendings:
        safe = all(entry.outcome is not Outcome.FAILED for entry in pending.entries)
        (later if safe and still_counted(pending, epoch) else end).append(pending)
    return Settlement(
        later=tuple(later), end=tuple(end), resent=_entries(later), dropped=_entries(end)
    )


def send_again(pendings: Sequence[PendingAck], stopped: bool) -> Settlement:
    """The pause of a later re-send is over: send the acks now, unless stop() has given up
    meanwhile; then their holds end."""
    if stopped:
        return Settlement(end=tuple(pendings), dropped=_entries(pendings))
    return Settlement(now=tuple(pendings))


def still_counted(pending: PendingAck, epoch: int) -> bool:
    """Whether the machine may still apply this ack, `epoch` being the engine's: it was fired in
    the current epoch, or in one of the last PAST_EPOCHS_KEPT before, whose owners' acks count
    until they release a later epoch (and a node does not release the partitions it lost while
    it holds one of their jobs). Sending it again then spares the app a duplicate even when the
    partition has moved on meanwhile: its new owner waits for the release. An older ack is
    refused; its job is the new owner's to deliver again. (A release of a later epoch while the
    partition stayed here can still make the machine refuse it: that answer is STALE, and the
    ack goes again in the new epoch if the job is still this node's.)"""
    return pending.epoch >= epoch - PAST_EPOCHS_KEPT


def _entries(pendings: Sequence[PendingAck]) -> int:
    return sum(len(pending.entries) for pending in pendings)
