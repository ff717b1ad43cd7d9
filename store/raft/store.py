"""RaftStore: a StateMachine replicated by pysyncobj, driven from asyncio.

The store is generic: it replicates opaque commands (bytes) into a StateMachine and knows
nothing of jobs. Its parts, one file each in this package:

- config.py     RaftConfig, RaftTuning and the checked SyncObjConf (journal, dump, secret, timings);
- entry.py      the payload of one entry: a batch, a chunk of a large command, a barrier;
- chunks.py     deterministic reassembly of large commands (entries stay < 32 KiB);
- state.py      StateMachine protocol; apply of one entry, never raising;
- dump.py       msgpack snapshots written by a forked, watched child, durably;
- bridge.py     the SyncObj subclass, FAIL_REASON -> error mapping, crossing to the loop;
- batcher.py    application-level batching and the in-flight bound, on the loop;
- transport.py  the hardened transport (docs/raft.md): not here;
- port.py       the Raft port's guards against strangers, installed by the transport.

Threads: pysyncobj's tick thread applies entries; everything public here is called on the
event loop, never blocks on the tick thread, and receives results through
`loop.call_soon_threadsafe`, so subscribers see applied commands in log order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from pysyncobj import FAIL_REASON, SyncObjException
from pysyncobj.node import TCPNode

from store.clock import Clock, SystemClock
from store.errors import OutcomeUnknown, Unavailable
from store.log import Applied, LogStatus, Restored, Role, Subscriber
from store.private_files import make_private_directory, restrict_umask, tighten_files
from store.raft import batcher as raft_batcher
from store.raft import disk, recovery
from store.raft import dump as raft_dump
from store.raft.batcher import Batcher
from store.raft.bridge import CrossToLoop, ReplicatedNode, failure_error
from store.raft.config import DUMP_FILE_NAME, JOURNAL_FILE_NAME, RaftConfig, syncobj_conf
from store.raft.dump import ForkingDump
from store.raft.entry import PROPOSER_ID_BYTES, RaftEntryTuple
from store.raft.port import raise_open_files_limit
from store.raft.state import EntryApplied, ReplicatedState, StateMachine
from store.raft.transport import TransportStats
from store.supervision import HealthBoard

log = logging.getLogger(__name__)

# pysyncobj's _RAFT_STATE values.
_ROLES = {0: Role.FOLLOWER, 1: Role.CANDIDATE, 2: Role.LEADER}
# The status snapshot is rebuilt on the tick thread at most this often.
_STATUS_REFRESH_S = 0.02
# How long stop() lets a running dump child finish before killing it.
_DUMP_CHILD_STOP_S_MAX = 10.0


@dataclass(frozen=True, kw_only=True)
class RaftStatus(LogStatus):
    """The log's status plus what only the Raft store counts: its batching (read on the loop
    when asked, so they default to 0 in the tick thread's snapshot) and its transport's work
    (journal syncs, log-shrink guards, compaction repairs)."""

    transport: TransportStats
    # Why the journal cannot be written now (a full disk); the node stands still meanwhile.
    disk_error: str | None = None
    entries_proposed: int = 0
    commands_proposed: int = 0
    entry_bytes_largest: int = 0
    queued_commands: int = 0
    entries_in_flight: int = 0


def _stopped_status() -> RaftStatus:
    """The status of a store not started, not yet ticked once, or stopped."""
    return RaftStatus(
        role=Role.STOPPED,
        leader=None,
        term=0,
        commit_index=0,
        applied_index=0,
        log_entries=0,
        has_quorum=False,
        ready=False,
        members=(),
        reachable=frozenset(),
        snapshot_index=0,
        snapshot_wall_ms=0,
        chunk_assemblies=0,
        leader_changes=0,
        transport=TransportStats(),
    )


class RaftStore:
    def __init__(
        self,
        config: RaftConfig,
        machine: StateMachine,
        clock: Clock | None = None,
        health: HealthBoard | None = None,
    ):
        config.validate()
        self._config = config
        self._clock = clock or SystemClock()
        # Where the batcher's flush and the dump hooks report their crashes (supervision.py).
        self.health = health or HealthBoard(self._clock)
        self._state = ReplicatedState(machine, config.tuning.chunk_assembly_entries_max)
        self._dump = ForkingDump(
            config.dump_file,
            self._state,
            self._clock,
            seconds_max=config.tuning.dump_seconds_max,
            retry_seconds=config.tuning.dump_retry_seconds,
            guard=self.health.guard(raft_dump.TASK, raft_dump.log),
        )
        self._subscribers: list[Subscriber] = []
        self._node: ReplicatedNode | None = None
        self._batcher: Batcher | None = None
        self._cross: CrossToLoop | None = None
        self._ready = asyncio.Event()
        self._status = _stopped_status()
        self._status_refreshed_at = float("-inf")
        # Written on the tick thread only (by _refresh_status).
        self._last_leader: str | None = None
        self._leader_changes = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the node (binds its port, replays its journal); call on the event loop."""
        assert self._node is None, "a RaftStore starts once"
        loop = asyncio.get_running_loop()
        self._make_files_private()
        disk.record_from_environment(self._config.data_dir, (JOURNAL_FILE_NAME, DUMP_FILE_NAME))
        if self._config.recover:
            recovery.discard_local_state(self._config)
        raise_open_files_limit()
        cross = self._cross = CrossToLoop(loop)
        conf = syncobj_conf(
            self._config,
            serializer=self._dump.serialize,
            deserializer=self._restore,
            serializeChecker=self._dump.check,
            onReady=lambda: cross(self._ready.set),
        )
        node = ReplicatedNode(
            self._config.self_address,
            self._config.peer_addresses,
            conf,
            self._state,
            self._on_applied,
            self._config.tuning.hardening,
        )
        node.addOnTickCallback(self._refresh_status)
        node.addOnTickCallback(lambda: node.handover.tick(node))
        self._node = node
        self._batcher = Batcher(
            loop=loop,
            submit=lambda entry, on_done: node.submit(entry, on_done, cross),
            proposer=os.urandom(PROPOSER_ID_BYTES),
            config=self._config.tuning,
            guard=self.health.guard(raft_batcher.TASK, raft_batcher.log),
        )

    def _make_files_private(self) -> None:
        """The data directory 0700, our files in it 0600 (an older version left them 0644), and
        every file created from now on 0600: pysyncobj creates its own with plain open()."""
        restrict_umask()
        make_private_directory(self._config.data_dir)
        tighten_files(self._config.data_dir, (JOURNAL_FILE_NAME, DUMP_FILE_NAME))

    async def stop(self) -> None:
        """Fail waiting callers, stop the tick thread and close journal and sockets."""
        node, batcher = self._node, self._batcher
        if node is None or batcher is None:
            return
        batcher.close()
        # The tick thread leaves its poll within one tick period: joining it is short.
        await asyncio.to_thread(node.destroy_synchronous)
        await asyncio.to_thread(self._dump.finish, _DUMP_CHILD_STOP_S_MAX)
        self._status = _stopped_status()
        self._node = None

    async def wait_bound(self) -> None:
        """Return once the Raft port is bound; else stop the store and raise Unavailable.

        A node whose Raft port is taken would otherwise serve HTTP forever with no Raft peer:
        it dials no one until bound, so it never learns the leader (nor rejoins after a restart).
        """
        node = self._node
        assert node is not None, "the store is not started"
        try:
            await asyncio.to_thread(node.waitBinded)
        except SyncObjException:
            await self.stop()
            raise Unavailable(
                f"could not bind the Raft port {self._config.self_address} in "
                f"{self._config.tuning.bind_attempts_max} attempts (is another socket using it?)"
            ) from None

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until this node has caught up with the leader's commit index once."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise Unavailable(f"the Raft node was not ready within {timeout_s} s") from None

    # -- writes and reads ------------------------------------------------------------------

    async def propose(self, command: bytes, timeout_s: float) -> object:
        """Replicate one command; its result as returned by apply_command on this node.

        Raises Unavailable when the command certainly was not applied (no leader, queue full,
        not started, or not yet proposed at the timeout) and OutcomeUnknown when it may have
        been (leadership lost after it left, or no apply within the timeout).
        """
        batcher = self._running_batcher()
        if self._status.leader is None:
            raise Unavailable("no Raft leader known to this node")
        if self.disk_error is not None:
            raise Unavailable(f"this node cannot write its Raft journal ({self.disk_error})")
        proposal = batcher.enqueue(command)
        try:
            return await asyncio.wait_for(proposal.future, timeout_s)
        except TimeoutError:
            if batcher.withdraw(proposal):
                raise Unavailable(f"not proposed within {timeout_s} s") from None
            raise OutcomeUnknown(f"not applied within {timeout_s} s; it may still be") from None

    async def barrier(self, timeout_s: float) -> None:
        """Return once this node has applied every write acknowledged before the call.

        One entry goes through the log for all the barriers waiting at that moment (it is the
        next batch of commands, or a no-op when there is none).
        """
        barrier = self._running_batcher().add_barrier()
        try:
            await asyncio.wait_for(barrier, timeout_s)
        except TimeoutError:
            raise Unavailable(f"barrier not confirmed within {timeout_s} s") from None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call subscriber(applied) on the loop for every command applied on this node, in log
        order (including the replay of the journal at start). Returns the unsubscribe call."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def add_member(self, address: str, timeout_s: float) -> None:
        """Add the node at raft `address` to the Raft cluster (one change at a time)."""
        await self._change_membership("add", address, timeout_s)

    async def remove_member(self, address: str, timeout_s: float) -> None:
        """Remove the node at raft `address` from the Raft cluster."""
        await self._change_membership("remove", address, timeout_s)

    def cluster_addresses(self) -> frozenset[str]:
        """The raft addresses of every member of the Raft cluster as this node knows it."""
        return frozenset(self._status.members)

    def transfer_leadership(self) -> None:
        """Hand leadership to the most caught-up follower, if this node leads (Raft's transfer,
        store/raft/handover.py); best effort: a leader that stays asks again on its next beat."""
        node = self._node
        if node is not None:
            node.handover.ask()

    async def _change_membership(self, action: str, address: str, timeout_s: float) -> None:
        node, cross = self._node, self._cross
        if node is None or cross is None:
            raise Unavailable("the Raft store is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(reason: int) -> None:
            if done.done():
                return
            if reason == FAIL_REASON.SUCCESS:
                done.set_result(None)
            else:
                done.set_exception(failure_error(reason))

        def callback(_result: object, reason: int) -> None:
            # On the tick thread; never raise here: pysyncobj would apply the entry twice.
            try:
                cross(settle, reason)
            except Exception:
                log.exception("membership callback failed")

        change = node.addNodeToCluster if action == "add" else node.removeNodeFromCluster
        change(address, callback=callback)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout_s)
        except TimeoutError:
            raise OutcomeUnknown(f"{action} {address} not confirmed within {timeout_s} s") from None

    def force_compaction(self) -> None:
        """Ask for a snapshot and log compaction at the next tick, whatever the thresholds."""
        assert self._node is not None, "the store is not started"
        self._node.forceLogCompaction()

    # -- status ----------------------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        """Caught up with a leader once (its journal replayed, the leader's commit applied)."""
        return self._ready.is_set()

    @property
    def ready(self) -> bool:
        """Caught up with a leader once, and able to write its journal now."""
        return self.caught_up and self.disk_error is None

    @property
    def disk_error(self) -> str | None:
        """Why this node cannot write its journal now (a full disk), or None."""
        return None if self._node is None else self._node.disk_error()

    def status(self) -> RaftStatus:
        """The tick thread's snapshot (refreshed every 20 ms) with the batching counters now."""
        batcher, node = self._batcher, self._node
        if batcher is None or node is None:
            return self._status
        status = self._status
        if self.disk_error is not None:
            # The tick thread stands still and refreshes nothing: report the failure from here.
            status = replace(
                status, ready=False, disk_error=self.disk_error, transport=node.transport_stats()
            )
        return replace(
            status,
            entries_proposed=batcher.counters.entries,
            commands_proposed=batcher.counters.commands,
            entry_bytes_largest=batcher.counters.entry_bytes_largest,
            queued_commands=batcher.queued,
            entries_in_flight=batcher.in_flight,
        )

    def _refresh_status(self) -> None:
        # On the tick thread, the only thread that may read pysyncobj's state safely.
        now = self._clock.monotonic()
        node = self._node
        if node is None or now - self._status_refreshed_at < _STATUS_REFRESH_S:
            return
        self._status_refreshed_at = now
        raw = node.getStatus()
        leader = raw["leader"]
        if leader is not None and str(leader) != self._last_leader:
            self._last_leader = str(leader)
            self._leader_changes += 1
        self._status = RaftStatus(
            role=_ROLES[raw["state"]],
            leader=None if leader is None else str(leader),
            term=raw["raft_term"],
            commit_index=raw["commit_idx"],
            applied_index=raw["last_applied"],
            log_entries=raw["log_len"],
            has_quorum=bool(raw["has_quorum"]),
            ready=bool(node.isReady()),
            members=tuple(sorted([str(m) for m in node.otherNodes] + [self._config.self_address])),
            reachable=frozenset(str(m) for m in node.otherNodes if node.isNodeConnected(m)),
            snapshot_index=self._dump.last_index,
            snapshot_wall_ms=self._dump.last_wall_ms,
            chunk_assemblies=self._state.pending_assemblies,
            leader_changes=self._leader_changes,
            transport=node.transport_stats(),
        )

    # -- internals -------------------------------------------------------------------------

    def _running_batcher(self) -> Batcher:
        if self._batcher is None or self._node is None:
            raise Unavailable("the Raft store is not running")
        return self._batcher

    def _restore(self, path: str) -> tuple[RaftEntryTuple, RaftEntryTuple, set[TCPNode]]:
        # On the tick thread: pysyncobj's deserializer hook, at start (this node's own dump) and
        # whenever the leader sends its dump to a replica too far behind for its log. The
        # subscribers hear of it in log order with the commands.
        restored = self._dump.deserialize(path)
        if self._cross is not None:
            event = Applied(self._dump.last_index, b"", Restored())
            self._cross(self._publish, (event,))
        return restored

    def _on_applied(self, outcome: EntryApplied) -> None:
        # On the tick thread: hand the applied commands to the loop, in log order.
        if outcome.events and self._cross is not None:
            self._cross(self._publish, outcome.events)

    def _publish(self, events: tuple[Applied, ...]) -> None:
        for event in events:
            for subscriber in tuple(self._subscribers):
                try:
                    subscriber(event)
                except Exception:
                    log.exception("subscriber %r failed on index %d", subscriber, event.index)
