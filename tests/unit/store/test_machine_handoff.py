"""Partition handoff between epochs: a former owner's acks count until it releases.

The scenario the rules exist for: the owner of a partition starts a delivery, then a new epoch
(or several) moves the partition to another node. The old owner's ack (stamped with the epoch it
fired in) must still advance the job, or the new owner would deliver the same occurrence again;
and the new owner must know whose acks may still come (`acking_former_owners`), to wait for
their Release before it fires.
"""

from __future__ import annotations

from cluster.ring import Ring
from store.codec import Ack, AckEntry, Member, Outcome, Release, SetMembers
from store.jobs import Job
from store.machine import PAST_EPOCHS_KEPT, ErrorKind, JobMachine, Result
from tests.unit.store.test_machine import NOW_MS, current, put

NODES = ("n1", "n2", "n3")
MEMBERS = tuple(
    Member(n, f"127.0.0.1:{7500 + i}", f"127.0.0.1:{3500 + i}") for i, n in enumerate(NODES)
)


def moved_job() -> tuple[JobMachine, Job, str, str]:
    """A machine in epoch 2 whose job `j` moved from `old` (epoch 1) to `new` (epoch 2)."""
    machine = JobMachine(64, Ring)
    assert machine.apply(SetMembers(1, MEMBERS, ("n1", "n2"))).ok
    assert put(machine, "j", "u1").ok
    job = current(machine)
    old = machine.owner(job.partition)
    assert old is not None
    # Drop the old owner from the live set: the job moves to the other live node.
    new_live = tuple(n for n in NODES if n != old)
    assert machine.apply(SetMembers(2, MEMBERS, new_live)).ok
    new = machine.owner(job.partition)
    assert new is not None and new != old
    return machine, job, old, new


def ack_from(machine: JobMachine, job: Job, node: str, epoch: int) -> Ack:
    return Ack(epoch, node, NOW_MS, (AckEntry(job.uid, job.next_ms, Outcome.SUCCESS),))


def moved_twice() -> tuple[JobMachine, Job, str]:
    """A machine in epoch 3, all nodes live, whose job moved away from `old` in epoch 2 (old
    not live) and stays with another node in epoch 3 (old live again)."""
    for app in (f"app{i}" for i in range(64)):
        machine = JobMachine(64, Ring)
        assert machine.apply(SetMembers(1, MEMBERS, ("n1", "n2"))).ok
        assert put(machine, "j", "u1", app=app).ok
        job = current(machine, app=app)
        old = machine.owner(job.partition)
        assert old is not None
        if Ring(NODES, 64).owner(job.partition) == old:
            continue
        assert machine.apply(SetMembers(2, MEMBERS, tuple(n for n in NODES if n != old))).ok
        assert machine.apply(SetMembers(3, MEMBERS, NODES)).ok
        return machine, job, old
    raise AssertionError("no job leaves its owner when a third node is live")


def stale(result: Result) -> bool:
    return (result.ok, result.error) == (False, ErrorKind.STALE)


def test_the_previous_owners_ack_from_the_previous_epoch_advances_the_job() -> None:
    machine, job, old, _new = moved_job()
    assert machine.acking_former_owners(job.partition) == {old}
    result = machine.apply(ack_from(machine, job, old, epoch=1))
    assert result.ok and result.value == (1, 0)
    assert current(machine).trigger_count == 1


def test_after_releasing_the_previous_owners_acks_are_stale() -> None:
    machine, job, old, _new = moved_job()
    released = machine.apply(Release(2, old))
    assert released.ok and released.released == old
    assert machine.acking_former_owners(job.partition) == frozenset()
    assert stale(machine.apply(ack_from(machine, job, old, epoch=1)))
    assert current(machine).trigger_count == 0


def test_an_ack_epochs_old_counts_until_its_node_releases_a_later_epoch() -> None:
    # Epochs can follow each other faster than a delivery ends: the old owner, live again in
    # epoch 3, may still be delivering what it fired in epoch 1.
    machine, job, old = moved_twice()
    assert old in machine.acking_former_owners(job.partition)
    result = machine.apply(ack_from(machine, job, old, epoch=1))
    assert result.ok and result.value == (1, 0)
    assert machine.apply(Release(3, old)).released == old
    assert old not in machine.acking_former_owners(job.partition)
    again = machine.apply(ack_from(machine, job, old, epoch=1))
    assert stale(again)


def test_an_ack_older_than_the_epochs_kept_is_stale() -> None:
    machine, job, old, _new = moved_job()
    for epoch in range(3, 3 + PAST_EPOCHS_KEPT):
        assert machine.apply(SetMembers(epoch, MEMBERS, tuple(n for n in NODES if n != old))).ok
    assert old not in machine.acking_former_owners(job.partition)
    assert stale(machine.apply(ack_from(machine, job, old, epoch=1)))


def test_an_ack_for_an_epoch_not_yet_begun_is_stale() -> None:
    machine, job, _old, new = moved_job()
    assert stale(machine.apply(ack_from(machine, job, new, epoch=3)))


def test_a_node_that_owned_the_partition_in_none_of_the_epochs_since_cannot_ack_it() -> None:
    machine, job, old, new = moved_job()
    [third] = [n for n in NODES if n not in (old, new)]
    result = machine.apply(ack_from(machine, job, third, epoch=1))
    assert result.ok and result.value == (0, 1)
    assert current(machine).trigger_count == 0


def test_the_current_owner_may_ack_with_an_older_epoch() -> None:
    # What its engine does with an ack refused as stale: the delivery happened, and the job is
    # its own now.
    machine, job, old, new = moved_job()
    assert machine.apply(Release(2, old)).ok
    assert machine.apply(SetMembers(3, MEMBERS, tuple(n for n in NODES if n != old))).ok
    result = machine.apply(ack_from(machine, job, new, epoch=2))
    assert result.ok and result.value == (1, 0)


def test_release_is_for_the_current_epoch_only_and_from_members_only() -> None:
    machine, _job, old, _new = moved_job()
    assert stale(machine.apply(Release(1, old)))
    stranger = machine.apply(Release(2, "n9"))
    assert (stranger.ok, stranger.error) == (False, ErrorKind.INVALID)
    assert machine.apply(Release(2, old)).released == old
    # A repeated release changes nothing and announces nothing.
    again = machine.apply(Release(2, old))
    assert again.ok and again.released is None


def test_the_handoff_state_survives_a_snapshot() -> None:
    machine, job, old = moved_twice()
    machine.apply(Release(3, "n3" if old != "n3" else "n1"))
    restored = JobMachine.from_bytes(machine.to_bytes(), Ring)
    assert restored.digest() == machine.digest()
    assert restored.acking_former_owners(job.partition) == {old}
    result = restored.apply(ack_from(restored, job, old, epoch=1))
    assert result.ok and result.value == (1, 0)
