"""HardenedTransport: pysyncobj's TCP transport, plus the fixes its core cannot take itself.

pysyncobj 0.3.17 name-mangles its message handler, but it builds the transport after the journal
(journal.py's checksummed journal, installed as its journal factory), the dump serializer and the
poller and before the tick thread starts. So this constructor is the one race-free place to
install, around an unchanged library:

1. Group commit. Every outgoing Raft message is queued; at each flush point (once per tick, and
   right after each poll) the journal writes its buffered records and fdatasyncs once if it
   changed, then the queue is sent.
   A follower therefore acks only durable entries and a leader ships only durable entries: one
   sync per batch of entries, never one per entry (durability: the library never syncs).
2. Leader guard (the follower log shrink). A success reply that would move a follower's nextIndex
   backwards is undone, so the leader never re-sends from an old prevLogIdx and the follower never
   truncates entries it already acked. Follower guard (backup): an AppendEntries never cuts our
   entries that are certainly the leader's, and a snapshot we already hold is not installed.
3. Startup repair (the compaction crash): at the first dump load the journal is first compacted
   to start at the dump, so the library's own load never clears it. (Compaction itself is
   atomic in journal.py.)
4. Durable dumps. pysyncobj's own dump rename (a snapshot received from the leader, or a stock
   dump) goes through disk.durable_replace (a process-wide patch of its module); term, vote and
   commit index are made durable by journal.py.
5. Quiet start. A restarted node uses a long election timeout until it has caught up once, so a
   restart does not push the cluster through needless elections (pysyncobj has no pre-vote).
   Meanwhile it asks its connected peers whether they know a leader (tock's own messages, never
   passed to the library); while a majority of the cluster, itself included, knows none and no
   peer knows one, there is no leader to depose and it uses the normal timeout: a whole cluster
   restarted at once elects within a normal election timeout instead of the quiet one.
   A node recovering from discarded state (recovery.py) goes further until it has caught up:
   it grants no vote and never campaigns (section 8).
6. A frame cap. A length prefix above `frame_bytes_max` (or negative) closes the connection
   before its body is buffered; it is checked as soon as it arrives (port.py). Frames are
   sealed with AES-GCM under per-connection keys instead of zlib and Fernet (frames.py).
7. The port against strangers (port.py): the listener binds the host of the node's own address
   (never every interface) and survives every accept() error; an incoming connection that has
   not authenticated is closed after a deadline, at most `handshakes_max` of them are kept, and
   its frames are capped at `handshake_frame_bytes_max` until it has; dialing a peer when no
   descriptor is left fails quietly until the next attempt instead of cutting the tick short.
8. Recovery (recovery.py): while a node catches up after `tock node --recover`, no vote and no
   campaign.
9. A full disk. While the journal cannot write its records or the meta (journal.py), no
   message leaves (what it refers to may not be durable) and the node skips its ticks: no
   election, no commit, no apply. It tries the writes again at every tick and ticks on once
   they succeed.
10. A leader whose connection closes. A process that dies (a crash, a SIGKILL, the OOM
   killer) has its sockets closed by the kernel at once, so a follower whose connection to its
   leader closes campaigns within `leader_lost_election_s_min..max` instead of waiting out an
   election timeout (0.4-1.4 s) for heartbeats that will not come. A leader that is only slow,
   paused or cut off keeps its connections and is judged by the timeout as before: what makes
   elections spurious under load (a timeout too short for a saturated leader) does not apply.

What the store must provide: a SyncObjConf with `journalFile` and `fullDumpFile` (without a
journal file the durability pieces are skipped, which suits only in-memory tests), and a
deserializer that returns the dump's two log entries as tuples `(command, index, term)`, since
the library compares them with `!=` against journal entries. Knobs: set
`self.hardening = HardeningConfig(...)` on the SyncObj subclass BEFORE `super().__init__()`;
without it the defaults below apply. `HardenedTransport.stats()` reports counters for metrics.

A forked dump child should die with its node (prctl PR_SET_PDEATHSIG): after a SIGKILL an orphan
child still holds the node's ports and may rename an older dump over a newer one written by the
restarted node, which the repair cannot undo (the journal then starts after the dump).
"""

from __future__ import annotations

