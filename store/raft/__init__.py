"""The replicated log on pysyncobj: RaftStore implements store.log.ReplicatedLog.

config (RaftConfig, RaftTuning and the checked SyncObjConf), entry (the payload of one entry),
chunks (large commands across entries), state (applying entries, never raising), dump (msgpack
snapshots in a watched child), bridge (the SyncObj subclass and the crossing to the event loop),
batcher (application-level batching), transport (the hardened transport: docs/raft.md), store
(RaftStore).
"""

from store.raft.config import RaftConfig, RaftTuning
from store.raft.store import RaftStore

__all__ = ["RaftConfig", "RaftStore", "RaftTuning"]
