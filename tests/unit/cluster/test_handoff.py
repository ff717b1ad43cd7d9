"""cluster/handoff.py: which partitions a node fires in an epoch, and when it may release.

Method: tables pin the planner's decisions in named situations (the first epoch, a join, a
leave, a death, a former owner not live, a release arriving, a node just started, a partition
still waiting when the next epoch begins). Then hypothesis runs random histories of a cluster of
up to four nodes over six partitions: epochs with any live set and any assignment, nodes that see
each command late (in log order, as the engine does), jobs fired and settled, Releases proposed
when the planner says so, restarts. It checks after every step that no partition is armed on two
live nodes at once, nor armed on one while another delivers one of its jobs whose ack may still
count (as store.machine counts acks, epochs back); that the planner's arm and lost decisions keep
a node's timers exactly on the partitions it may fire; and that a node that has caught up waits
only for live former owners whose acks may still count. A last property quiets a random history
(everything settles, is seen and released) and checks that every owned partition then fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.handoff import Handoff, Holdings, after_release, next_holdings, release_due
from store.machine import PAST_EPOCHS_KEPT

NODES = ("n1", "n2", "n3", "n4")
PARTITIONS = 6


@dataclass(frozen=True)
class View:
    """A committed state as cluster.handoff.OwnershipView reads it: owners by partition, and
    by partition the former owners whose acks may still count."""

    epoch: int
    live: tuple[str, ...]
    owners: tuple[str | None, ...]
    acking: tuple[frozenset[str], ...]

    def partitions_of(self, member: str) -> frozenset[int]:
        return frozenset(p for p, owner in enumerate(self.owners) if owner == member)

    def acking_former_owners(self, partition: int) -> frozenset[str]:
        return self.acking[partition]


def owners(text: str) -> tuple[str | None, ...]:
    """'1 2 - 3': partition 0 owned by n1, 1 by n2, 2 by nobody, 3 by n3."""
    return tuple(None if word == "-" else f"n{word}" for word in text.split())


def acking(text: str) -> tuple[frozenset[str], ...]:
    """'- 1 12 -': whose acks may still count: of partition 1 n1's, of 2 n1's and n2's."""
    return tuple(frozenset(f"n{c}" for c in word if c != "-") for word in text.split())


def held(
    epoch: int, owned: set[int], waits: dict[str, set[int]] | None = None, released_epoch: int = 0
) -> Holdings:
    waiting = {node: frozenset(parts) for node, parts in (waits or {}).items()}
    return Holdings(epoch, frozenset(owned), waiting, released_epoch)


# n1 and n2 in epoch 1; n3 joins in epoch 2 and takes partition 2 from n1.
EPOCH_1 = View(1, ("n1", "n2"), owners("1 2 1 2"), acking("- - - -"))
JOIN = View(2, ("n1", "n2", "n3"), owners("1 2 3 2"), acking("- - 1 -"))
# n2 leaves (or dies) in epoch 2: n1 takes everything.
LEAVE = View(2, ("n1",), owners("1 1 1 1"), acking("- 2 - 2"))
ALL = ("n1", "n2", "n3")

