"""cluster/handoff.py: which partitions a node fires in an epoch, and when it may release.

Method: tables pin the planner's decisions in named situations (the first epoch, a join, a
leave, a death, a previous owner not live, a release arriving, a partition regained while still
waiting). Then hypothesis runs random histories of a cluster of up to four nodes over six
partitions: epochs with any live set and any assignment, nodes that see each command late (in
log order, as the engine does), jobs fired and settled, Releases proposed when the planner says
so, restarts. It checks after every step that no partition is armed on two live nodes at once,
nor armed on one while another delivers one of its jobs whose ack may still apply; that the
planner's arm and lost decisions keep a node's timers exactly on the partitions it may fire; and
that a node that has caught up fires every partition it owns whose previous owner released, is
not live, or is itself. A last property quiets a random history (everything settles, is seen and
released) and checks that every owned partition then fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.handoff import Handoff, Holdings, after_release, next_holdings, release_due

NODES = ("n1", "n2", "n3", "n4")
PARTITIONS = 6


@dataclass(frozen=True)
class View:
    """A committed state as cluster.handoff.OwnershipView reads it: owners by partition."""

    epoch: int
    live: tuple[str, ...]
    owners: tuple[str | None, ...]
    previous: tuple[str | None, ...]
    released: frozenset[str] = frozenset()

    def partitions_of(self, member: str) -> frozenset[int]:
        return frozenset(p for p, owner in enumerate(self.owners) if owner == member)

    def previous_owner(self, partition: int) -> str | None:
        return self.previous[partition]

    def has_released(self, member: str) -> bool:
        return member in self.released


def owners(text: str) -> tuple[str | None, ...]:
    """'1 2 - 3': partition 0 owned by n1, 1 by n2, 2 by nobody, 3 by n3."""
    return tuple(None if word == "-" else f"n{word}" for word in text.split())


def held(
    epoch: int, owned: set[int], waits: dict[str, set[int]] | None = None, released_epoch: int = 0
) -> Holdings:
    waiting = {node: frozenset(parts) for node, parts in (waits or {}).items()}
    return Holdings(epoch, frozenset(owned), waiting, released_epoch)


# n1 and n2 in epoch 1; n3 joins in epoch 2 and takes partition 2 from n1.
EPOCH_1 = View(1, ("n1", "n2"), owners("1 2 1 2"), owners("- - - -"))
JOIN = View(2, ("n1", "n2", "n3"), owners("1 2 3 2"), owners("1 2 1 2"))
# n2 leaves (or dies) in epoch 2: n1 takes everything.
LEAVE = View(2, ("n1",), owners("1 1 1 1"), owners("1 2 1 2"))

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
        View(2, ("n1", "n2", "n3"), owners("1 2 3 2"), owners("1 2 1 2"), frozenset({"n1"})),
        "n3",
        held(1, set()),
        Handoff(held(2, {2}), arm=(2,)),
    ),
    (
        "a partition regained while still waiting is armed: this node owned it last epoch",
        View(3, ("n1", "n2", "n3"), owners("1 2 3 2"), owners("1 2 3 2")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, {2}), arm=(2,)),
    ),
    (
        "a partition still waiting two epochs on waits for its newest previous owner",
        View(4, ("n1", "n2", "n3"), owners("1 2 3 2"), owners("1 2 2 2")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(4, {2}, {"n2": {2}})),
    ),
    (
        "a partition still waiting whose previous owner died is armed",
        View(3, ("n2", "n3"), owners("2 2 3 2"), owners("1 2 1 2")),
        "n3",
        held(2, {2}, {"n1": {2}}),
        Handoff(held(3, {2}), arm=(2,)),
    ),
    (
        "a partition lost while waiting is dropped with its wait",
        View(3, ("n1", "n2", "n3"), owners("1 2 1 2"), owners("1 2 3 2")),
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
    """The committed state: the current and previous assignment, and who released."""

    epoch: int = 0
    live: tuple[str, ...] = ()
    owners: tuple[str | None, ...] = (None,) * PARTITIONS
    previous: tuple[str | None, ...] = (None,) * PARTITIONS
    released: set[str] = field(default_factory=set)

    def view(self) -> View:
        return View(self.epoch, self.live, self.owners, self.previous, frozenset(self.released))


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
    machine.previous, machine.owners = machine.owners, assignment
    machine.epoch += 1
    machine.live = live
    machine.released = set()
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
    if epoch == machine.epoch and name not in machine.released:
        machine.released.add(name)
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


def counted(machine: Machine, epoch: int) -> bool:
    """Whether the ack of a delivery started in `epoch` may still apply: in the current epoch,
    or in the one before while its node has not released (which it must not while delivering)."""
    return epoch >= machine.epoch - 1


def check(machine: Machine, nodes: dict[str, Node]) -> None:
    for name, node in nodes.items():
        # The decisions keep the timers exactly on what the holdings say this node fires.
        fires = {p for p in range(PARTITIONS) if node.holdings.fires(p)}
        assert node.armed == fires, name
        if node.events:
            continue
        # Caught up: it owns what the machine says, and fires whatever is not held back.
        view = machine.view()
        owned = view.partitions_of(name) if name in machine.live else frozenset()
        assert node.holdings.owned == owned, name
        for partition in owned:
            previous = machine.previous[partition]
            free = (
                previous in (None, name)
                or previous not in machine.live
                or previous in machine.released
            )
            assert node.holdings.fires(partition) == free, (name, partition)
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
            if p == partition and name in machine.live and counted(machine, epoch)
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
