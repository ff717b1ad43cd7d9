"""RaftStore is a ReplicatedLog: the node's parts take any log, the production one included."""

from __future__ import annotations

from store.log import ReplicatedLog
from store.raft.store import RaftStore


def as_log(store: RaftStore) -> ReplicatedLog:
    # mypy --strict checks this assignment: a RaftStore missing any part of the protocol, or
    # with another signature, fails the type check rather than a simulation.
    return store


def test_raft_store_is_a_replicated_log() -> None:
    members = {name for name in dir(ReplicatedLog) if not name.startswith("_")}
    assert members <= set(dir(RaftStore))
    assert as_log is not None
