"""cluster/membership.py `next_membership`: the leader's pure decision of the next epoch.

Method: a table pins the decision in named situations (first heartbeats, a death by either
clock, the grace period, a return, a removal from Raft), and hypothesis checks the rules over
random clusters of up to six nodes, each announced or not, in the Raft cluster or not, live or
not, with a heartbeat of any age around the lease and dead thresholds, applied by the leader
any time around the lease and margin ago.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.membership import MembershipConfig, MembersView, next_membership
from store.codec import Member

CONFIG = MembershipConfig(heartbeat_s=0.5, lease_s=1.5, dead_s=2.5)
LEASE_MS = 1500
DEAD_MS = 2500
# Seconds after the leader applied a member's heartbeat that the member is dead.
HEARD_DEAD_S = CONFIG.lease_s + CONFIG.heard_margin_s
NOW_MS = 1_000_000
NODE_IDS = [f"n{k}" for k in range(1, 7)]


def member(node: str) -> Member:
    return Member(node, f"127.0.0.1:{7500 + int(node[1:])}", f"127.0.0.1:{3500 + int(node[1:])}")


def raft_of(*nodes: str) -> frozenset[str]:
    return frozenset(member(node).raft for node in nodes)


def view(
    live: tuple[str, ...], ages_ms: dict[str, int], members: tuple[str, ...] = ()
) -> MembersView:
    """A committed state whose announced nodes are those with a heartbeat age."""
    return MembersView(
        epoch=7,
        members=tuple(member(node) for node in sorted(members or live)),
        live=live,
        heartbeats={node: NOW_MS - age for node, age in ages_ms.items()},
        announced={node: member(node) for node in ages_ms},
    )


def decide(
    state: MembersView,
    raft: frozenset[str],
    may_declare_dead: frozenset[str] | None = None,
    heard_s: dict[str, float] | None = None,
) -> object:
    """The decision; every member may be declared dead unless `may_declare_dead` says who, and
    the leader heard each heartbeat just now unless `heard_s` says when."""
    declarable = frozenset(NODE_IDS) if may_declare_dead is None else may_declare_dead
    change = next_membership(state, raft, NOW_MS, CONFIG, declarable, heard_s or {})
    if change is None:
        return None
    members, live = change
    return tuple(m.id for m in members), live


ALL3 = raft_of("n1", "n2", "n3")
FRESH3 = {"n1": 100, "n2": 100, "n3": 100}

TABLE = [
    (
        "first heartbeats found the cluster",
        view((), FRESH3),
        ALL3,
        None,
        None,
        (("n1", "n2", "n3"), ("n1", "n2", "n3")),
    ),
    (
        "applied a lease and the margin ago: dead, although its stamp is young",
        view(("n1", "n2", "n3"), FRESH3),
        ALL3,
        None,
        {"n3": HEARD_DEAD_S},
        (("n1", "n2", "n3"), ("n1", "n2")),
    ),
    (
        "applied just under a lease and the margin ago: live",
        view(("n1", "n2", "n3"), FRESH3),
        ALL3,
        None,
        {"n3": HEARD_DEAD_S - 0.001},
        None,
    ),
    (
        "applied late (caught up with): dead by its wall stamp",
        view(("n1", "n2", "n3"), {**FRESH3, "n3": DEAD_MS}),
        ALL3,
        None,
        {"n3": 0.0},
        (("n1", "n2", "n3"), ("n1", "n2")),
    ),
    ("steady state changes nothing", view(("n1", "n2", "n3"), FRESH3), ALL3, None, None, None),
    (
        "late but not dead stays live",
        view(("n1", "n2", "n3"), {**FRESH3, "n3": DEAD_MS - 1}),
        ALL3,
        None,
        None,
        None,
    ),
    (
        "dead is dropped from live, stays a member",
        view(("n1", "n2", "n3"), {**FRESH3, "n3": DEAD_MS}),
        ALL3,
        None,
        None,
        (("n1", "n2", "n3"), ("n1", "n2")),
    ),
    (
        "the grace period declares no one dead",
        view(("n1", "n2", "n3"), {**FRESH3, "n3": 60_000}),
        ALL3,
        frozenset(),
        None,
        None,
    ),
    (
        "a returning member with a stale heartbeat waits",
        view(("n1", "n2"), {**FRESH3, "n3": LEASE_MS}, ("n1", "n2", "n3")),
        ALL3,
        None,
        None,
        None,
    ),
    (
        "a returning member heard just now (a replayed heartbeat) waits for a fresh stamp",
        view(("n1", "n2"), {**FRESH3, "n3": LEASE_MS}, ("n1", "n2", "n3")),
        ALL3,
        None,
        {"n3": 0.0},
        None,
    ),
    (
        "a returning member with a young stamp the leader has not heard for a lease waits",
        view(("n1", "n2"), FRESH3, ("n1", "n2", "n3")),
        ALL3,
        None,
        {"n3": CONFIG.lease_s},
        None,
    ),
    (
        "the grace period spares a member heard long ago too",
        view(("n1", "n2", "n3"), FRESH3),
        ALL3,
        frozenset(),
        {"n3": 60.0},
        None,
    ),
    (
        "a returning member with a fresh heartbeat is taken back",
        view(("n1", "n2"), {**FRESH3, "n3": LEASE_MS - 1}, ("n1", "n2", "n3")),
        ALL3,
        None,
        None,
        (("n1", "n2", "n3"), ("n1", "n2", "n3")),
    ),
    (
        "a node outside the Raft cluster is not admitted",
        view(("n1", "n2", "n3"), {**FRESH3, "n4": 100}),
        ALL3,
        None,
        None,
        None,
    ),
    (
        "a node added to Raft joins with its first heartbeat",
        view(("n1", "n2", "n3"), {**FRESH3, "n4": 100}),
        raft_of("n1", "n2", "n3", "n4"),
        None,
        None,
        (("n1", "n2", "n3", "n4"), ("n1", "n2", "n3", "n4")),
    ),
    (
        "a node removed from Raft leaves members and live",
        view(("n1", "n2", "n3"), FRESH3),
        raft_of("n1", "n2"),
        None,
        None,
        (("n1", "n2"), ("n1", "n2")),
    ),
    (
        "a node removed from Raft leaves even in the grace period",
        view(("n1", "n2", "n3"), FRESH3),
        raft_of("n1", "n2"),
        frozenset(),
        None,
        (("n1", "n2"), ("n1", "n2")),
    ),
    (
        "in the grace period only the members the leader cannot reach may be declared dead",
        view(("n1", "n2", "n3"), {"n1": 100, "n2": DEAD_MS, "n3": DEAD_MS + 500}),
        ALL3,
        frozenset({"n3"}),
        None,
        (("n1", "n2", "n3"), ("n1", "n2")),
    ),
]


@pytest.mark.parametrize(
    ("state", "raft", "may_declare_dead", "heard_s", "expected"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_next_membership_table(
    state: MembersView,
    raft: frozenset[str],
    may_declare_dead: frozenset[str] | None,
    heard_s: dict[str, float] | None,
    expected: object,
) -> None:
    assert decide(state, raft, may_declare_dead, heard_s) == expected


@dataclass(frozen=True)
class Situation:
    state: MembersView
    raft: frozenset[str]
    ages_ms: dict[str, int]
    may_declare_dead: frozenset[str]
    # Seconds since the leader applied each heartbeat (a member missing: just now).
    heard_s: dict[str, float]


# Ages cluster around the thresholds, where an off-by-one would hide.
ages = st.one_of(
    st.integers(0, 10_000),
    st.sampled_from([LEASE_MS - 1, LEASE_MS, DEAD_MS - 1, DEAD_MS]),
)
heard_ages = st.one_of(
    st.floats(0, 10, allow_nan=False),
    st.sampled_from([HEARD_DEAD_S - 0.001, HEARD_DEAD_S]),
)


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    nodes = draw(st.lists(st.sampled_from(NODE_IDS), unique=True, max_size=6))
    announced = [node for node in nodes if draw(st.booleans())]
    ages_ms = {node: draw(ages) for node in announced}
    in_raft = [node for node in nodes if draw(st.booleans())]
    members = sorted(node for node in announced if draw(st.booleans()))
    live = tuple(node for node in members if draw(st.booleans()))
    state = MembersView(
        epoch=draw(st.integers(0, 100)),
        members=tuple(member(node) for node in members),
        live=live,
        heartbeats={node: NOW_MS - age for node, age in ages_ms.items()},
        announced={node: member(node) for node in announced},
    )
    declarable = frozenset(node for node in nodes if draw(st.booleans()))
    heard_s = {node: draw(heard_ages) for node in announced if draw(st.booleans())}
    return Situation(state, raft_of(*in_raft), ages_ms, declarable, heard_s)


def outcome(s: Situation) -> tuple[tuple[Member, ...], tuple[str, ...]]:
    """The (members, live) after the decision: the change, or the state as it is."""
    change = next_membership(s.state, s.raft, NOW_MS, CONFIG, s.may_declare_dead, s.heard_s)
    return change if change is not None else (s.state.members, s.state.live)


def eligible(s: Situation, node: str) -> bool:
    return node in s.ages_ms and member(node).raft in s.raft


@settings(deadline=None, max_examples=400)
@given(situations())
def test_only_raft_cluster_nodes_that_announced_themselves_are_members(s: Situation) -> None:
    members, live = outcome(s)
    assert [m.id for m in members] == sorted(node for node in NODE_IDS if eligible(s, node))
    assert set(live) <= {m.id for m in members}
    assert list(live) == sorted(live)


@settings(deadline=None, max_examples=400)
@given(situations())
def test_a_live_member_stays_live_until_dead(s: Situation) -> None:
    _, live = outcome(s)
    for node in s.state.live:
        if not eligible(s, node):
            continue
        heard_dead = s.heard_s.get(node, 0.0) >= HEARD_DEAD_S
        dead = (s.ages_ms[node] >= DEAD_MS or heard_dead) and node in s.may_declare_dead
        assert (node in live) is not dead, (node, s.ages_ms[node], s.heard_s.get(node))


@settings(deadline=None, max_examples=400)
@given(situations())
def test_a_returning_member_is_readmitted_only_with_a_fresh_heartbeat(s: Situation) -> None:
    _, live = outcome(s)
    for node in NODE_IDS:
        if node in s.state.live or not eligible(s, node):
            continue
        fresh = s.ages_ms[node] < LEASE_MS and s.heard_s.get(node, 0.0) < CONFIG.lease_s
        assert (node in live) is fresh, (node, s.ages_ms[node], s.heard_s.get(node))


@settings(deadline=None, max_examples=400)
@given(situations())
def test_only_the_members_that_may_be_declared_dead_are(s: Situation) -> None:
    _, live = outcome(s)
    spared = {node for node in s.state.live if eligible(s, node)} - s.may_declare_dead
    assert spared <= set(live)


@settings(deadline=None, max_examples=400)
@given(situations())
def test_no_change_is_none_and_a_decision_is_a_fixed_point(s: Situation) -> None:
    change = next_membership(s.state, s.raft, NOW_MS, CONFIG, s.may_declare_dead, s.heard_s)
    if change is None:
        return
    members, live = change
    assert (members, live) != (s.state.members, s.state.live)
    committed = MembersView(s.state.epoch + 1, members, live, s.state.heartbeats, s.state.announced)
    assert next_membership(committed, s.raft, NOW_MS, CONFIG, s.may_declare_dead, s.heard_s) is None