SYNC_TABLE = [
    (
        "the first epoch arms everything owned",
        EPOCH_1,
        "n1",
        Holdings(),
        Handoff(held(1, {0, 2}), arm=(0, 2)),
    ),
    (
        "a joining node waits for the live previous owner's release",
        JOIN,
        "n3",
        held(1, set()),
        Handoff(held(2, {2}, {"n1": {2}})),
    ),
    (
        "the node that lost a partition to a joiner stops firing it",
        JOIN,
        "n1",
        held(1, {0, 2}),
        Handoff(held(2, {0}), lost=(2,)),
    ),
    (
        "a node whose partitions stay goes on firing them without re-arming",
        JOIN,
        "n2",
        held(1, {1, 3}),
        Handoff(held(2, {1, 3})),
    ),
    (
        "after a leave or a death the partitions of a node not live are armed at once",
        LEAVE,
        "n1",
        held(1, {0, 2}),
        Handoff(held(2, {0, 1, 2, 3}), arm=(1, 3)),
    ),
    (
        "a node that learns it is not live any more owns nothing",
        LEAVE,
        "n2",
        held(1, {1, 3}),
        Handoff(held(2, set()), lost=(1, 3)),
    ),
    (
        "a previous owner that released before this node looked is not waited for",
        View(2, ALL, owners("1 2 3 2"), acking("- - - -")),
        "n3",
        held(1, set()),
        Handoff(held(2, {2}), arm=(2,)),
    ),
    (
        "a node just started waits for the live former owners that may still ack",
        View(3, ALL, owners("3 2 3 2"), acking("- - 1 -")),
        "n3",
        Holdings(),
        Handoff(held(3, {0, 2}, {"n1": {2}}), arm=(0,)),
    ),
    (
        # n1 may still deliver what it fired two epochs ago: its ack counts until it releases.
        "a partition still waiting goes on waiting for the same node when it stays owned here",
        View(3, ALL, owners("1 2 3 2"), acking("- - 1 -")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, {2}, {"n1": {2}})),
    ),
    (
        "a partition still waiting stops waiting for a node that released the new epoch",
        View(3, ALL, owners("1 2 3 2"), acking("- - - -")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, {2}), arm=(2,)),
    ),
    (
        "a partition still waiting two epochs on waits for each former owner that may ack",
        View(4, ALL, owners("1 2 3 2"), acking("- - 12 -")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(4, {2}, {"n1": {2}, "n2": {2}})),
    ),
    (
        "a partition still waiting whose former owner died is armed",
        View(3, ("n2", "n3"), owners("2 2 3 2"), acking("- - 1 -")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, {2}), arm=(2,)),
    ),
    (
        "a partition lost while waiting is dropped with its wait",
        View(3, ALL, owners("1 2 1 2"), acking("- - 3 -")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, set()), lost=(2,)),
    ),
    (
        "the epoch of the last proposed release is kept",
        JOIN,
        "n1",
        held(1, {0, 2}, released_epoch=1),
        Handoff(held(2, {0}, released_epoch=1), lost=(2,)),
    ),
]


@pytest.mark.parametrize(
    ("view", "node", "current", "expected"),
    [case[1:] for case in SYNC_TABLE],
    ids=[case[0] for case in SYNC_TABLE],
)
def test_next_holdings_table(view: View, node: str, current: Holdings, expected: Handoff) -> None:
    assert next_holdings(view, node, current) == expected


WAITING_FOR_TWO = held(2, {1, 2, 3}, {"n1": {2}, "n2": {3}})

RELEASE_TABLE = [
    (
        "the awaited owner's release arms what waited for it",
        "n1",
        Handoff(held(2, {1, 2, 3}, {"n2": {3}}), arm=(2,)),
    ),
    (
        "the other awaited owner's release arms its partitions only",
        "n2",
        Handoff(held(2, {1, 2, 3}, {"n1": {2}}), arm=(3,)),
    ),
    ("a release nobody waits for arms nothing", "n4", Handoff(WAITING_FOR_TWO)),
]


def test_a_partition_waiting_for_two_nodes_is_armed_after_both_released() -> None:
    both = held(3, {2}, {"n1": {2}, "n2": {2}})
    first = after_release(both, "n1")
    assert first == Handoff(held(3, {2}, {"n2": {2}}))
    assert after_release(first.holdings, "n2") == Handoff(held(3, {2}), arm=(2,))


@pytest.mark.parametrize(
    ("member", "expected"),
    [case[1:] for case in RELEASE_TABLE],
    ids=[case[0] for case in RELEASE_TABLE],
)
def test_after_release_table(member: str, expected: Handoff) -> None:
    assert after_release(WAITING_FOR_TWO, member) == expected


RELEASE_DUE_TABLE = [
    ("before the first epoch there is nothing to release", held(0, set()), [], None),
    ("with nothing in flight the current epoch is released", held(3, {1}), [], 3),
    ("a job in flight in an owned partition does not delay it", held(3, {1}), [1, 1], 3),
    ("a job in flight in a lost partition delays it", held(3, {1}), [1, 2], None),
    ("an epoch is released once", held(3, {1}, released_epoch=3), [], None),
    ("a release of an older epoch does not count", held(3, {1}, released_epoch=2), [], 3),
]


