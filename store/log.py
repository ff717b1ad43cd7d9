"""The replicated log as the node sees it: the seam between the node and its replication.

The trigger engine, the ack batcher and membership need only this of the Raft store: propose a
command and learn its result (or that it certainly did not, or perhaps did, apply), wait until
this replica has applied what was acknowledged before, hear every applied command in log order,
and read the role, leader and members. `store.raft.RaftStore` is the production log; a test can
put an in-memory log with the same contract in its place, so the node's logic runs unchanged
against a log whose faults and timing a seed decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Applied:
    """One command applied at log index `index` (several commands share an index in a batch)."""

    index: int
    command: bytes
    result: object


Subscriber = Callable[[Applied], None]

# How long a proposal waits to apply unless its caller is configured otherwise: a node's one
# propose timeout (node/config.py) starts from it, and so does a trigger engine run on its own.
PROPOSE_TIMEOUT_S_DEFAULT = 5.0

__all__ = ["PROPOSE_TIMEOUT_S_DEFAULT", "Applied", "ReplicatedLog", "Subscriber"]


class ReplicatedLog(Protocol):
    """One replica of the command log, used from the event loop only."""

    @property
    def ready(self) -> bool:
        """True once this replica has caught up with the committed log at least once."""
        ...

    async def propose(self, command: bytes, timeout_s: float) -> object:
        """Replicate one command; its result as this replica's machine returned it.

        Raises store.errors.Unavailable when the command certainly was not applied and
        store.errors.OutcomeUnknown when it may have been, or may still be."""
        ...

    async def barrier(self, timeout_s: float) -> None:
        """Return once this replica has applied every write acknowledged before the call."""
        ...

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call subscriber(applied) on the loop for every command this replica applies, in log
        order; returns the call that unsubscribes."""
        ...

    def status(self) -> dict[str, object]:
        """At least "role" ("leader", "follower", ...) and "leader" (an address, or None)."""
        ...

    def cluster_addresses(self) -> frozenset[str]:
        """The raft addresses of every member of the replication group."""
        ...
