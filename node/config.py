"""One node's configuration: addresses, peers, data directory, secrets, timings and limits.

Every limit is named (`*_max`) and every duration carries its unit, so an operator reading
`tock node --help` or this file knows what each knob bounds. `validate()` runs at start-up and
refuses combinations that would make the node unsafe (no secret) or the cluster unstable
(a lease that outlives the dead-node timeout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from store.errors import ValidationError
from store.raft.config import check_secret_length
from store.schedule import check_zone


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` with a loopback or named host; the port must be a real TCP port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValidationError(f"address {text!r} is not HOST:PORT")
    return host, int(port_text)


def local_zone() -> str:
    """The machine's IANA zone, for schedules that name none (Dapr uses the Scheduler's zone)."""
    tz = os.environ.get("TZ", "").removeprefix(":")
    if tz:
        return tz
    try:
        link = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    _, sep, zone = link.partition("zoneinfo/")
    return zone if sep and zone else "UTC"


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Liveness: heartbeats every `heartbeat_s`; a node fires only while its own last heartbeat
    committed less than `lease_s` ago; the leader declares a node dead after `dead_s`."""

    # Failover (a dead node's partitions firing elsewhere) takes about dead_s + heartbeat_s;
    # a lease of four heartbeats rides out a few slow commits without the node going quiet.
    heartbeat_s: float = 0.25
    lease_s: float = 1.0
    dead_s: float = 1.5
    propose_timeout_s: float = 5.0
    delivery_timeout_s: float = 5.0


@dataclass(frozen=True, kw_only=True)
class Limits:
    body_bytes_max: int = 4 * 1024 * 1024
    data_bytes_max: int = 1024 * 1024
    list_limit_max: int = 1000
    # A list answer also ends once its jobs' JSON reaches this (always at least one job).
    list_bytes_max: int = 4 * 1024 * 1024
    deliveries_in_flight_max: int = 2048
    # Per-app quotas: a create past either answers 429, and the app's other jobs are unaffected.
    jobs_max_per_app: int = 1_000_000
    data_bytes_max_per_app: int = 1 << 30
    # Jobs one delete-by-prefix command removes: a larger delete is several commands, so that no
    # apply holds the machine (and every node's reads) for long.
    delete_prefix_chunk_max: int = 1000


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    node_id: str
    http: str
    raft: str
    data_dir: Path
    secret: str
    peers: dict[str, str] = field(default_factory=dict)
    grpc: str | None = None
    api_token: str | None = None
    time_zone: str = "UTC"
    partitions: int = 1024
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)

    def validate(self) -> NodeConfig:
        if not self.node_id or any(c in self.node_id for c in "=:/ "):
            raise ValidationError(f"node id {self.node_id!r} must be a non-empty word")
        for address in (self.http, self.raft, *self.peers.values()):
            parse_address(address)
        if self.grpc is not None:
            parse_address(self.grpc)
        if not self.secret:
            raise ValidationError(
                "the cluster secret is required (--secret-file or TOCK_CLUSTER_SECRET): "
                "Raft traffic is pickle, and without a secret anyone reaching the port runs code"
            )
        check_secret_length(self.secret)
        if self.node_id in self.peers:
            raise ValidationError(f"node {self.node_id!r} is listed among its own peers")
        check_zone(self.time_zone)
        if not 1 <= self.partitions <= 65536:
            raise ValidationError("partitions must be between 1 and 65536")
        limits = self.limits
        if min(limits.jobs_max_per_app, limits.data_bytes_max_per_app) < 1:
            raise ValidationError("--jobs-max-per-app and --data-bytes-max-per-app must be >= 1")
        if limits.delete_prefix_chunk_max < 1:
            raise ValidationError("delete_prefix_chunk_max must be >= 1")
        t = self.timing
        if not 0 < t.heartbeat_s < t.lease_s < t.dead_s:
            raise ValidationError("timings must satisfy 0 < heartbeat < lease < dead")
        return self