@pytest.mark.parametrize(
    ("current", "in_flight", "expected"),
    [case[1:] for case in RELEASE_DUE_TABLE],
    ids=[case[0] for case in RELEASE_DUE_TABLE],
)
def test_release_due_table(current: Holdings, in_flight: list[int], expected: int | None) -> None:
    assert release_due(current, in_flight) == expected


# ---- random histories ----


@dataclass
class Machine:
    """The committed state: the assignment of every epoch so far, and the last epoch each
    node released."""

    epoch: int = 0
    live: tuple[str, ...] = ()
    owners: tuple[str | None, ...] = (None,) * PARTITIONS
    past: dict[int, tuple[str | None, ...]] = field(default_factory=dict)
    released: dict[str, int] = field(default_factory=dict)

    def kept(self) -> range:
        """The past epochs store.machine keeps the assignment of."""
        return range(max(self.epoch - PAST_EPOCHS_KEPT, 1), self.epoch)

    def counts(self, name: str, partition: int, epoch: int) -> bool:
        """Whether `name`'s ack of a delivery of `partition` begun in `epoch` counts now, as
        store.machine counts acks: from the current owner (an ack refused as stale is sent
        again with the current epoch by a node that owns the job now), or from its owner in
        that epoch or a later kept one until it releases an epoch after that one."""
        if self.owners[partition] == name:
            return True
        if epoch not in self.kept():
            return False
        released = self.released.get(name, 0)
        return any(
            self.past[e][partition] == name and released <= e for e in self.kept() if e >= epoch
        )

    def view(self) -> View:
        former = tuple(
            frozenset(
                name
                for name in NODES
                if name != self.owners[partition]
                and any(self.counts(name, partition, e) for e in self.kept())
            )
            for partition in range(PARTITIONS)
        )
        return View(self.epoch, self.live, self.owners, former)


@dataclass
class Node:
    """One engine as far as hand-off goes: its holdings, the partitions it keeps timers for
    (changed only by the planner's decisions), its jobs in flight as (partition, the epoch it
    fired in), and the applied commands it has not seen yet: ("members", "") for an epoch,
    ("released", member) for a Release."""

    holdings: Holdings = field(default_factory=Holdings)
    armed: set[int] = field(default_factory=set)
    in_flight: list[tuple[int, int]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)

    def in_flight_partitions(self) -> list[int]:
        return [partition for partition, _epoch in self.in_flight]

    def apply(self, handoff: Handoff) -> None:
        self.holdings = handoff.holdings
        self.armed -= set(handoff.lost)
        self.armed |= set(handoff.arm)


def commit_epoch(data: st.DataObject, machine: Machine, nodes: dict[str, Node]) -> None:
    """A new epoch. Live nodes are at most one epoch behind the log: the nodes it takes live
    first see every command so far (the engine sees each within moments, long before the next
    heartbeat could make another epoch)."""
    live = tuple(sorted(data.draw(st.sets(st.sampled_from(NODES)))))
    for name in live:
        while nodes[name].events:
            see_next_event(name, machine, nodes)
    assignment = tuple(
        data.draw(st.sampled_from(live)) if live else None for _ in range(PARTITIONS)
    )
    machine.past[machine.epoch] = machine.owners
    machine.owners = assignment
    machine.epoch += 1
    machine.live = live
    # A node is dropped from the live set only after its lease lapsed, which abandons every
    # delivery it had in flight (the engine's fence).
    for name in set(NODES) - set(live):
        nodes[name].in_flight.clear()
    for node in nodes.values():
        node.events.append(("members", ""))


def see_next_event(name: str, machine: Machine, nodes: dict[str, Node]) -> None:
    """The node handles its oldest unseen command, reading the machine as it is now."""
    node = nodes[name]
    kind, member = node.events.pop(0)
    if kind == "members":
        node.apply(next_holdings(machine.view(), name, node.holdings))
    else:
        node.apply(after_release(node.holdings, member))


def propose_release(name: str, machine: Machine, nodes: dict[str, Node]) -> None:
    """What the engine does when the planner says to release, and what the machine does with
    it: a Release of an epoch other than the current one is refused."""
    node = nodes[name]
    epoch = release_due(node.holdings, node.in_flight_partitions())
    assert epoch is not None, "proposed only when due"
    node.holdings = Holdings(
        node.holdings.epoch, node.holdings.owned, node.holdings.waits, released_epoch=epoch
    )
    if epoch == machine.epoch and machine.released.get(name) != epoch:
        machine.released[name] = epoch
        for other in nodes.values():
            other.events.append(("released", name))


