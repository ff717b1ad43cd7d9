"""The replicated log as the node sees it: the seam between the node and its replication.

The trigger engine, the ack batcher and membership need only this of the Raft store: propose a
command and learn its result (or that it certainly did not, or perhaps did, apply), wait until
this replica has applied what was acknowledged before, hear every applied command in log order,
and read its status (role, leader, indexes, members). `store.raft.RaftStore` is the production
log; a test can put an in-memory log with the same contract in its place, so the node's logic
runs unchanged against a log whose faults and timing a seed decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class Applied:
    """One command applied at log index `index` (several commands share an index in a batch)."""

    index: int
    command: bytes
    result: object


@dataclass(frozen=True)
class Restored:
    """The result of the event published when this replica's state was replaced by a snapshot
    (a lagging replica installs its leader's; a restarting one loads its own). No command's
    changes say what differs: a subscriber reads again everything it keeps from the state."""


Subscriber = Callable[[Applied], None]


class Role(StrEnum):
    """What this replica is in its replication group; STOPPED until it first runs, and after."""

    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class LogStatus:
    """One replica's view of its replication group, as of its last refresh."""

    role: Role
    # The leader's replication address, or None while this replica knows no leader.
    leader: str | None
    term: int
    commit_index: int
    applied_index: int
    # Entries held in the log since its last compaction.
    log_entries: int
    has_quorum: bool
    # Caught up with the committed log at least once.
    ready: bool
    # The replication addresses of every member, this replica's own included, sorted.
    members: tuple[str, ...]
    # The other members' replication addresses this replica holds a live connection to.
    reachable: frozenset[str]
    # The log index of the last snapshot this replica wrote or loaded, and the wall time (ms)
    # at which it last wrote one (0 before its first).
    snapshot_index: int
    snapshot_wall_ms: int
    # Large commands whose chunks are only partly applied.
    chunk_assemblies: int
    # Changes of leader this replica has seen since it started.
    leader_changes: int


# How long a proposal waits to apply unless its caller is configured otherwise: a node's one
# propose timeout (node/config.py) starts from it, and so does a trigger engine run on its own.
PROPOSE_TIMEOUT_S_DEFAULT = 5.0

__all__ = [
    "PROPOSE_TIMEOUT_S_DEFAULT",
    "Applied",
    "LogStatus",
    "ReplicatedLog",
    "Restored",
    "Role",
    "Subscriber",
]


class ReplicatedLog(Protocol):
    """One replica of the command log, used from the event loop only."""

    @property
    def caught_up(self) -> bool:
        """True once this replica has caught up with the committed log (and from then on): what
        it applied before was a replay of the past."""
        ...

    @property
    def ready(self) -> bool:
        """True while this replica has caught up once and can take writes now."""
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

    def status(self) -> LogStatus:
        """This replica's role, leader, indexes and members; a snapshot, never updated."""
        ...

    def cluster_addresses(self) -> frozenset[str]:
        """The raft addresses of every member of the replication group."""
        ...

    def transfer_leadership(self) -> None:
        """Best effort: if this replica leads, hand leadership to another member."""
        ...
