"""Property: the follower guard never keeps an entry the leader lacks, nor cuts our own.

Method: hypothesis draws a leader log (terms non-decreasing, ending in the leader's term), a
follower log that is a prefix of it, possibly followed by stale entries of older terms, an index
of the shared prefix the follower may already have acked to this leader, and an AppendEntries the
leader could send (prevLogIdx inside the shared prefix; a late re-send may end below the ack). The
same message is delivered to a follower behind HardenedTransport and one behind the stock
TCPTransport, each reset to the drawn log. Checked: the guarded log is the stock log extended,
never shortened; every entry it holds is at the same place in the leader's log unless stock also
holds it (stale entries that Raft itself leaves alone); no current-term entry we held is cut; the
log never ends below the index we acked (a chaos run of follower restarts caught the ack of
old-term entries being cut by a re-send); and the guarded reply acks only entries the leader holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.transport import TCPTransport

from store.raft.transport import HardenedTransport
from tests.chaos.cluster import free_ports

NO_OP = b"\x01"
Entry = tuple[bytes, int, int]


@pytest.fixture(scope="module")
def followers() -> Iterator[dict[type, SyncObj]]:
    made: dict[type, SyncObj] = {}
    for transport in (HardenedTransport, TCPTransport):
        self_port, peer_port = free_ports(2)
        conf = SyncObjConf(autoTick=False)
        made[transport] = SyncObj(
            f"127.0.0.1:{self_port}", [f"127.0.0.1:{peer_port}"], conf, transportClass=transport
        )
    yield made
    for node in made.values():
        node.destroy()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Entry], list[Entry], int, dict[str, Any]]:
    steps = draw(st.lists(st.integers(0, 1), min_size=1, max_size=25))
    terms = [1]
    for step in steps:
        terms.append(terms[-1] + step)
    leader_term = terms[-1]
    leader = [(NO_OP, index + 1, term) for index, term in enumerate(terms)]
    shared = draw(st.integers(1, len(leader)))
    follower = leader[:shared]
    # A stale entry was written by an older leader that this one did not follow: its term is
    # older than the leader's entry at the same index (the same index and term would make it the
    # leader's entry, by Raft's log matching property).
    stale_term_max = (leader[shared][2] if shared < len(leader) else leader_term) - 1
    if stale_term_max >= follower[-1][2]:
        stale_term = draw(st.integers(follower[-1][2], stale_term_max))
        stale = draw(st.integers(0, 5))
        follower += [(NO_OP + b"stale", shared + i + 1, stale_term) for i in range(stale)]
    acked = draw(st.integers(0, shared))
    previous = draw(st.integers(1, shared))
    count = draw(st.integers(0, len(leader) - previous))
    message = {
        "type": "append_entries",
        "term": leader_term,
        "commit_index": 1,
        "prevLogIdx": previous,
        "prevLogTerm": leader[previous - 1][2],
        "entries": leader[previous : previous + count],
    }
    return leader, follower, acked, message


def deliver(
    node: SyncObj, follower_log: list[Entry], acked: int, message: dict[str, Any]
) -> list[Entry]:
    log = node._SyncObj__raftLog
    log.clear()
    for entry in follower_log:
        log.add(*entry)
    node._SyncObj__raftCurrentTerm = message["term"] if acked else follower_log[-1][2]
    node._SyncObj__transport._acked = (message["term"], acked) if acked else (0, 0)
    node._SyncObj__votedForNodeId = None
    transport = node._SyncObj__transport
    transport._onMessageReceived(next(iter(node.otherNodes)), dict(message))
    return list(log[:])


def acked_by_reply(node: SyncObj) -> int:
    """The index the queued success reply acks (0 if none), emptying the outbox."""
    outbox = node._SyncObj__transport._outbox
    replies = [message for _, message in outbox if message.get("type") == "next_node_idx"]
    outbox.clear()
    return max((m["next_node_idx"] - 1 for m in replies if m["success"]), default=0)


@settings(deadline=None, max_examples=200)
@given(scenario=scenarios())
def test_follower_guard_keeps_only_the_leaders_entries(
    followers: dict[type, SyncObj], scenario: tuple[list[Entry], list[Entry], int, dict[str, Any]]
) -> None:
    leader, follower, acked, message = scenario
    guarded = deliver(followers[HardenedTransport], follower, acked, message)
    reply_acks = acked_by_reply(followers[HardenedTransport])
    stock = deliver(followers[TCPTransport], follower, acked, message)
    assert guarded[: len(stock)] == stock, "the guard changed what the library keeps"
    assert guarded[len(stock) :] == leader[len(stock) : len(guarded)], "kept a foreign entry"
    current = [entry for entry in follower if entry[2] == message["term"]]
    assert all(entry in guarded for entry in current), "cut an entry of the current term"
    assert len(guarded) >= acked, "cut an entry we acked to this leader"
    assert guarded[:reply_acks] == leader[:reply_acks], "acked an entry the leader lacks"