def restart(name: str, machine: Machine, nodes: dict[str, Node]) -> None:
    """A crash and a new engine: what was in flight is lost, and the new engine starts from the
    machine as it is now, without the commands the old one had not seen."""
    node = nodes[name] = Node()
    node.apply(next_holdings(machine.view(), name, node.holdings))


# The steps of a history, drawn with these weights: an epoch is rarer than the rest.
ACTIONS = ["see", "see", "release", "fire", "fire", "settle", "restart", "epoch"]


def able(action: str, node: Node) -> bool:
    """Whether `node` has something to do for `action`."""
    if action == "see":
        return bool(node.events)
    if action == "release":
        return release_due(node.holdings, node.in_flight_partitions()) is not None
    if action == "fire":
        return bool(node.armed)
    if action == "settle":
        return bool(node.in_flight)
    return True


def step(data: st.DataObject, machine: Machine, nodes: dict[str, Node]) -> None:
    action = data.draw(st.sampled_from(ACTIONS))
    if action == "epoch":
        commit_epoch(data, machine, nodes)
        return
    names = [name for name, node in nodes.items() if able(action, node)]
    if not names:
        return
    name = data.draw(st.sampled_from(names))
    node = nodes[name]
    if action == "see":
        see_next_event(name, machine, nodes)
    elif action == "release":
        propose_release(name, machine, nodes)
    elif action == "fire" and name in machine.live:
        # A node fires only under its lease, which it holds only while live.
        partition = data.draw(st.sampled_from(sorted(node.armed)))
        node.in_flight.append((partition, node.holdings.epoch))
    elif action == "settle":
        node.in_flight.pop(data.draw(st.integers(0, len(node.in_flight) - 1)))
    elif action == "restart":
        restart(name, machine, nodes)


def check(machine: Machine, nodes: dict[str, Node]) -> None:
    for name, node in nodes.items():
        # The decisions keep the timers exactly on what the holdings say this node fires.
        fires = {p for p in range(PARTITIONS) if node.holdings.fires(p)}
        assert node.armed == fires, name
        if node.events:
            continue
        # Caught up: it owns what the machine says, and waits only for live former owners
        # whose acks may still count.
        view = machine.view()
        owned = view.partitions_of(name) if name in machine.live else frozenset()
        assert node.holdings.owned == owned, name
        for partition in owned:
            waited = {m for m, parts in node.holdings.waits.items() if partition in parts}
            assert waited <= view.acking_former_owners(partition) & set(machine.live), name
    for partition in range(PARTITIONS):
        firing = {
            name
            for name, node in nodes.items()
            if name in machine.live and node.holdings.fires(partition)
        }
        assert len(firing) <= 1, (partition, firing)
        # A delivery whose ack still counts is not made again by another live node.
        delivering = {
            name
            for name, node in nodes.items()
            for p, epoch in node.in_flight
            if p == partition and name in machine.live and machine.counts(name, p, epoch)
        }
        assert len(firing | delivering) <= 1, (partition, firing, delivering)


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_random_histories_keep_a_partition_on_one_live_node(data: st.DataObject) -> None:
    machine = Machine()
    nodes = {name: Node() for name in NODES}
    for _ in range(data.draw(st.integers(1, 60))):
        step(data, machine, nodes)
        check(machine, nodes)


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_once_everyone_caught_up_and_released_every_owned_partition_fires(
    data: st.DataObject,
) -> None:
    machine = Machine()
    nodes = {name: Node() for name in NODES}
    for _ in range(data.draw(st.integers(1, 40))):
        step(data, machine, nodes)
    # Every delivery settles and every node sees every command and releases: a quiet cluster.
    for node in nodes.values():
        node.in_flight.clear()
    while any(node.events for node in nodes.values()) or any(
        release_due(node.holdings, []) is not None for node in nodes.values()
    ):
        for name, node in nodes.items():
            while node.events:
                see_next_event(name, machine, nodes)
            if release_due(node.holdings, []) is not None:
                propose_release(name, machine, nodes)
    for name, node in nodes.items():
        owned = machine.view().partitions_of(name) if name in machine.live else frozenset()
        assert node.armed == owned, name