import collections
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import pysyncobj.serializer
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.monotonic import monotonic as library_monotonic
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from store.errors import ValidationError
from store.raft import disk
from store.raft.frames import FrameCipher
from store.raft.journal import ChecksummedJournal
from store.raft.port import CappedConnection, GuardedServer, Handshakes, PortStats

logger = logging.getLogger(__name__)


# The library's private attributes this module reads or replaces, named once. They are stable in
# 0.3.17 (pinned); a rename upstream makes the constructor fail loudly instead of running stock.
_LOG = "_SyncObj__raftLog"
_NEXT_INDEX = "_SyncObj__raftNextIndex"
_MATCH_INDEX = "_SyncObj__raftMatchIndex"
_STATE = "_SyncObj__raftState"
_ELECTION_DEADLINE = "_SyncObj__raftElectionDeadline"
_SERIALIZER = "_SyncObj__serializer"
_GENERATE_TIMEOUT = "_SyncObj__generateRaftTimeout"
_LEADER_STATE = 2  # syncobj._RAFT_STATE.LEADER
# The quiet start's own messages. The transport consumes them before the library sees any, and a
# node that does not know them (an older tock) has its library ignore an unknown type: it never
# answers, and the asking node simply stays quiet as before.
LEADER_QUERY = "tock_leader_query"
LEADER_REPLY = "tock_leader_reply"


@dataclass(frozen=True, kw_only=True)
class HardeningConfig:
    """Knobs of the hardening; the store sets `self.hardening` before SyncObj.__init__ runs."""

    # A restarted node campaigns only after this long without a leader, until it is ready or a
    # majority of the cluster, itself included, knows no leader (then there is none to depose).
    # It must exceed the normal election timeout by far: a restarted node that campaigns with a
    # lagging log only bumps the term and makes the live leader step down.
    quiet_election_timeout_s_min: float = 5.0
    quiet_election_timeout_s_max: float = 7.0
    # Largest frame a peer may send. Raft messages here are a few hundred KiB at most (entries are
    # batched by bytes, dump chunks are logCompactionBatchSize); the library itself would buffer
    # up to 2 GiB for one length prefix.
    frame_bytes_max: int = 16 * 1024 * 1024
    # Before it authenticates, a connection sends two small frames: its random key and its node
    # address (or a short utility command), each well under 1 KiB once encrypted.
    handshake_frame_bytes_max: int = 4 * 1024
    # A peer completes its handshake in one round trip; a connection that has not within this
    # long is a stranger (or a peer so slow it will dial again).
    handshake_s_max: float = 5.0
    # Connections not yet authenticated that are kept at once; the oldest goes first beyond it.
    handshakes_max: int = 64
    # After accept() ran out of descriptors, the listener rests this long before trying again.
    accept_pause_s: float = 0.1
    # A follower whose connection to its leader closes campaigns after a delay drawn from this
    # range (section 10): short, since a closed connection says the leader's process is gone;
    # random, so that the followers that all saw it close do not split the vote.
    leader_lost_election_s_min: float = 0.02
    leader_lost_election_s_max: float = 0.2

    def validate(self) -> None:
        if not 0 < self.quiet_election_timeout_s_min <= self.quiet_election_timeout_s_max:
            raise ValidationError(
                "quiet_election_timeout_s_min and quiet_election_timeout_s_max must satisfy "
                "0 < quiet_election_timeout_s_min <= quiet_election_timeout_s_max"
            )
        if self.frame_bytes_max <= 0:
            raise ValidationError("frame_bytes_max must be positive")
        if not 0 < self.handshake_frame_bytes_max <= self.frame_bytes_max:
            raise ValidationError("handshake_frame_bytes_max must be in (0, frame_bytes_max]")
        if not 0 < self.handshake_s_max <= 10.0:
            raise ValidationError("handshake_s_max must be in (0, 10] seconds")
        if self.handshakes_max <= 0 or self.accept_pause_s <= 0:
            raise ValidationError("handshakes_max and accept_pause_s must be positive")
        if not 0 < self.leader_lost_election_s_min < self.leader_lost_election_s_max:
            raise ValidationError(
                "leader_lost_election_s_min and leader_lost_election_s_max must satisfy "
                "0 < leader_lost_election_s_min < leader_lost_election_s_max"
            )


