"""One node's configuration: the one tree every part of the node is configured from.

`NodeConfig` holds what the node itself owns: its id, addresses, peers, data directory, secrets
and partitions, and the few values several of its parts share (the propose timeout, the delivery
timeout, the request body bound), each once. Every other knob belongs to one component and lives
in that component's own frozen config, defined next to the component (so store/ and cluster/
depend on nothing here), with its default written there only; NodeConfig embeds one of each.
node/server.py builds every component from its sub-config here and hands it the identity and the
shared values as arguments; the one copy it makes is the engine's propose timeout
(`engine.acks.propose_timeout_s`), which it sets from `propose_timeout_s`.

Every limit is named (`*_max`) and every duration carries its unit, so an operator reading
`tock node --help`, docs/operations.md or this tree knows what each knob bounds. `validate()` runs
at start-up: each sub-config checks its own fields in its own `validate()`, and the rules that
span the tree are checked here. Every refusal is a ValidationError naming the field, prefixed with
its place in the tree.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cluster.membership import MembershipConfig
from node.access import check_admin_token
from node.address import parse_address
from node.delivery.allowed_hosts import AllowedHosts
from node.delivery.grpc import GrpcDeliveryConfig
from node.delivery.http import DeliveryConfig
from node.engine.acks import AckConfig
from node.engine.engine import EngineConfig
from node.grpc.api import GrpcApiConfig
from node.http.api import ApiConfig
from node.service import ServiceConfig
from node.tls import TlsConfig
from node.watch.announcer import AnnouncerConfig
from node.watch.forward import ForwardConfig
from node.watch.route import WatchConfig
from store.errors import ValidationError
from store.log import PROPOSE_TIMEOUT_S_DEFAULT
from store.partition import PARTITIONS_DEFAULT, PARTITIONS_MAX
from store.raft.config import RaftTuning, check_secret_length
from store.supervision import SupervisionConfig


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


class SubConfig(Protocol):
    """What every sub-config of the tree has: its own checks."""

    def validate(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    # -- who the node is ---------------------------------------------------------------------
    node_id: str
    # HOST:PORT of the HTTP API, of Raft traffic and (when set) of Dapr's gRPC API.
    http: str
    raft: str
    grpc: str | None = None
    # Every other member's Raft address, by id.
    peers: dict[str, str] = field(default_factory=dict)
    # The Raft journal, meta and dump live under `{data_dir}/raft/`.
    data_dir: Path
    # The cluster secret (Raft's wire format is pickle: without it anyone reaching the port runs
    # code; it also signs the members' internal requests) and the admin token, which every
    # admin route and /metrics require.
    secret: str
    admin_token: str
    # Open mode: the Jobs API needs no app token and takes its scope from Dapr's headers, as a
    # sidecar on localhost does; otherwise (token mode) every call carries an app token.
    open_api: bool = False
    # Discard the local Raft state at start and catch up from the leader (`--recover`).
    recover: bool = False
    # HTTPS and gRPC over TLS, and https to other nodes, when a certificate is given.
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Part of the cluster's identity: the same on every node, and never changed for a data dir.
    partitions: int = PARTITIONS_DEFAULT

    # -- values several parts share --------------------------------------------------------------
    # How long a write, a read's barrier, a membership change, a watcher announcement or an ack
    # waits for its command to apply.
    propose_timeout_s: float = PROPOSE_TIMEOUT_S_DEFAULT
    # One delivery attempt's deadline: HTTP, gRPC, a watch stream's ack, the hop between nodes.
    delivery_timeout_s: float = 5.0
    # A request's bound: an HTTP body (413 beyond), a gRPC message, a batch forwarded between
    # nodes.
    body_bytes_max: int = 4 * 1024 * 1024
    # Where deliveries may go (host names, addresses, CIDRs), checked when an app registers and
    # at every delivery; empty, anywhere.
    app_host_allow: tuple[str, ...] = ()

    # -- each component's own knobs ---------------------------------------------------------------
    raft_store: RaftTuning = field(default_factory=RaftTuning)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    http_delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    grpc_delivery: GrpcDeliveryConfig = field(default_factory=GrpcDeliveryConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    announcer: AnnouncerConfig = field(default_factory=AnnouncerConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    http_api: ApiConfig = field(default_factory=ApiConfig)
    grpc_api: GrpcApiConfig = field(default_factory=GrpcApiConfig)

    def validate(self) -> NodeConfig:
        """Check the whole tree; return self, so that a caller can build and check at once."""
        self._validate_identity()
        for name, value in (
            ("propose_timeout_s", self.propose_timeout_s),
            ("delivery_timeout_s", self.delivery_timeout_s),
            ("body_bytes_max", self.body_bytes_max),
        ):
            if value <= 0:
                raise ValidationError(f"{name} must be positive, not {value}")
        for name, sub_config in self.sub_configs().items():
            try:
                sub_config.validate()
            except ValidationError as error:
                raise ValidationError(f"{name}: {error}") from None
        self._validate_across()
        return self

    def sub_configs(self) -> dict[str, SubConfig]:
        """Every component's config in the tree, by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if dataclasses.is_dataclass(getattr(self, f.name))
        }

    def _validate_identity(self) -> None:
        if not self.node_id or any(c in self.node_id for c in "=:/ "):
            raise ValidationError(f"node_id {self.node_id!r} must be a non-empty word")
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
        if not self.admin_token:
            raise ValidationError(
                "the admin token is required (--admin-token-file or TOCK_ADMIN_TOKEN): every "
                "admin route and /metrics need it"
            )
        try:
            check_admin_token(self.admin_token)
        except ValidationError as error:
            raise ValidationError(
                f"admin_token: {error} (--admin-token-file or TOCK_ADMIN_TOKEN)"
            ) from None
        if self.node_id in self.peers:
            raise ValidationError(f"node {self.node_id!r} is listed among its own peers")
        if not 1 <= self.partitions <= PARTITIONS_MAX:
            raise ValidationError(f"partitions must be between 1 and {PARTITIONS_MAX}")
        AllowedHosts(self.app_host_allow)

    def _validate_across(self) -> None:
        """The rules between fields that different parts of the tree own."""
        if self.engine.acks.propose_timeout_s != AckConfig.propose_timeout_s:
            raise ValidationError(
                "engine.acks.propose_timeout_s is set from propose_timeout_s: set that instead"
            )
        data_bytes_max = self.service.job_limits.data_bytes_max
        if data_bytes_max >= self.body_bytes_max:
            raise ValidationError(
                f"service.job_limits.data_bytes_max ({data_bytes_max}) must be below "
                f"body_bytes_max ({self.body_bytes_max}): a create carrying that much data "
                "would be refused as too large"
            )
        if self.forward.batch_bytes_max >= self.body_bytes_max:
            raise ValidationError(
                f"forward.batch_bytes_max ({self.forward.batch_bytes_max}) must be below "
                f"body_bytes_max ({self.body_bytes_max}): the node a batch is forwarded to "
                "refuses a larger body"
            )
