"""Property: the follower guard never keeps an entry the leader lacks, nor cuts our own.

Method: hypothesis draws a leader log (terms non-decreasing, ending in the leader's term), a
follower log that is a prefix of it, possibly followed by stale entries of older terms, and an
AppendEntries the leader could send (prevLogIdx inside the shared prefix). The same message is
delivered to a follower behind HardenedTransport and one behind the stock TCPTransport, each
reset to the drawn log. Checked: the guarded log is the stock log extended, never shortened;
every entry it holds is at the same place in the leader's log unless stock also holds it (stale
entries that Raft itself leaves alone); and no current-term entry we held is cut.
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
def scenarios(draw: st.DrawFn) -> tuple[list[Entry], list[Entry], dict[str, Any]]:
    steps = draw(st.lists(st.integers(0, 1), min_size=1, max_size=25))
    terms = [1]
    for step in steps:
        terms.append(terms[-1] + step)
    leader_term = terms[-1]
    leader = [(NO_OP, index + 1, term) for index, term in enumerate(terms)]
    shared = draw(st.integers(1, len(leader)))
    follower = leader[:shared]
    first_current = next(i for i, entry in enumerate(leader) if entry[2] == leader_term)
    if shared <= first_current:
        stale_term = draw(st.integers(follower[-1][2], leader_term - 1)) if leader_term > 1 else 0
        stale = draw(st.integers(0, 5)) if stale_term >= follower[-1][2] > 0 else 0
        follower += [(NO_OP + b"stale", shared + i + 1, stale_term) for i in range(stale)]
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
    return leader, follower, message


def deliver(node: SyncObj, follower_log: list[Entry], message: dict[str, Any]) -> list[Entry]:
    log = node._SyncObj__raftLog
    log.clear()
    for entry in follower_log:
        log.add(*entry)
    node._SyncObj__raftCurrentTerm = follower_log[-1][2]
    node._SyncObj__votedForNodeId = None
    node._SyncObj__transport._onMessageReceived(next(iter(node.otherNodes)), dict(message))
    return list(log[:])


@settings(deadline=None, max_examples=200)
@given(scenario=scenarios())
def test_follower_guard_keeps_only_the_leaders_entries(
    followers: dict[type, SyncObj], scenario: tuple[list[Entry], list[Entry], dict[str, Any]]
) -> None:
    leader, follower, message = scenario
    guarded = deliver(followers[HardenedTransport], follower, message)
    stock = deliver(followers[TCPTransport], follower, message)
    assert guarded[: len(stock)] == stock, "the guard changed what the library keeps"
    assert guarded[len(stock) :] == leader[len(stock) : len(guarded)], "kept a foreign entry"
    current = [entry for entry in follower if entry[2] == message["term"]]
    assert all(entry in guarded for entry in current), "cut an entry of the current term"