@dataclass
class TransportStats(PortStats):
    """Counters of what the hardening did; read them through HardenedTransport.stats()."""

    journal_syncs: int = 0
    messages_sent: int = 0
    next_index_restores: int = 0
    follower_entries_kept: int = 0
    acked_log_shrinks: int = 0
    snapshots_skipped: int = 0
    compactions: int = 0
    torn_tails_truncated: int = 0
    votes_withheld: int = 0
    disk_failures: int = 0
    messages_dropped_disk_failing: int = 0
    startup_repairs: int = 0
    quiet_starts: int = 0
    quiet_starts_ended_early: int = 0
    quiet_starts_resumed: int = 0
    leader_queries_sent: int = 0
    leader_queries_answered: int = 0
    leader_lost_campaigns: int = 0


class HardenedTransport(TCPTransport):  # type: ignore[misc]
    """TCPTransport + group commit, guards, compaction repair, durable meta, quiet start, cap,
    and a port that strangers can neither hold nor close."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._hardening: HardeningConfig = getattr(syncObj, "hardening", None) or HardeningConfig()
        self._hardening.validate()
        self._stats = TransportStats()
        self._outbox: collections.deque[tuple[Any, Any]] = collections.deque()
        self._acked: tuple[int, int] = (0, 0)  # (term, last index we acked in that term)
        # Leader: the (index, term) of the snapshot each follower is being sent; follower:
        # whether the chunks now arriving belong to a snapshot we already hold.
        self._snapshots_sent: dict[Any, tuple[int, int]] = {}
        self._skipping_snapshot = False
        self._journal = self._journal_on_disk(syncObj)
        self._recovering = self._journal is not None and self._journal.recovering
        self._normal_election_timeouts: tuple[float, float] | None = None
        # Until ready after a restart: each peer's last answer to our leader query (leader known,
        # its term, received at), when the next round of queries is due, and whether the normal
        # timeouts are in force meanwhile (a majority knew no leader).
        self._leader_replies: dict[Any, tuple[bool, int, float]] = {}
        self._next_leader_query_at = 0.0
        self._campaigning_early = False
        # The last leader a tick knew of (section 10).
        self._leader_followed: Any = None
        self._handshakes = Handshakes(
            self._hardening.handshake_s_max, self._hardening.handshakes_max, self._stats
        )
        if syncObj.encryptor is not None:  # Fernet from the cluster secret: seal frames instead
            syncObj._SyncObj__encryptor = FrameCipher.from_secret(syncObj.conf.password)
        # The base constructor registers self._onTick and creates the first connections, so
        # everything those use is set above.
        super().__init__(syncObj, selfNode, otherNodes)
        self._flush_after_each_poll(syncObj._poller)
        self._hold_ticks_while_disk_fails(syncObj)
        self._align_journal_at_first_dump_load(syncObj)
        self._start_quietly_if_restarted(syncObj)

    def stats(self) -> TransportStats:
        """A copy of the counters (they are written by the tick thread only)."""
        stats = TransportStats(**vars(self._stats))
        if self._journal is not None:
            stats.journal_syncs = self._journal.syncs
            stats.compactions = self._journal.compactions
            stats.torn_tails_truncated = self._journal.torn_tail_records
            stats.disk_failures = self._journal.failures
        return stats

    # 1. Group commit.

    def send(self, node: Any, message: Any) -> bool:
        """Queue the message; it leaves at the next flush point, after the journal is synced.

        The library ignores the result except as a hint, so report the connection's state now.
        """
        if isinstance(message, dict) and message.get("serialized") is not None:
            message = self._name_snapshot(node, message)
        self._outbox.append((node, message))
        connection = self._connections.get(node)
        return connection is not None and connection.state == CONNECTION_STATE.CONNECTED

    def _flush_outbox(self) -> None:
        """Sync the journal if it changed, then send everything queued before the sync.

        Only messages queued before the sync are sent, so every entry a message refers to (an
        AppendEntries it carries, an index it acks) is on disk when the message leaves.
        """
        pending = len(self._outbox)
        # Sync even with nothing to send: a leader without peers (or whose peers are down)
        # commits on its own at the next tick, and must do so from a durable journal too.
        if self._journal is not None:
            self._journal.sync()
            if self._journal.failure is not None:
                self._drop_outbox(pending)
                return
        for _ in range(pending):
            node, message = self._outbox.popleft()
            self._note_ack(message)
            super().send(node, message)
            self._stats.messages_sent += 1

    def _drop_outbox(self, count: int) -> None:
        """A failing journal: what the messages refer to may not be durable, so none leaves.
        Raft takes a lost message as it takes a lost packet."""
        for _ in range(count):
            self._outbox.popleft()
        self._stats.messages_dropped_disk_failing += count

    def _onTick(self) -> None:
        self._hold_elections_while_recovering()
        super()._onTick()
        self._leader_followed = self._syncObj._getLeader() or self._leader_followed
        self._steer_quiet_start()
        self._guard_port()
        self._flush_outbox()

    def _flush_after_each_poll(self, poller: Any) -> None:
        """Flush right after the poll too: replies to the messages it delivered leave at once."""
        poll = poller.poll

        def poll_then_flush(timeout: float) -> None:
            poll(timeout)
            self._flush_outbox()

        poller.poll = poll_then_flush

    def _journal_on_disk(self, syncObj: Any) -> ChecksummedJournal | None:
        journal = getattr(syncObj, _LOG)
        if not isinstance(journal, ChecksummedJournal):
            return None  # an in-memory journal (no journalFile): nothing to make durable
        pysyncobj.serializer.atomicReplace = disk.durable_replace  # snapshots from the leader
        return journal

    # 2. Follower log shrink: the leader and follower guards, and the check that would catch it.

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == LEADER_QUERY:  # the quiet start's own messages (5), never the library's
            self._answer_leader_query(node)
        elif kind == LEADER_REPLY:
            self._note_leader_reply(node, message)
        elif kind == "request_vote" and self._recovering:
            self._stats.votes_withheld += 1  # no answer: the candidate counts no vote from us
        elif kind == "append_entries":
            message = self._keep_own_matching_entries(message)
            message = self._skip_held_snapshot(message)
            super()._onMessageReceived(node, message)
            self._count_acked_log_shrink()
        elif kind == "next_node_idx" and message.get("success") and not message.get("reset"):
            before = getattr(self._syncObj, _NEXT_INDEX).get(node)
            super()._onMessageReceived(node, message)
            self._restore_next_index(node, before)
        else:
            super()._onMessageReceived(node, message)

    def _restore_next_index(self, node: Any, before: int | None) -> None:
        """Leader guard: a success reply must never move nextIndex backwards.

        Success replies to pipelined AppendEntries arrive after later batches were sent; the
        library sets nextIndex to the reply's index, re-sends from there, and the follower
        truncates what it already acked. Keeping the larger value is safe: a follower that truly
        lacks entries answers with a `reset` reply, which this guard leaves alone.
        """
        next_index: dict[Any, int] = getattr(self._syncObj, _NEXT_INDEX)
        if getattr(self._syncObj, _STATE) != _LEADER_STATE or before is None:
            return
        after = next_index.get(node)
        if after is not None and after < before:
            next_index[node] = before
            self._stats.next_index_restores += 1

    def _keep_own_matching_entries(self, message: dict[str, Any]) -> dict[str, Any]:
        """Keep our entries that an AppendEntries would needlessly truncate.

        The library truncates everything after prevLogIdx, conflict or not, then appends the
        message's entries. When the message's entries match ours, it becomes an AppendEntries
        after our last matching entry: nothing is cut and the journal is not rewritten. If the
        message ends before our log does, two kinds of our further entries are the leader's own
        and are kept: up to the index we acked to this same leader (one leader per term, and its
        log only grows within its term), and, if our last entry carries the message's term, the
        whole log (that leader wrote it, and by Raft's log matching property our log up to it
        equals the leader's). The reply then acks only what we hold in common with the leader. A
        mismatch anywhere leaves the message unchanged, for the library to resolve.
        """
        if "prevLogIdx" not in message or "transmission" in message:
            return message
        log = getattr(self._syncObj, _LOG)
        first, last = log[0][1], log[-1][1]
        previous = message["prevLogIdx"]
        if previous is None or not first <= previous <= last:
            return message
        if log[previous - first][2] != message["prevLogTerm"]:
            return message
        entries = message.get("entries") or []
        held = [entry for entry in entries if entry[1] <= last]
        if any(log[index - first][2] != term for _, index, term in held):
            return message
        message_end = entries[-1][1] if entries else previous
        if message_end >= last:
            new = entries[len(held) :]
            return {**message, "prevLogIdx": last, "prevLogTerm": log[-1][2], "entries": new}
        keep_end = self._own_entries_end(message["term"])
        if message_end >= keep_end:
            return message
        self._stats.follower_entries_kept += keep_end - message_end
        keep_term = log[keep_end - first][2]
        return {**message, "prevLogIdx": keep_end, "prevLogTerm": keep_term, "entries": []}

    def _own_entries_end(self, leader_term: int) -> int:
        """The end of the part of our log that the leader of leader_term certainly holds."""
        log = getattr(self._syncObj, _LOG)
        if log[-1][2] == leader_term:
            return int(log[-1][1])
        acked_term, acked_index = self._acked
        if acked_term == leader_term == self._syncObj.raftCurrentTerm:
            return min(int(log[-1][1]), acked_index)
        return 0

    def _name_snapshot(self, node: Any, message: dict[str, Any]) -> dict[str, Any]:
        """Leader: tell the follower which snapshot these chunks carry.

        A transmission spans ticks and reads the dump file it opened with its first chunk, so
        the snapshot is named then, from the log's first entries (which are the dump's while no
        compaction is running, the only time the library sends chunks).
        """
        if message["serialized"][1]:  # the first chunk
            log = getattr(self._syncObj, _LOG)
            self._snapshots_sent[node] = (log[1][1], log[1][2])
        snapshot = self._snapshots_sent.get(node)
        return message if snapshot is None else {**message, "snapshot": snapshot}

    def _skip_held_snapshot(self, message: dict[str, Any]) -> dict[str, Any]:
        """Follower: never install a snapshot of entries we already hold.

        Replies we sent before a snapshot arrived still ask for older entries when they reach
        the leader, and the library answers each with the whole snapshot again; installed after
        we caught up past it, it would cut our log below what we acked and rewind the state.
        Raft keeps the log when it holds the snapshot's last entry: the chunks are dropped, and
        the message still counts as the leader's heartbeat, with its commit index capped at the
        snapshot (our entries beyond it are not known to be the leader's).
        """
        chunk = message.get("serialized")
        if chunk is None or "prevLogIdx" in message:
            return message
        if chunk[1]:  # the first chunk decides for the whole transmission
            snapshot = message.get("snapshot")
            self._skipping_snapshot = snapshot is not None and self._holds(*snapshot)
        if not self._skipping_snapshot:
            return message
        if chunk[2]:  # the last chunk
            self._stats.snapshots_skipped += 1
        skipped = {key: value for key, value in message.items() if key != "serialized"}
        skipped["commit_index"] = min(message["commit_index"], message["snapshot"][0])
        return skipped

    def _holds(self, index: int, term: int) -> bool:
        """Whether our log holds the leader's entry (index, term), or compacted past it."""
        log = getattr(self._syncObj, _LOG)
        first, last = log[0][1], log[-1][1]
        if index < first:
            return True
        return bool(index <= last and log[index - first][2] == term)

    def _note_ack(self, message: Any) -> None:
        is_reply = isinstance(message, dict) and message.get("type") == "next_node_idx"
        if is_reply and message.get("success"):
            self._acked = (self._syncObj.raftCurrentTerm, message["next_node_idx"] - 1)

    def _count_acked_log_shrink(self) -> None:
        """Count a log end that fell below an index we acked to this term's leader.

        With the guards this never happens; it is the symptom of the follower log shrink,
        exported so that tests and metrics would catch a regression.
        """
        term, acked_index = self._acked
        log = getattr(self._syncObj, _LOG)
        if term == self._syncObj.raftCurrentTerm and log[-1][1] < acked_index:
            logger.error("log end %d fell below acked index %d", log[-1][1], acked_index)
            self._stats.acked_log_shrinks += 1
            self._acked = (term, log[-1][1])

    # 3. Compaction crash: startup repair, done at the library's own first dump load.

    def _align_journal_at_first_dump_load(self, syncObj: Any) -> None:
        """Wrap the first Serializer.deserialize so the journal is aligned before the load.

        The library loads the dump on its first tick and clears the journal unless it starts
        with the dump's two entries. Aligning inside that same call reads the dump only once,
        at the moment the library would read it anyway.
        """
        dump_file = syncObj.conf.fullDumpFile
        journal = self._journal
        if journal is None or dump_file is None or not os.path.isfile(dump_file):
            return
        serializer = getattr(syncObj, _SERIALIZER)

        def deserialize_and_align() -> Any:
            del serializer.deserialize  # one shot: later loads are snapshot installs
            data = serializer.deserialize()
            if journal.align_to_dump((data[2], data[1])):
                logger.warning("journal compacted at startup to start at the dump (repair)")
                self._stats.startup_repairs += 1
            return data

        serializer.deserialize = deserialize_and_align

    # 5. Quiet start.

    def _start_quietly_if_restarted(self, syncObj: Any) -> None:
        """Use the long election timeout if this node has run before, until it is ready, unless
        a majority of the cluster knows no leader meanwhile (_steer_quiet_start).

        A fresh cluster must elect at once; a restarted node usually finds a live leader within
        one heartbeat, and its campaign (no pre-vote) would only depose it.
        """
        log = getattr(syncObj, _LOG)
        dump_file = syncObj.conf.fullDumpFile
        restarted = (
            len(log) > 1
            or log.getCurrentTerm() > 0
            or (dump_file is not None and os.path.isfile(dump_file))
        )
        if not restarted:
            return
        conf = syncObj.conf
        self._normal_election_timeouts = (conf.raftMinTimeout, conf.raftMaxTimeout)
        self._use_election_timeouts(self._quiet_election_timeouts())
        # The first deadline was drawn with the normal timeouts before this constructor ran.
        setattr(syncObj, _ELECTION_DEADLINE, library_monotonic() + conf.raftMinTimeout)
        self._stats.quiet_starts += 1

    def _steer_quiet_start(self) -> None:
        """Until ready: campaign at the normal pace only while a majority knows no leader.

        The quiet start only guards a live leader. When a majority of the cluster, this node
        included, has no leader and no peer knows one, none can be deposed, and waiting out the
        quiet timeout would only delay the election the cluster needs (every node of a cluster
        restarted at once is quiet). Once a peer knows a leader this node does not hear (it won
        while our connection to it is not up yet: pysyncobj dials again only after 5 s), the
        node is quiet again rather than depose it. The peers are asked every heartbeat period.
        """
        normal = self._normal_election_timeouts
        if normal is None:
            return
        if self._syncObj.isReady():
            self._use_election_timeouts(normal)
            self._normal_election_timeouts = None
            self._leader_replies.clear()
            return
        self._ask_peers_for_a_leader()
        # Only answers younger than one normal election timeout count: an older one may come
        # from a peer that has gone away since, or that has heard a leader since.
        oldest = library_monotonic() - normal[0]
        recent = [
            (known, term) for known, term, at in self._leader_replies.values() if at >= oldest
        ]
        peer_knows_leader = any(known for known, _ in recent)
        if self._knows_leader():
            return  # its heartbeats reset the election deadline, whatever the timeouts
        if self._campaigning_early and peer_knows_leader:
            self._campaigning_early = False
            self._use_election_timeouts(self._quiet_election_timeouts(), draw_deadline=True)
            self._stats.quiet_starts_resumed += 1
            logger.info("quiet start resumed: a peer knows a leader that this node does not hear")
        elif not self._campaigning_early and not peer_knows_leader:
            if (len(recent) + 1) * 2 <= len(self._nodes) + 1:
                return  # no majority known to be without a leader
            self._campaigning_early = True
            self._use_election_timeouts(normal, draw_deadline=True)
            self._stats.quiet_starts_ended_early += 1
            logger.info(
                "quiet start ended early: %d of %d nodes know no leader (peer terms %s)",
                len(recent) + 1,
                len(self._nodes) + 1,
                sorted(term for _, term in recent),
            )

    def _quiet_election_timeouts(self) -> tuple[float, float]:
        hardening = self._hardening
        return hardening.quiet_election_timeout_s_min, hardening.quiet_election_timeout_s_max

    def _use_election_timeouts(
        self, timeouts: tuple[float, float], draw_deadline: bool = False
    ) -> None:
        """Set the election timeouts; with draw_deadline, also the next election deadline (a
        new one drawn from them, as the library would draw it, instead of the one in force)."""
        conf = self._syncObj.conf
        conf.raftMinTimeout, conf.raftMaxTimeout = timeouts
        if draw_deadline:
            deadline = library_monotonic() + getattr(self._syncObj, _GENERATE_TIMEOUT)()
            setattr(self._syncObj, _ELECTION_DEADLINE, deadline)

    def _knows_leader(self) -> bool:
        syncObj = self._syncObj
        return syncObj._getLeader() is not None or getattr(syncObj, _STATE) == _LEADER_STATE

    def _ask_peers_for_a_leader(self) -> None:
        """Send the leader query to every connected peer, once per heartbeat period."""
        now = library_monotonic()
        if now < self._next_leader_query_at:
            return
        self._next_leader_query_at = now + self._syncObj.conf.appendEntriesPeriod
        for node in self._nodes:
            # Connected: past the handshake, so the query is not lost before the peer listens.
            if self._syncObj.isNodeConnected(node):
                self.send(node, {"type": LEADER_QUERY})
                self._stats.leader_queries_sent += 1

    def _answer_leader_query(self, node: Any) -> None:
        reply = {
            "type": LEADER_REPLY,
            "leader_known": self._knows_leader(),
            "term": self._syncObj.raftCurrentTerm,
        }
        self.send(node, reply)
        self._stats.leader_queries_answered += 1

    def _note_leader_reply(self, node: Any, message: dict[str, Any]) -> None:
        # Only the cluster's own voters count toward a majority (not a read-only node), and
        # only until ready: a late answer must not outlive the quiet start it was asked for.
        if self._normal_election_timeouts is not None and node in self._nodes:
            known, term = bool(message["leader_known"]), int(message["term"])
            self._leader_replies[node] = (known, term, library_monotonic())

    # 9. A journal that cannot be written (a full disk): the node stands still until it can.

    @property
    def disk_error(self) -> str | None:
        """Why the journal cannot be written now, or None (read from any thread)."""
        return None if self._journal is None else self._journal.failure

    def _hold_ticks_while_disk_fails(self, syncObj: Any) -> None:
        """While the journal fails, skip the whole tick: no election, no commit, no apply.

        A leader without peers would otherwise commit (and ack) entries that only its memory
        holds; any node would campaign with a term it cannot store. Each skipped tick tries the
        writes again (a failing write costs one system call); once they succeed the node waits
        a quiet election timeout (it has been deaf to its peers) and ticks on. Each skipped tick
        also closes the connections still waiting for their handshake: with no tick, nothing
        else would, and when the write failed for want of descriptors (a flood of strangers on
        the Raft port) the ones they hold are what the journal needs back.
        """
        journal = self._journal
        if journal is None:
            return
        tick = syncObj._onTick

        def tick_unless_disk_fails(timeToWait: float = 0.0) -> None:
            if journal.failure is not None:
                self._drop_outbox(len(self._outbox))
                self._handshakes.close_all()
                if not journal.sync() and journal.failure is not None:
                    time.sleep(timeToWait)  # as the library's own tick waits when not ready
                    return
                quiet = library_monotonic() + self._hardening.quiet_election_timeout_s_min
                setattr(syncObj, _ELECTION_DEADLINE, quiet)
            tick(timeToWait)

        syncObj._onTick = tick_unless_disk_fails

    # 8. Recovery (recovery.py): no vote and no campaign until caught up.

    def _hold_elections_while_recovering(self) -> None:
        """Keep the election deadline ahead while recovering; end recovery once caught up.

        Caught up means ready in pysyncobj's sense: it applied everything up to the commit index
        a leader sent it, which for an emptied log means the leader's snapshot and what follows.
        """
        if not self._recovering or self._journal is None:
            return
        if self._syncObj.isReady():
            self._journal.end_recovery()
            self._recovering = False
            logger.warning("recovery: caught up with the leader; voting and campaigning again")
            return
        hold = library_monotonic() + self._hardening.quiet_election_timeout_s_max
        setattr(self._syncObj, _ELECTION_DEADLINE, hold)

    # 6. The frame cap, on every connection in both directions.

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        connection = self._connections.get(node)
        if connection is not None:
            self._cap_frames(connection, self._hardening.frame_bytes_max)

    def _cap_frames(self, connection: Any, frame_bytes_max: int) -> None:
        connection.__class__ = CappedConnection
        connection.frame_bytes_max = frame_bytes_max
        connection.stats = self._stats

    # 7. The port against strangers.

    def _createServer(self) -> None:
        """Bind the host of our own address (or of bindAddress), never every interface.

        pysyncobj binds 0.0.0.0 (or ::) whenever bindAddress is unset, whatever host the node's
        address names: the port would be open on every interface of the machine.
        """
        conf = self._syncObj.conf
        host, port = (conf.bindAddress or self._selfNode.address).rsplit(":", 1)
        self._server = GuardedServer(
            self._syncObj._poller,
            globalDnsResolver().resolve(host),
            port,
            onNewConnection=self._onNewIncomingConnection,
            sendBufferSize=conf.sendBufferSize,
            recvBufferSize=conf.recvBufferSize,
            connectionTimeout=conf.connectionTimeout,
            stats=self._stats,
            accept_pause_s=self._hardening.accept_pause_s,
        )

    def _onNewIncomingConnection(self, conn: Any) -> None:
        self._cap_frames(conn, self._hardening.handshake_frame_bytes_max)
        super()._onNewIncomingConnection(conn)
        self._handshakes.arrived(conn)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        """The library's handshake; a connection it has given a node to has authenticated.

        Its first message (the key exchange) and its second (the node address) only decrypt
        with the cluster secret; the library then moves it out of its unknown connections.
        """
        super()._onIncomingMessageReceived(conn, message)
        authenticated = conn not in self._unknownConnections
        if authenticated and conn.state != CONNECTION_STATE.DISCONNECTED:
            self._handshakes.forget(conn)
            conn.frame_bytes_max = self._hardening.frame_bytes_max

    def _onDisconnected(self, conn: Any) -> None:
        self._handshakes.forget(conn)
        node = self._connToNode(conn)
        super()._onDisconnected(conn)
        if node is not None:
            self._campaign_soon_if_leader_lost(node)

    # 10. A leader whose connection closes.

    def _campaign_soon_if_leader_lost(self, node: Any) -> None:
        """Bring the election deadline forward when the connection to our leader has closed.

        Only a follower that is caught up and neither quiet nor recovering: those hold their
        elections back on purpose. If the leader lives on (the close was the network's), its
        next AppendEntries over the connection the library dials again resets the deadline; if
        it comes too late, the leader is deposed once, as an election timeout would have.
        """
        syncObj = self._syncObj
        leader = syncObj._getLeader()
        # A candidate's vote request that arrived first has made us forget the leader already.
        if leader is None:
            leader = self._leader_followed
        if (
            node != leader
            or getattr(syncObj, _STATE) == _LEADER_STATE
            or self._recovering
            or self._normal_election_timeouts is not None
            or not syncObj.isReady()
        ):
            return
        hardening = self._hardening
        delay = random.uniform(
            hardening.leader_lost_election_s_min, hardening.leader_lost_election_s_max
        )
        deadline = library_monotonic() + delay
        if deadline < getattr(syncObj, _ELECTION_DEADLINE):
            setattr(syncObj, _ELECTION_DEADLINE, deadline)
            self._stats.leader_lost_campaigns += 1
            logger.info("connection to the leader %s closed: campaigning in %.2f s", node, delay)

    def _guard_port(self) -> None:
        self._handshakes.close_expired()
        if self._server is not None:  # None on a read-only node, which has no port
            self._server.resume_if_due()

    def _connectIfNecessarySingle(self, node: Any) -> bool:
        """Dial a peer; out of descriptors, fail this attempt only (the library would raise
        out of the tick, cutting short everything after it: the flush of the outbox too)."""
        try:
            return bool(super()._connectIfNecessarySingle(node))
        except OSError as error:
            logger.warning("cannot dial %s now (%s); trying again later", node.address, error)
            return False
