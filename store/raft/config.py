"""The Raft store's configuration, validated, and its translation to pysyncobj.

`RaftTuning` holds every knob of the store; a node keeps it in its configuration tree
(node/config.py). `RaftConfig` is what one store is given: the node's place in the cluster (its
address, its peers', its data directory and the cluster secret, which the node owns and passes on)
and that tuning.

pysyncobj silently ignores SyncObjConf keys it does not know, so a typo there is a setting that
never took effect. `syncobj_conf` builds the SyncObjConf through `checked_syncobj_conf`, which
rejects any key that is not a real SyncObjConf attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysyncobj import SyncObjConf

from store.errors import ValidationError
from store.raft.journal import RECOVERING_SUFFIX
from store.raft.transport import HardeningConfig

# pysyncobj sends entries of 64 KiB or more through a chunked path that corrupts them.
# Every entry we create stays below this ceiling, pysyncobj's own framing included.
ENTRY_BYTES_CEILING = 32 * 1024
# What pysyncobj wraps around our payload (command type byte, pickled call tuple), with margin.
SYNCOBJ_ENTRY_OVERHEAD_BYTES = 256

JOURNAL_FILE_NAME = "raft.journal"
DUMP_FILE_NAME = "raft.dump"
# pysyncobj derives its message key from the secret with a fixed salt: only a long random secret
# keeps the key out of reach of a guess (`tock up` generates 32 random bytes, as text).
SECRET_BYTES_MIN = 32
# Hosts that name every interface: a node's address is where its peers reach it, and its port is
# bound on that host only.
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, kw_only=True)
class RaftTuning:
    """Every knob of one node's Raft store. Durations carry their unit last (`_s`, `_ms`)."""

    election_timeout_s_min: float = 0.4
    election_timeout_s_max: float = 1.4
    # The heartbeat period; with appendEntriesUseBatch off, entries are sent at once anyway.
    append_entries_period_s: float = 0.1
    # A leader cut off from the majority steps down after this long (pysyncobj default: 30 s).
    leader_fallback_timeout_s: float = 3.0
    # An idle peer connection must never be timed out, or the first post-failover vote is
    # lost on a dead socket. TCP keepalive still detects dead peers.
    connection_timeout_s: float = 1e6
    # After a failed dial, the next attempt to reach that peer waits this long (pysyncobj: 5 s).
    # A node that dialed a peer before it listened (a restart of several nodes) would otherwise
    # stay cut off from it for 5 s; dialing a dead port on the next attempt costs one refused
    # connection.
    connection_retry_s: float = 0.5
    tick_period_s: float = 0.05
    # The Raft port is tried once a second this many times, then the node gives up (start fails).
    # Any process's outgoing connection may hold the port of a crashed node (an ephemeral port,
    # or its TIME_WAIT for 60 s); the library would retry forever without a word, leaving a node
    # that serves HTTP but can reach no peer and is reached by none.
    bind_attempts_max: int = 30
    log_compaction_entries_min: int = 5000
    log_compaction_interval_s_min: float = 300.0
    # Entries waiting in pysyncobj's own queue (ours are bounded by entries_in_flight_max).
    syncobj_queue_entries_max: int = 10_000
    # Application-level batching: commands proposed within the window travel as one entry.
    batch_window_ms: float = 2.0
    batch_commands_max: int = 50
    # Wire bytes of one entry's payload (bytes >= 0x80 count twice: pysyncobj's pickle
    # protocol 2 sends bytes as UTF-8 text). Larger commands travel as chunks.
    batch_bytes_max: int = 30 * 1024
    # Entries proposed by this node and not yet applied (the hardening reference measured 16).
    entries_in_flight_max: int = 16
    # Commands accepted by propose() and not yet applied; beyond it propose() is Unavailable.
    pending_commands_max: int = 100_000
    # The bytes of those commands that have not left for the log yet: without it, a burst of
    # large commands could hold gigabytes in the queue before the count bound bites.
    pending_bytes_max: int = 256 * 1024 * 1024
    command_bytes_max: int = 16 * 1024 * 1024
    # An incomplete chunk assembly is dropped this many log entries after it started.
    chunk_assembly_entries_max: int = 100_000
    # A dump child still running after this long is killed and the dump counts as failed.
    dump_seconds_max: float = 600.0
    # After a failed dump, the next attempt waits this long (a failing dump must not fork-loop).
    dump_retry_seconds: float = 5.0
    # The transport's own knobs (a restarted node's quiet elections, the frame cap).
    hardening: HardeningConfig = field(default_factory=HardeningConfig)

    def validate(self) -> None:
        """Raise ValidationError on a setting that cannot work; run before starting a node."""
        self._validate_timing()
        self._validate_limits()
        self.hardening.validate()

    def _validate_timing(self) -> None:
        if not 0 < self.append_entries_period_s * 3 < self.election_timeout_s_min:
            raise ValidationError("election_timeout_s_min must exceed 3 heartbeat periods")
        if self.election_timeout_s_max <= self.election_timeout_s_min:
            raise ValidationError("election_timeout_s_max must exceed election_timeout_s_min")
        if self.leader_fallback_timeout_s <= self.append_entries_period_s:
            raise ValidationError("leader_fallback_timeout_s must exceed the heartbeat period")
        if self.connection_timeout_s < self.election_timeout_s_max:
            raise ValidationError("connection_timeout_s must be at least election_timeout_s_max")
        if not 0 < self.connection_retry_s <= 30.0:
            raise ValidationError("connection_retry_s must be in (0, 30] seconds")
        if self.tick_period_s <= 0 or self.batch_window_ms < 0:
            raise ValidationError("tick_period_s must be positive and batch_window_ms >= 0")
        if self.dump_seconds_max <= 0 or self.dump_retry_seconds < 0:
            raise ValidationError("dump_seconds_max must be positive, dump_retry_seconds >= 0")
        if self.log_compaction_interval_s_min <= 0:
            raise ValidationError("log_compaction_interval_s_min must be positive")

    def _validate_limits(self) -> None:
        payload_max = ENTRY_BYTES_CEILING - SYNCOBJ_ENTRY_OVERHEAD_BYTES
        if not 1024 <= self.batch_bytes_max <= payload_max:
            raise ValidationError(
                f"batch_bytes_max must be within [1024, {payload_max}] "
                " (pysyncobj corrupts larger entries)"
            )
        positive = {
            "batch_commands_max": self.batch_commands_max,
            "entries_in_flight_max": self.entries_in_flight_max,
            "pending_commands_max": self.pending_commands_max,
            "pending_bytes_max": self.pending_bytes_max,
            "command_bytes_max": self.command_bytes_max,
            "chunk_assembly_entries_max": self.chunk_assembly_entries_max,
            "syncobj_queue_entries_max": self.syncobj_queue_entries_max,
            "bind_attempts_max": self.bind_attempts_max,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValidationError(f"{name} must be at least 1, got {value}")
        if self.log_compaction_entries_min < 2:
            raise ValidationError("log_compaction_entries_min must be at least 2")


@dataclass(frozen=True, kw_only=True)
class RaftConfig:
    """What one node's Raft store is given. Addresses are 'host:port' strings."""

    self_address: str
    peer_addresses: tuple[str, ...]
    data_dir: Path
    # The cluster secret, at least SECRET_BYTES_MIN bytes. pysyncobj's wire format is pickle, so
    # without it anyone reaching the port can run code on the node: it is mandatory.
    secret: str
    tuning: RaftTuning = field(default_factory=RaftTuning)
    # Discard the local Raft state at start and catch up from the leader (`tock node --recover`).
    recover: bool = False

    @property
    def journal_file(self) -> Path:
        return self.data_dir / JOURNAL_FILE_NAME

    @property
    def dump_file(self) -> Path:
        return self.data_dir / DUMP_FILE_NAME

    @property
    def recovering_file(self) -> Path:
        return self.data_dir / (JOURNAL_FILE_NAME + RECOVERING_SUFFIX)

    def validate(self) -> None:
        """Raise ValidationError on a setting that cannot work; run before starting a node."""
        if not self.secret:
            raise ValidationError(
                "RaftConfig.secret is empty: the Raft wire format is pickle, so every node "
                "needs the cluster secret (a node without it would run anyone's code)"
            )
        check_secret_length(self.secret)
        for address in (self.self_address, *self.peer_addresses):
            _check_address(address)
        if self.self_address in self.peer_addresses:
            raise ValidationError(f"peer_addresses must not contain self ({self.self_address})")
        if len(set(self.peer_addresses)) != len(self.peer_addresses):
            raise ValidationError("peer_addresses has duplicates")
        self.tuning.validate()


def check_secret_length(secret: str) -> None:
    """Refuse a cluster secret shorter than SECRET_BYTES_MIN bytes (UTF-8)."""
    length = len(secret.encode())
    if length < SECRET_BYTES_MIN:
        raise ValidationError(
            f"the cluster secret is {length} bytes long; at least {SECRET_BYTES_MIN} are "
            "needed (the Raft key is derived from it): use a long random secret, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def _check_address(address: str) -> None:
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"not a 'host:port' address: {address!r}")
    if host in _WILDCARD_HOSTS:
        raise ValidationError(
            f"{address!r} names every interface: give the host peers reach this node at "
            "(the Raft port is bound on that host only)"
        )


def checked_syncobj_conf(**options: Any) -> SyncObjConf:
    """A SyncObjConf from options, refusing any key SyncObjConf does not define."""
    known = set(vars(SyncObjConf()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValidationError(f"unknown SyncObjConf keys (pysyncobj would ignore them): {unknown}")
    return SyncObjConf(**options)


def syncobj_conf(config: RaftConfig, **callbacks: Any) -> SyncObjConf:
    """The SyncObjConf of a node: config translated, plus the store's callbacks and serializer.

    The fixed choices here are the ones the pysyncobj findings call mandatory: the port bound on
    the host of the node's address (pysyncobj binds every interface without bindAddress),
    journal and dump always (a journal without a dump comes back empty after a restart), no
    append batching (the follower log shrink is worst with it; latency floors at 100 ms), and
    dynamic membership (members are added and removed at runtime).
    """
    config.validate()
    tuning = config.tuning
    return checked_syncobj_conf(
        # Without it pysyncobj listens on 0.0.0.0: every address of the host, not the one given.
        bindAddress=config.self_address,
        password=config.secret,
        journalFile=str(config.journal_file),
        fullDumpFile=str(config.dump_file),
        appendEntriesUseBatch=False,
        dynamicMembershipChange=True,
        commandsWaitLeader=True,
        autoTick=True,
        autoTickPeriod=tuning.tick_period_s,
        raftMinTimeout=tuning.election_timeout_s_min,
        raftMaxTimeout=tuning.election_timeout_s_max,
        appendEntriesPeriod=tuning.append_entries_period_s,
        leaderFallbackTimeout=tuning.leader_fallback_timeout_s,
        connectionTimeout=tuning.connection_timeout_s,
        connectionRetryTime=tuning.connection_retry_s,
        maxBindRetries=tuning.bind_attempts_max,
        logCompactionMinEntries=tuning.log_compaction_entries_min,
        logCompactionMinTime=tuning.log_compaction_interval_s_min,
        commandsQueueSize=tuning.syncobj_queue_entries_max,
        **callbacks,
    )
