"""The leadership transfer's steps, tick by tick, against a stand-in for the node's side of it
(the transfer on real processes: tests/integration/test_raft_transfer.py). What must hold: new
entries wait from the first tick after the ask until the node stops leading or an election
timeout has passed; a node with no follower connected holds nothing; TimeoutNow is asked for
again while pysyncobj refuses it (no follower caught up), and sent once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

from pysyncobj import FAIL_REASON

from store.raft.handover import Handover

ELECTION_TIMEOUT_MIN_S = 0.4


@dataclass
class StandIn:
    """What Handover reads of a SyncObj: leadership, connections, the transfer, the timeout."""

    leader: bool = True
    connected: bool = True
    # The answers transferLeadership gives, in turn; the last one repeats.
    answers: list[int] = field(default_factory=lambda: [FAIL_REASON.SUCCESS])
    transfers: int = 0
    conf: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(raftMinTimeout=ELECTION_TIMEOUT_MIN_S)
    )
    otherNodes: set[str] = field(default_factory=lambda: {"b", "c"})

    def _isLeader(self) -> bool:
        return self.leader

    def isNodeConnected(self, node: str) -> bool:
        return self.connected

    def transferLeadership(self, callback: Callable[[object, int], None]) -> None:
        answer = self.answers[min(self.transfers, len(self.answers) - 1)]
        self.transfers += 1
        callback(None, answer)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_held_until_asked() -> None:
    node, handover = StandIn(), Handover(Clock())
    handover.tick(node)
    assert not handover.holds_appends()
    assert node.transfers == 0


def test_entries_wait_from_the_ask_until_the_node_no_longer_leads() -> None:
    node, clock = StandIn(), Clock()
    handover = Handover(clock)
    handover.ask()
    assert not handover.holds_appends()  # the tick thread decides, on its next tick
    handover.tick(node)
    assert handover.holds_appends()
    assert node.transfers == 1
    clock.now += 0.01
    handover.tick(node)
    assert node.transfers == 1, "TimeoutNow is sent once"
    assert handover.holds_appends()
    node.leader = False
    handover.tick(node)
    assert not handover.holds_appends()


def test_a_refused_transfer_is_asked_again_on_each_tick_while_entries_wait() -> None:
    denied, sent = FAIL_REASON.REQUEST_DENIED, FAIL_REASON.SUCCESS
    node, clock = StandIn(answers=[denied, denied, sent]), Clock()
    handover = Handover(clock)
    handover.ask()
    for _ in range(4):
        handover.tick(node)
        assert handover.holds_appends()
        clock.now += 0.001
    assert node.transfers == 3


def test_the_leader_appends_again_an_election_timeout_after_the_ask() -> None:
    for answers in ([FAIL_REASON.REQUEST_DENIED], [FAIL_REASON.SUCCESS]):
        node, clock = StandIn(answers=answers), Clock()
        handover = Handover(clock)
        handover.ask()
        handover.tick(node)
        clock.now += ELECTION_TIMEOUT_MIN_S - 0.001
        handover.tick(node)
        assert handover.holds_appends(), answers
        clock.now += 0.002
        handover.tick(node)
        assert not handover.holds_appends(), answers
        # A new ask starts over.
        handover.ask()
        handover.tick(node)
        assert handover.holds_appends(), answers


def test_a_leader_with_no_follower_connected_holds_nothing() -> None:
    node, handover = StandIn(connected=False), Handover(Clock())
    handover.ask()
    handover.tick(node)
    assert not handover.holds_appends()
    assert node.transfers == 0
    node.connected = True
    handover.tick(node)
    assert not handover.holds_appends(), "the ask was dropped, not kept for later"


def test_an_ask_on_a_follower_is_dropped() -> None:
    node, handover = StandIn(leader=False), Handover(Clock())
    handover.ask()
    handover.tick(node)
    node.leader = True
    handover.tick(node)
    assert not handover.holds_appends()
    assert node.transfers == 0


def test_a_failure_other_than_a_refusal_ends_the_transfer() -> None:
    node, handover = StandIn(answers=[FAIL_REASON.NOT_LEADER]), Handover(Clock())
    handover.ask()
    handover.tick(node)
    assert not handover.holds_appends()
