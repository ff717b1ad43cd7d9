"""Handing leadership on, as Raft describes it (the thesis, 3.10): the leader stops appending
new entries, lets a follower catch up with its whole log, and tells it to campaign at once
(TimeoutNow); if the follower has not won within an election timeout, the leader appends again.

pysyncobj has TimeoutNow (`transferLeadership`) but keeps appending meanwhile. It sends only to
a follower that holds the leader's whole log and refuses otherwise, which is most of the time
while entries keep coming (the caller's own heartbeat among them); and an entry appended after
the TimeoutNow left makes the follower's log the shorter one, so the other members refuse it
their votes and the old leader wins again. Holding the appends closes both.

Everything here runs on pysyncobj's tick thread but `ask`, which only sets a flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON
from pysyncobj.monotonic import monotonic as library_monotonic

log = logging.getLogger(__name__)


class Handover:
    """One node's leadership transfer in progress, if any."""

    def __init__(self, now: Callable[[], float] = library_monotonic) -> None:
        # The library's monotonic clock, which its ticks and timeouts read.
        self._now = now
        # Set on the event loop, read and cleared on the tick thread: a bool's store is atomic.
        self._asked = False
        # Since when (the library's monotonic clock) new entries wait, or None.
        self._holding_since: float | None = None
        self._sent = False

    def ask(self) -> None:
        """Hand leadership on if this node leads (from any thread). Best effort: a leader that
        cannot hands on nothing, and appends again after an election timeout."""
        self._asked = True

    def holds_appends(self) -> bool:
        """Whether a leader's new entries must wait (the follower is catching up, or has been
        told to campaign)."""
        return self._holding_since is not None

    def tick(self, node: Any) -> None:
        """Move the transfer on: called by the node on each tick, after its commands."""
        if not node._isLeader():
            if self._holding_since is not None and self._sent:
                elapsed = self._now() - self._holding_since
                log.info("leadership handed on in %.3f s", elapsed)
            self._reset()
            return
        now = self._now()
        if self._holding_since is None:
            if not self._asked:
                return
            self._asked = False
            if not any(map(node.isNodeConnected, node.otherNodes)):
                return  # no follower to hand to: holding the entries would only stall them
            self._holding_since = now
        if now - self._holding_since > node.conf.raftMinTimeout:
            log.warning(
                "leadership transfer not done within %.1f s (%s): leading on",
                node.conf.raftMinTimeout,
                "no follower won" if self._sent else "no follower caught up",
            )
            self._reset()
            return
        if self._sent:
            return
        outcome: list[int] = []
        node.transferLeadership(callback=lambda _result, reason: outcome.append(reason))
        if outcome == [FAIL_REASON.SUCCESS]:
            self._sent = True
        elif outcome != [FAIL_REASON.REQUEST_DENIED]:
            self._reset()
        # Denied: no connected follower holds the whole log yet; it will, appends being held.

    def _reset(self) -> None:
        self._asked = False
        self._holding_since = None
        self._sent = False
