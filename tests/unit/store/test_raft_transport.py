"""HardenedTransport's pieces, each against a real pysyncobj node on 127.0.0.1 and real files.

Where a piece neutralises a defect (log shrink, compaction crash, frame DoS), the same scenario also
runs with the stock TCPTransport and shows the defect, so each test is known to be able to fail.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.monotonic import monotonic as library_monotonic
from pysyncobj.serializer import Serializer
from pysyncobj.transport import TCPTransport

import store.raft.transport
from store.raft import journal as raft_journal
from store.raft.journal import RECOVERING_SUFFIX, ChecksummedJournal
from store.raft.transport import LEADER_QUERY, LEADER_REPLY, HardenedTransport, HardeningConfig
from tests.chaos.cluster import free_ports

NO_OP = b"\x01"  # pysyncobj's no-op command type: applying it does nothing
LEADER = 2


def make_node(transport: type, journal: Path | None = None, peers: int = 1) -> SyncObj:
    raft_journal.install()  # the stock cases differ in their transport only
    self_port, *peer_ports = free_ports(1 + peers)
    conf = SyncObjConf(
        autoTick=False,
        journalFile=str(journal) if journal else None,
        fullDumpFile=str(journal) + ".dump" if journal else None,
        useFork=False,
    )
    others = [f"127.0.0.1:{port}" for port in peer_ports]
    return SyncObj(f"127.0.0.1:{self_port}", others, conf, transportClass=transport)


@pytest.fixture
def nodes() -> Iterator[list[SyncObj]]:
    made: list[SyncObj] = []
    yield made
    for node in made:
        node.destroy()


def log_of(node: SyncObj) -> Any:
    return node._SyncObj__raftLog


def transport_of(node: SyncObj) -> Any:
    return node._SyncObj__transport


def peer_of(node: SyncObj) -> Any:
    return next(iter(node.otherNodes))


def leader_that_sent_up_to_20(nodes: list[SyncObj], transport: type) -> tuple[SyncObj, Any]:
    """A node made leader whose next entry for its peer is 21, with nothing acknowledged yet."""
    leader = make_node(transport)
    nodes.append(leader)
    peer = peer_of(leader)
    leader._SyncObj__raftState = LEADER
    leader._SyncObj__raftNextIndex[peer] = 21
    leader._SyncObj__raftMatchIndex[peer] = 0
    leader._SyncObj__lastResponseTime[peer] = 0.0
    return leader, peer


@pytest.mark.parametrize(
    ("transport", "next_index_after"), [(HardenedTransport, 21), (TCPTransport, 11)]
)
def test_leader_guard_keeps_next_index_from_moving_back(
    nodes: list[SyncObj], transport: type, next_index_after: int
) -> None:
    """Log shrink: a late success reply for entries up to 10, after entries up to 20 were sent."""
    leader, peer = leader_that_sent_up_to_20(nodes, transport)
    reply = {"type": "next_node_idx", "next_node_idx": 11, "success": True, "reset": False}
    transport_of(leader)._onMessageReceived(peer, reply)
    assert leader._SyncObj__raftMatchIndex[peer] == 10
    assert leader._SyncObj__raftNextIndex[peer] == next_index_after


def test_leader_guard_leaves_reset_replies_alone(nodes: list[SyncObj]) -> None:
    """A follower that truly lacks entries answers `reset`; the leader must go back for it."""
    leader, peer = leader_that_sent_up_to_20(nodes, HardenedTransport)
    reply = {"type": "next_node_idx", "next_node_idx": 5, "success": False, "reset": True}
    transport_of(leader)._onMessageReceived(peer, reply)
    assert leader._SyncObj__raftNextIndex[peer] == 5


def follower_with_log(tmp_path: Path, transport: type, nodes: list[SyncObj]) -> SyncObj:
    follower = make_node(transport, tmp_path / "journal")
    nodes.append(follower)
    for index in range(2, 21):
        log_of(follower).add(NO_OP, index, 1)
    follower._SyncObj__raftCurrentTerm = 1
    return follower


def append_entries(term: int, previous: int, last: int, entries_term: int) -> dict[str, Any]:
    entries = [(NO_OP, index, entries_term) for index in range(previous + 1, last + 1)]
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": 1,
        "prevLogIdx": previous,
        "prevLogTerm": 1,
        "entries": entries,
    }


@pytest.mark.parametrize(
    ("transport", "log_end_after"), [(HardenedTransport, 20), (TCPTransport, 15)]
)
def test_follower_guard_keeps_matching_entries_of_the_current_term(
    tmp_path: Path, nodes: list[SyncObj], transport: type, log_end_after: int
) -> None:
    """Follower guard: a re-sent AppendEntries for 11..15 must not cut our matching 16..20."""
    follower = follower_with_log(tmp_path, transport, nodes)
    message = append_entries(term=1, previous=10, last=15, entries_term=1)
    transport_of(follower)._onMessageReceived(peer_of(follower), message)
    assert log_of(follower)[-1][1] == log_end_after


def test_follower_guard_lets_a_new_term_truncate_old_entries(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    """Entries of an older term beyond the message may conflict with the new leader: cut them."""
    follower = follower_with_log(tmp_path, HardenedTransport, nodes)
    message = append_entries(term=2, previous=10, last=15, entries_term=1)
    transport_of(follower)._onMessageReceived(peer_of(follower), message)
    assert log_of(follower)[-1][1] == 15


def snapshot_chunks_sent(tmp_path: Path, nodes: list[SyncObj]) -> list[Any]:
    """The snapshot chunks (the library's own) that a leader whose log starts at a dump of
    40..41 (journal to 100) queues for a peer that asked for index 1."""
    journal = tmp_path / "leader"
    file_journal(journal, 100)._destroy()
    write_dump_at(Path(str(journal) + ".dump"), 40)
    leader = make_node(HardenedTransport, journal)
    nodes.append(leader)
    leader.doTick(0)
    peer = peer_of(leader)
    leader._SyncObj__raftCurrentTerm = 1
    leader._SyncObj__raftState = LEADER
    leader._SyncObj__raftNextIndex[peer] = 1
    leader._SyncObj__raftMatchIndex[peer] = 0
    leader._SyncObj__connectedNodes.add(peer)
    leader._SyncObj__sendAppendEntries()
    outbox = transport_of(leader)._outbox
    messages = [message for _, message in outbox if message.get("serialized") is not None]
    outbox.clear()
    return messages


# The library drops the dump file it sent from without closing it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("transport", "follower_end", "log_end_after"),
    [(HardenedTransport, 100, 100), (TCPTransport, 100, 41), (HardenedTransport, 30, 41)],
)
def test_a_follower_installs_only_a_snapshot_it_does_not_hold(
    tmp_path: Path, nodes: list[SyncObj], transport: type, follower_end: int, log_end_after: int
) -> None:
    """Snapshot guard: a follower holding entry 41 of term 1 drops a snapshot of 40..41 (stock
    installs it, cutting 42..100 and rewinding its state); one whose log ends before installs it."""
    chunks = snapshot_chunks_sent(tmp_path, nodes)
    assert chunks, "the leader sent no snapshot"
    assert all(chunk["snapshot"] == (41, 1) for chunk in chunks)
    journal = tmp_path / "follower"
    file_journal(journal, follower_end)._destroy()
    follower = make_node(transport, journal)
    nodes.append(follower)
    follower.doTick(0)
    for chunk in chunks:
        transport_of(follower)._onMessageReceived(peer_of(follower), dict(chunk))
    assert log_of(follower)[-1][1] == log_end_after
    if transport is HardenedTransport:
        assert transport_of(follower).stats().snapshots_skipped == int(follower_end == 100)


def file_journal(path: Path, last: int) -> ChecksummedJournal:
    journal = ChecksummedJournal(str(path))
    for index in range(1, last + 1):
        journal.add(NO_OP + index.to_bytes(4, "big"), index, 1)
    return journal


def write_dump_at(path: Path, index: int) -> None:
    """A pysyncobj dump taken when entries `index` and `index + 1` were the last applied."""
    serializer = Serializer(str(path), 2**16, False, None, None, None)
    before_last = (NO_OP + index.to_bytes(4, "big"), index, 1)
    last = (NO_OP + (index + 1).to_bytes(4, "big"), index + 1, 1)
    serializer.serialize(({}, last, before_last, set()), index)
    assert path.exists()


@pytest.mark.parametrize(
    ("transport", "entries_kept"), [(HardenedTransport, 61), (TCPTransport, 2)]
)
def test_startup_repair_keeps_the_journal_after_a_crash_before_compaction(
    tmp_path: Path, nodes: list[SyncObj], transport: type, entries_kept: int
) -> None:
    """Compaction crash: the dump (at 40) was renamed in; the journal (1..100) not yet compacted."""
    journal = tmp_path / "journal"
    file_journal(journal, 100)._destroy()
    write_dump_at(Path(str(journal) + ".dump"), 40)
    node = make_node(transport, journal, peers=0)
    nodes.append(node)
    node.doTick(0)
    assert len(log_of(node)) == entries_kept
    if transport is HardenedTransport:
        assert [entry[1] for entry in log_of(node)] == list(range(40, 101))
        assert transport_of(node).stats().startup_repairs == 1


def test_a_fresh_node_elects_with_the_normal_timeout(tmp_path: Path, nodes: list[SyncObj]) -> None:
    node = make_node(HardenedTransport, tmp_path / "journal")
    nodes.append(node)
    assert (node.conf.raftMinTimeout, node.conf.raftMaxTimeout) == (0.4, 1.4)


def test_a_restarted_node_stays_quiet_until_ready(tmp_path: Path, nodes: list[SyncObj]) -> None:
    journal = tmp_path / "journal"
    file_journal(journal, 10)._destroy()
    started = time.monotonic()
    node = make_node(HardenedTransport, journal)
    nodes.append(node)
    quiet = HardeningConfig()
    assert node.conf.raftMinTimeout == quiet.quiet_election_timeout_s_min
    assert node.conf.raftMaxTimeout == quiet.quiet_election_timeout_s_max
    deadline = node._SyncObj__raftElectionDeadline
    assert deadline - started >= quiet.quiet_election_timeout_s_min - 1.0
    node._SyncObj__onReadyCalled = True
    transport_of(node)._onTick()
    assert (node.conf.raftMinTimeout, node.conf.raftMaxTimeout) == (0.4, 1.4)


def restarted_node(tmp_path: Path, nodes: list[SyncObj], peers: int) -> SyncObj:
    """A node that has run before (its journal holds entries), its peers marked connected, its
    outbox kept for the test to read instead of sent at each tick."""
    journal = tmp_path / "journal"
    file_journal(journal, 10)._destroy()
    node = make_node(HardenedTransport, journal, peers)
    nodes.append(node)
    node._SyncObj__connectedNodes.update(node.otherNodes)
    transport_of(node)._flush_outbox = lambda: None
    return node


def is_quiet(node: SyncObj) -> bool:
    quiet = HardeningConfig()
    timeouts = (node.conf.raftMinTimeout, node.conf.raftMaxTimeout)
    return timeouts == (quiet.quiet_election_timeout_s_min, quiet.quiet_election_timeout_s_max)


def test_leader_queries_are_answered_and_never_reach_the_library(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    node = restarted_node(tmp_path, nodes, peers=2)
    transport = transport_of(node)
    seen_by_library: list[Any] = []
    transport.setOnMessageReceivedCallback(lambda _node, message: seen_by_library.append(message))
    asking, leader = sorted(node.otherNodes, key=lambda peer: peer.address)
    term = node.raftCurrentTerm
    transport._onMessageReceived(asking, {"type": LEADER_QUERY})
    node._SyncObj__raftLeader = leader
    node._SyncObj__raftCurrentTerm = term + 1
    transport._onMessageReceived(asking, {"type": LEADER_QUERY})
    transport._onMessageReceived(asking, {"type": LEADER_REPLY, "leader_known": False, "term": 3})
    assert list(transport._outbox) == [
        (asking, {"type": LEADER_REPLY, "leader_known": False, "term": term}),
        (asking, {"type": LEADER_REPLY, "leader_known": True, "term": term + 1}),
    ]
    assert seen_by_library == []
    assert transport.stats().leader_queries_answered == 2


@pytest.mark.parametrize(
    ("replies", "age_s", "ended"),
    [
        ([False, None], 0.0, True),  # 2 of 3 know no leader
        ([False, False], 0.0, True),
        ([False, True], 0.0, False),  # a peer knows a leader: its heartbeat is on its way
        ([None, None], 0.0, False),  # no peer answered: no majority
        ([False, None], 1.0, False),  # the answer is older than an election timeout
    ],
)
def test_a_restarted_node_ends_its_quiet_start_once_a_majority_knows_no_leader(
    tmp_path: Path,
    nodes: list[SyncObj],
    monkeypatch: pytest.MonkeyPatch,
    replies: list[bool | None],
    age_s: float,
    ended: bool,
) -> None:
    node = restarted_node(tmp_path, nodes, peers=2)
    transport = transport_of(node)
    transport._onTick()
    peers = sorted(node.otherNodes, key=lambda peer: peer.address)
    queries = sorted(transport._outbox, key=lambda sent: str(sent[0].address))
    assert queries == [(peer, {"type": LEADER_QUERY}) for peer in peers]
    assert transport.stats().leader_queries_sent == 2
    # The library's clock (CLOCK_MONOTONIC_RAW), which its election deadline is on too.
    answered_at = library_monotonic() - age_s
    monkeypatch.setattr(store.raft.transport, "library_monotonic", lambda: answered_at)
    for peer, known in zip(peers, replies, strict=True):
        if known is not None:
            reply = {"type": LEADER_REPLY, "leader_known": known, "term": 1}
            transport._onMessageReceived(peer, reply)
    monkeypatch.undo()
    ticked_at = library_monotonic()
    transport._onTick()
    assert is_quiet(node) != ended
    assert transport.stats().quiet_starts_ended_early == int(ended)
    if ended:
        deadline = node._SyncObj__raftElectionDeadline
        assert ticked_at + 0.4 <= deadline <= library_monotonic() + 1.4


def test_a_node_that_ended_its_quiet_start_early_is_quiet_again_once_a_peer_knows_a_leader(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    """The peer heard of a leader that this node does not hear yet: campaigning would depose it."""
    node = restarted_node(tmp_path, nodes, peers=2)
    transport = transport_of(node)
    peer = peer_of(node)
    transport._onMessageReceived(peer, {"type": LEADER_REPLY, "leader_known": False, "term": 1})
    transport._onTick()
    assert not is_quiet(node)
    transport._onMessageReceived(peer, {"type": LEADER_REPLY, "leader_known": True, "term": 2})
    resumed_at = library_monotonic()
    transport._onTick()
    assert is_quiet(node)
    assert node._SyncObj__raftElectionDeadline >= resumed_at + 5.0
    stats = transport.stats()
    assert (stats.quiet_starts_ended_early, stats.quiet_starts_resumed) == (1, 1)


def test_a_restarted_node_that_knows_a_leader_stays_quiet(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    node = restarted_node(tmp_path, nodes, peers=2)
    transport = transport_of(node)
    node._SyncObj__raftLeader = peer_of(node)
    for peer in node.otherNodes:
        transport._onMessageReceived(peer, {"type": LEADER_REPLY, "leader_known": False, "term": 1})
    transport._onTick()
    assert is_quiet(node)


def test_a_restarted_single_node_cluster_ends_its_quiet_start_at_once(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    """Alone, the node is the majority and there is no leader to depose."""
    node = restarted_node(tmp_path, nodes, peers=0)
    transport_of(node)._onTick()
    assert not is_quiet(node)
    assert transport_of(node).stats().quiet_starts_ended_early == 1


def test_a_whole_restarted_cluster_elects_within_a_normal_election_timeout(
    tmp_path: Path, nodes: list[SyncObj]
) -> None:
    """Three nodes that have all run before, on real sockets: they find that none knows a
    leader and elect within 0.4-1.4 s, not after the quiet 5-7 s."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    for index, address in enumerate(addresses):
        journal = tmp_path / f"journal{index}"
        file_journal(journal, 10)._destroy()
        conf = SyncObjConf(
            autoTick=False, journalFile=str(journal), fullDumpFile=f"{journal}.dump", useFork=False
        )
        others = [other for other in addresses if other != address]
        nodes.append(SyncObj(address, others, conf, transportClass=HardenedTransport))
    started = time.monotonic()
    while not any(node._isLeader() for node in nodes) and time.monotonic() - started < 10:
        for node in nodes:
            node.doTick(0.005)
    elected_s = time.monotonic() - started
    print(f"elected {elected_s:.2f} s after the restart")
    leader = next(node for node in nodes if node._isLeader())
    assert elected_s < 3.0
    stats = transport_of(leader).stats()
    assert (stats.quiet_starts, stats.quiet_starts_ended_early) == (1, 1)


@pytest.mark.parametrize(
    ("transport", "closed"), [(HardenedTransport, True), (TCPTransport, False)]
)
def test_an_absurd_frame_length_closes_the_connection(
    nodes: list[SyncObj], transport: type, closed: bool
) -> None:
    node = make_node(transport)
    nodes.append(node)
    port = int(node.selfNode.address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall((2**31 - 1).to_bytes(4, "little") + b"x" * 1000)
        sock.settimeout(0.05)
        for _ in range(20):
            node.doTick(0.01)
        try:
            assert (sock.recv(1) == b"") == closed
        except TimeoutError:
            assert not closed
    if transport is HardenedTransport:
        assert transport_of(node).stats().frames_rejected == 1


def test_a_lone_leader_acks_only_synced_entries(
    tmp_path: Path, nodes: list[SyncObj], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without peers nothing is sent, yet the commit must still wait for the sync."""
    node = make_node(HardenedTransport, tmp_path / "journal", peers=0)
    nodes.append(node)
    synced_ends: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced_ends.append(log_of(node)[-1][1])
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    acked: list[tuple[int, int]] = []

    def callback(_result: Any, error: int) -> None:
        acked.append((error, max(synced_ends, default=0)))

    deadline = time.monotonic() + 10
    while not node._isLeader() and time.monotonic() < deadline:
        node.doTick(0.01)
    node.setCodeVersion(0, callback)
    while not acked and time.monotonic() < deadline:
        node.doTick(0.01)
    assert acked, "the write was never acknowledged"
    error, synced_end = acked[0]
    assert error == 0
    assert synced_end >= log_of(node)[-1][1]


@pytest.mark.parametrize("recovering", [True, False])
def test_a_recovering_node_grants_no_vote(
    tmp_path: Path, nodes: list[SyncObj], recovering: bool
) -> None:
    journal = tmp_path / "journal"
    if recovering:
        Path(str(journal) + RECOVERING_SUFFIX).touch()
    node = make_node(HardenedTransport, journal)
    nodes.append(node)
    node.doTick(0)
    transport = transport_of(node)
    vote = {"type": "request_vote", "term": 5, "last_log_index": 10, "last_log_term": 5}
    transport._onMessageReceived(peer_of(node), vote)
    replies = [message for _, message in transport._outbox if message["type"] == "response_vote"]
    assert len(replies) == (0 if recovering else 1)
    assert transport.stats().votes_withheld == int(recovering)


def test_a_recovering_node_never_campaigns(tmp_path: Path, nodes: list[SyncObj]) -> None:
    journal = tmp_path / "journal"
    Path(str(journal) + RECOVERING_SUFFIX).touch()
    node = make_node(HardenedTransport, journal, peers=0)
    nodes.append(node)
    deadline = time.monotonic() + 2 * node.conf.raftMaxTimeout
    while time.monotonic() < deadline:
        node.doTick(0.02)
    assert node._SyncObj__raftState != LEADER and node.raftCurrentTerm == 0
    assert Path(str(journal) + RECOVERING_SUFFIX).exists(), "nobody to catch up from"


def test_a_lone_leader_with_a_full_disk_acks_nothing_until_space_returns(
    tmp_path: Path, nodes: list[SyncObj], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_node(HardenedTransport, tmp_path / "journal", peers=0)
    nodes.append(node)
    deadline = time.monotonic() + 10
    while not node._isLeader() and time.monotonic() < deadline:
        node.doTick(0.01)
    acked: list[int] = []

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", no_space)
    node.setCodeVersion(0, lambda _result, error: acked.append(error))
    for _ in range(50):
        node.doTick(0.01)
    assert acked == [], "acknowledged an entry that only memory holds"
    assert transport_of(node).disk_error is not None
    monkeypatch.undo()
    while not acked and time.monotonic() < deadline:
        node.doTick(0.01)
    assert acked == [0] and transport_of(node).disk_error is None
    assert transport_of(node).stats().disk_failures == 1


def test_a_follower_with_a_full_disk_sends_nothing(
    tmp_path: Path, nodes: list[SyncObj], monkeypatch: pytest.MonkeyPatch
) -> None:
    follower = follower_with_log(tmp_path, HardenedTransport, nodes)
    transport = transport_of(follower)
    transport._flush_outbox()

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", no_space)
    message = append_entries(term=1, previous=20, last=25, entries_term=1)
    transport._onMessageReceived(peer_of(follower), message)
    assert any(m["type"] == "next_node_idx" for _, m in transport._outbox), "a reply is queued"
    sent = transport.stats().messages_sent
    transport._flush_outbox()
    assert transport.stats().messages_sent == sent, "acked entries it could not write"
    assert transport.stats().messages_dropped_disk_failing >= 1
