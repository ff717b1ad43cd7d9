"""node/engine/verdicts.py: the fate of each ack once its batch has a verdict.

Method: one test per rule, on acks of jobs fired in the engine's epoch (20), in the ones kept
before it (12-19, still counted) and earlier (11, refused by the machine); then hypothesis
checks over random batches and verdicts that every ack gets exactly one fate and the metrics
count its entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.engine.acks import AckVerdict, PendingAck
from node.engine.verdicts import Settlement, send_again, settle, still_counted
from store.codec import AckEntry, Outcome
from store.machine import PAST_EPOCHS_KEPT

EPOCH = 20
NEW_EPOCH = 21
# Fired in an epoch the machine no longer keeps: its ack is refused.
GONE = EPOCH - PAST_EPOCHS_KEPT - 1


def ack(name: str, epoch: int = EPOCH, *outcomes: Outcome) -> PendingAck:
    entries = tuple(
        AckEntry(f"uid-{name}", 1000 + k, outcome)
        for k, outcome in enumerate(outcomes or (Outcome.SUCCESS,))
    )
    return PendingAck(("default", "app", name), epoch, entries)


class Owners:
    """An OwnersNow that owns the named jobs in NEW_EPOCH, and records its calls."""

    def __init__(self, *owned: str) -> None:
        self.owned = set(owned)
        self.calls = 0

    def __call__(self, pendings: Sequence[PendingAck]) -> tuple[int, list[bool]]:
        self.calls += 1
        return NEW_EPOCH, [pending.key[2] in self.owned for pending in pendings]


def decide(
    pendings: list[PendingAck], verdict: AckVerdict, owners: Owners, stopped: bool = False
) -> Settlement:
    return settle(pendings, verdict, epoch=EPOCH, stopped=stopped, owners_now=owners)


def test_committed_ends_every_hold_and_counts_nothing() -> None:
    owners = Owners("a")
    pendings = [ack("a"), ack("b", GONE, Outcome.FAILED)]
    assert decide(pendings, AckVerdict.COMMITTED, owners) == Settlement(end=tuple(pendings))
    assert owners.calls == 0


def test_stale_resends_owned_acks_at_once_in_the_new_epoch_and_drops_the_others() -> None:
    owners = Owners("a", "c")
    a, b, c = ack("a"), ack("b", EPOCH, Outcome.SKIPPED, Outcome.SKIPPED), ack("c")
    settlement = decide([a, b, c], AckVerdict.STALE, owners)
    assert settlement == Settlement(
        now=(a._replace(epoch=NEW_EPOCH), c._replace(epoch=NEW_EPOCH)),
        end=(b,),
        resent=2,
        dropped=2,
    )
    assert owners.calls == 1


def test_stale_resends_failed_entries_too_the_ack_did_not_apply() -> None:
    failed = ack("a", EPOCH, Outcome.FAILED)
    settlement = decide([failed], AckVerdict.STALE, Owners("a"))
    assert settlement.now == (failed._replace(epoch=NEW_EPOCH),)


def test_stale_after_stop_gave_up_ends_the_hold_even_of_an_owned_job() -> None:
    a = ack("a")
    settlement = decide([a], AckVerdict.STALE, Owners("a"), stopped=True)
    assert settlement == Settlement(end=(a,), dropped=1)


def test_unavailable_resends_later_what_the_machine_still_counts() -> None:
    owners = Owners()
    current, previous, older = ack("a"), ack("b", EPOCH - 1), ack("c", GONE)
    settlement = decide([current, previous, older], AckVerdict.UNAVAILABLE, owners)
    # Not applied for certain: nothing is counted as re-sent or dropped.
    assert settlement == Settlement(later=(current, previous), end=(older,))
    assert owners.calls == 0


def test_unavailable_resends_failed_entries_later_they_certainly_did_not_apply() -> None:
    failed = ack("a", EPOCH, Outcome.FAILED)
    assert decide([failed], AckVerdict.UNAVAILABLE, Owners()).later == (failed,)


@pytest.mark.parametrize("verdict", [AckVerdict.UNAVAILABLE, AckVerdict.UNKNOWN])
def test_a_stop_under_way_still_resends_later(verdict: AckVerdict) -> None:
    # stop() has not given up yet: the later re-send decides again (send_again).
    a = ack("a")
    assert decide([a], verdict, Owners(), stopped=True).later == (a,)


def test_unknown_resends_later_the_idempotent_acks_the_machine_still_counts() -> None:
    success, skipped = ack("a"), ack("b", EPOCH - 1, Outcome.SKIPPED, Outcome.SUCCESS)
    settlement = decide([success, skipped], AckVerdict.UNKNOWN, Owners())
    assert settlement == Settlement(later=(success, skipped), resent=3)


def test_unknown_ends_the_hold_of_an_ack_with_a_failed_entry() -> None:
    # Applying a FAILED entry twice would count the attempt twice.
    failed = ack("a", EPOCH, Outcome.SKIPPED, Outcome.FAILED)
    success = ack("b")
    settlement = decide([failed, success], AckVerdict.UNKNOWN, Owners("a", "b"))
    assert settlement == Settlement(later=(success,), end=(failed,), resent=1, dropped=2)


def test_unknown_ends_the_hold_of_an_ack_the_machine_refuses_now() -> None:
    older = ack("a", GONE)
    assert decide([older], AckVerdict.UNKNOWN, Owners("a")) == Settlement(end=(older,), dropped=1)


def test_a_later_resend_goes_out_now_unless_stop_gave_up_meanwhile() -> None:
    a, b = ack("a"), ack("b", EPOCH, Outcome.SKIPPED, Outcome.SKIPPED)
    assert send_again((a, b), stopped=False) == Settlement(now=(a, b))
    assert send_again((a, b), stopped=True) == Settlement(end=(a, b), dropped=3)


@pytest.mark.parametrize(
    ("fired_in", "counted"),
    [
        (EPOCH + 1, True),
        (EPOCH, True),
        (EPOCH - 1, True),
        (EPOCH - PAST_EPOCHS_KEPT, True),
        (GONE, False),
    ],
)
def test_an_ack_counts_in_its_epoch_and_the_kept_epochs_after(fired_in: int, counted: bool) -> None:
    assert still_counted(ack("a", fired_in), EPOCH) is counted


outcomes = st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=3)


@st.composite
def batches(draw: st.DrawFn) -> list[PendingAck]:
    names = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8))
    return [ack(name, draw(st.integers(GONE - 1, EPOCH)), *draw(outcomes)) for name in names]


@given(
    batches(),
    st.sampled_from(list(AckVerdict)),
    st.sets(st.sampled_from("abcdefgh")),
    st.booleans(),
)
def test_every_ack_gets_one_fate_and_the_metrics_count_its_entries(
    pendings: list[PendingAck], verdict: AckVerdict, owned: set[str], stopped: bool
) -> None:
    settlement = decide(pendings, verdict, Owners(*owned), stopped)
    fates = [*settlement.now, *settlement.later, *settlement.end]
    assert sorted(pending.key for pending in fates) == sorted(pending.key for pending in pendings)
    # Only a STALE ack changes epoch, and only to the machine's new one.
    assert all(pending.epoch == NEW_EPOCH for pending in settlement.now)
    assert not settlement.now or verdict is AckVerdict.STALE
    resent = sum(len(p.entries) for p in settlement.now + settlement.later)
    dropped = sum(len(p.entries) for p in settlement.end)
    if verdict in (AckVerdict.STALE, AckVerdict.UNKNOWN):
        assert (settlement.resent, settlement.dropped) == (resent, dropped)
    else:
        assert (settlement.resent, settlement.dropped) == (0, 0)
