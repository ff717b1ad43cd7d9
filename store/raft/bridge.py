"""The pysyncobj side of the store: the SyncObj subclass and the crossing to the event loop.

Everything here runs on pysyncobj's tick thread except `submit`, which only enqueues. Results
reach the loop through `loop.call_soon_threadsafe`, which keeps their order. Nothing raised
here may reach pysyncobj: an exception in a replicated method stalls the cluster, one in
a callback makes the leader apply the entry twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

from store.errors import OutcomeUnknown, TockError, Unavailable
from store.raft import journal
from store.raft.handover import Handover
from store.raft.state import EntryApplied, ReplicatedState
from store.raft.transport import HardenedTransport, HardeningConfig, TransportStats

log = logging.getLogger(__name__)

# Failures after which the entry certainly was not and will not be applied: it never reached
# a leader's log (queue full, no leader, not the leader, denied), or another entry took its
# index for good (discarded).
_NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL: "pysyncobj's command queue is full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.NOT_LEADER: "the node it was sent to is no longer the leader",
    FAIL_REASON.REQUEST_DENIED: "request denied",
    FAIL_REASON.DISCARDED: "a new leader replaced it in the log",
}
# Failures after which it may still be applied: it may sit in a leader's log unacknowledged.
_MAY_APPLY = {
    FAIL_REASON.LEADER_CHANGED: "the leader changed before acknowledging it",
    FAIL_REASON.UNKNOWN_OUTCOME: "pysyncobj lost track of it",
}

EntryCallback = Callable[[EntryApplied | None, int], None]


def failure_error(reason: int) -> TockError:
    """The store error for a pysyncobj FAIL_REASON other than SUCCESS."""
    assert reason != FAIL_REASON.SUCCESS
    if reason in _NOT_APPLIED:
        return Unavailable(f"not applied: {_NOT_APPLIED[reason]}")
    return OutcomeUnknown(f"may or may not be applied: {_MAY_APPLY.get(reason, reason)}")


class CrossToLoop:
    """Hands calls from the tick thread to the event loop, in order; never raises.

    Calls wait in a list that one loop callback drains, so a tick that applies several entries
    (each crossing twice: its events and its proposer's result) wakes the loop once. Every
    `call_soon_threadsafe` is a wake-up syscall made while holding the GIL: one per call took
    about 5% of the nodes' GIL-holding samples under create load (py-spy --gil). The list holds
    only calls made since the last drain was scheduled, which the entries in flight bound.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._calls: list[tuple[Callable[..., None], tuple[object, ...]]] = []

    def __call__(self, fn: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._calls.append((fn, args))
            if len(self._calls) > 1:
                return  # the drain scheduled for the first call runs this one too
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            # The loop is closed: the store is shutting down and nobody waits any more.
            with self._lock:
                self._calls.clear()
            log.debug("event loop closed; dropped %s", fn)

    def _drain(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                # As the loop's own handler would: one failing call must not drop the rest.
                log.exception("call %r crossed from the tick thread failed", fn)


class ReplicatedNode(SyncObj):  # type: ignore[misc]
    """The SyncObj: one replicated method, applying one entry to the ReplicatedState.

    Its own attributes are set before SyncObj.__init__, which records the attribute names that
    exist then and treats any later one as snapshot state (the stock dump pickles them).
    """

    def __init__(
        self,
        self_address: str,
        peer_addresses: tuple[str, ...],
        conf: SyncObjConf,
        state: ReplicatedState,
        on_applied: Callable[[EntryApplied], None],
        hardening: HardeningConfig,
    ) -> None:
        self._tock_state = state
        self._tock_on_applied = on_applied
        self.handover = Handover()
        # HardenedTransport reads its knobs here while SyncObj.__init__ builds it.
        self.hardening = hardening
        journal.install()
        super().__init__(
            self_address, list(peer_addresses), conf=conf, transportClass=HardenedTransport
        )

    def _checkCommandsToApply(self) -> None:
        """Append (or forward to the leader) the commands queued, unless a leadership transfer
        holds them: they wait, and go to the next leader once there is one."""
        if not self.handover.holds_appends():
            super()._checkCommandsToApply()

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> EntryApplied:
        # pysyncobj advances raftLastApplied after this returns: the entry's index is one more.
        index = int(self.raftLastApplied) + 1
        try:
            outcome = self._tock_state.apply_entry(index, data)
        except Exception:
            log.exception("apply_entry raised at index %d (a bug; nothing applied)", index)
            return EntryApplied(index, (), failure="the store failed to apply the entry")
        try:
            self._tock_on_applied(outcome)
        except Exception:
            log.exception("on_applied raised at index %d", index)
        return outcome

    def submit(self, data: bytes, on_done: EntryCallback, cross: CrossToLoop) -> None:
        """Propose one entry; on_done(outcome, reason) later runs on the loop. Never blocks."""

        def callback(outcome: Any, reason: int) -> None:
            try:
                cross(on_done, outcome, reason)
            except Exception:
                log.exception("entry callback failed")

        self.apply_entry(data, callback=callback)

    def disk_error(self) -> str | None:
        """Why this node cannot write its journal now (a full disk), or None."""
        transport: HardenedTransport = self._SyncObj__transport
        return transport.disk_error

    def transport_stats(self) -> TransportStats:
        """What the hardened transport did so far (group commits, guards, repairs)."""
        transport: HardenedTransport = self._SyncObj__transport
        return transport.stats()
