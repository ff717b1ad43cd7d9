"""Partition handoff between epochs: the previous owner's acks count until it releases.

The scenario the rules exist for: the owner of a partition starts a delivery, then a new epoch
moves the partition to another node. The old owner's ack (stamped with the epoch it fired in)
must still advance the job, or the new owner would deliver the same occurrence again.
"""

from __future__ import annotations

from cluster.ring import Ring
from store.codec import Ack, AckEntry, Member, Outcome, Release, SetMembers
from store.jobs import Job
from store.machine import ErrorKind, JobMachine
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


def test_the_previous_owners_ack_from_the_previous_epoch_advances_the_job() -> None:
    machine, job, old, _new = moved_job()
    assert machine.previous_owner(job.partition) == old
    result = machine.apply(ack_from(machine, job, old, epoch=1))
    assert result.ok and result.value == (1, 0)
    assert current(machine).trigger_count == 1


def test_after_releasing_the_previous_owners_acks_are_stale() -> None:
    machine, job, old, _new = moved_job()
    released = machine.apply(Release(2, old))
    assert released.ok and released.released == old and machine.has_released(old)
    result = machine.apply(ack_from(machine, job, old, epoch=1))
    assert (result.ok, result.error) == (False, ErrorKind.STALE)
    assert current(machine).trigger_count == 0


def test_an_ack_two_epochs_old_is_stale() -> None:
    machine, job, old, _new = moved_job()
    assert machine.apply(SetMembers(3, MEMBERS, NODES)).ok
    result = machine.apply(ack_from(machine, job, old, epoch=1))
    assert (result.ok, result.error) == (False, ErrorKind.STALE)


def test_a_node_that_did_not_own_the_partition_before_cannot_ack_with_the_old_epoch() -> None:
    machine, job, _old, new = moved_job()
    result = machine.apply(ack_from(machine, job, new, epoch=1))
    assert result.ok and result.value == (0, 1)
    assert current(machine).trigger_count == 0


def test_release_is_for_the_current_epoch_only_and_from_members_only() -> None:
    machine, _job, old, _new = moved_job()
    stale = machine.apply(Release(1, old))
    assert (stale.ok, stale.error) == (False, ErrorKind.STALE)
    stranger = machine.apply(Release(2, "n9"))
    assert (stranger.ok, stranger.error) == (False, ErrorKind.INVALID)
    assert machine.apply(Release(2, old)).released == old
    # A repeated release changes nothing and announces nothing.
    again = machine.apply(Release(2, old))
    assert again.ok and again.released is None


def test_a_new_epoch_forgets_the_releases_of_the_last_one() -> None:
    machine, _job, old, _new = moved_job()
    machine.apply(Release(2, old))
    assert machine.apply(SetMembers(3, MEMBERS, NODES)).ok
    assert not machine.has_released(old)


def test_the_handoff_state_survives_a_snapshot() -> None:
    machine, job, old, _new = moved_job()
    machine.apply(Release(2, "n3" if old != "n3" else "n1"))
    restored = JobMachine.from_bytes(machine.to_bytes(), Ring)
    assert restored.digest() == machine.digest()
    assert restored.previous_owner(job.partition) == old
    result = restored.apply(ack_from(restored, job, old, epoch=1))
    assert result.ok and result.value == (1, 0)
