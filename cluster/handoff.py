"""Partition hand-off: which partitions a node fires in the current epoch, and from when. Pure.

Partitions move only with an epoch, but a node that owned a partition in an earlier epoch may
still be delivering one of its occurrences when the epoch changes: its ack still counts until it
releases a later epoch (store/machine.py), and epochs can follow each other faster than a
delivery ends. So a node that owns a partition fires it only once every other live node whose
ack of it may still count has committed its Release for the current epoch; a node not live has
let its lease run out and abandoned its deliveries. A node proposes its own Release once nothing
it holds in flight belongs to a partition it lost.

The planner reads the committed state through `OwnershipView` (store.machine.JobMachine is one)
and the node's current `Holdings`, and returns the new holdings with what the node must do:
stop firing the partitions it lost, arm the ones it may fire now, and propose a Release.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class OwnershipView(Protocol):
    """What hand-off reads of the committed state of the current epoch."""

    @property
    def epoch(self) -> int: ...

    @property
    def live(self) -> Collection[str]: ...

    def partitions_of(self, member: str) -> frozenset[int]:
        """The partitions `member` owns in the current epoch."""
        ...

    def acking_former_owners(self, partition: int) -> frozenset[str]:
        """The members, other than its current owner, whose ack of the partition's jobs may
        still count: each owned it in an earlier epoch and has released no epoch since."""
        ...


@dataclass(frozen=True)
class Holdings:
    """One node's part of the ring: what it owns in `epoch`, and which of those partitions
    still wait for a former owner's Release, by that node. `released_epoch` is the epoch
    whose Release this node has proposed (0: none), so that it proposes one per epoch."""

    epoch: int = 0
    owned: frozenset[int] = frozenset()
    waits: Mapping[str, frozenset[int]] = field(default_factory=dict)
    released_epoch: int = 0
    # The partitions owned and not waiting: asked about for every job fired and armed.
    _firing: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_firing", self.owned - self.waiting())

    def waiting(self) -> frozenset[int]:
        return frozenset().union(*self.waits.values())

    def fires(self, partition: int) -> bool:
        """Whether this node may keep timers for the partition's jobs now."""
        return partition in self._firing


@dataclass(frozen=True)
class Handoff:
    """A planner's decision: the new holdings, the partitions to stop firing (drop their timers
    and parked triggers), and those whose jobs to arm now, in this order."""

    holdings: Holdings
    lost: tuple[int, ...] = ()
    arm: tuple[int, ...] = ()


def next_holdings(view: OwnershipView, node: str, current: Holdings) -> Handoff:
    """The holdings of `node` in the view's epoch, after `current`: on every new epoch.

    A node not live owns nothing. A partition new here (every one, for a node just started),
    or still waiting for a Release, waits (again) for the live former owners whose acks of it
    may still count; a partition that stays owned and was not waiting goes on firing as it was.
    """
    owned = view.partitions_of(node) if node in view.live else frozenset()
    candidates = (owned - current.owned) | (current.waiting() & owned)
    live = frozenset(view.live)
    waits: dict[str, set[int]] = {}
    for partition in candidates:
        for member in view.acking_former_owners(partition) & live:
            waits.setdefault(member, set()).add(partition)
    waiting = {partition for parts in waits.values() for partition in parts}
    holdings = Holdings(
        epoch=view.epoch,
        owned=owned,
        waits={member: frozenset(parts) for member, parts in waits.items()},
        released_epoch=current.released_epoch,
    )
    return Handoff(
        holdings,
        lost=tuple(sorted(current.owned - owned)),
        arm=tuple(sorted(candidates - waiting)),
    )


def after_release(current: Holdings, member: str) -> Handoff:
    """`member` released what it lost in the current epoch: arm what waited for it alone."""
    parts = current.waits.get(member, frozenset())
    waits = {other: p for other, p in current.waits.items() if other != member}
    still = frozenset().union(*waits.values())
    return Handoff(
        Holdings(current.epoch, current.owned, waits, current.released_epoch),
        arm=tuple(sorted((parts & current.owned) - still)),
    )


def release_due(current: Holdings, in_flight: Iterable[int]) -> int | None:
    """The epoch whose Release this node should propose now, or None.

    `in_flight` are the partitions of the jobs this node holds (fired, outcome not settled).
    A node releases once per epoch, and only once none of them is a partition it lost: the
    new owners wait for the Release, so it must come after every ack that still counts."""
    if current.epoch == 0 or current.released_epoch == current.epoch:
        return None
    if any(partition not in current.owned for partition in in_flight):
        return None
    return current.epoch
