"""NodeConfig is the one tree a node is configured from: it validates as a whole, refuses each
rule that spans its parts with a message naming the field, and holds every component's config."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from cluster.membership import MembershipConfig
from node.config import NodeConfig
from node.delivery.grpc import GrpcDeliveryConfig
from node.delivery.http import DeliveryConfig
from node.engine.acks import AckConfig
from node.engine.engine import EngineConfig
from node.grpc.api import GrpcApiConfig
from node.http.api import ApiConfig
from node.server import engine_config_of
from node.service import ServiceConfig
from node.tls import TlsConfig
from node.watch.announcer import AnnouncerConfig
from node.watch.forward import ForwardConfig
from node.watch.route import WatchConfig
from store.errors import ValidationError
from store.jobs import JobLimits
from store.raft.config import RaftConfig, RaftTuning
from store.raft.transport import HardeningConfig
from store.supervision import SupervisionConfig
from tests.support.cluster_secret import TEST_CLUSTER_SECRET

ROOT = Path(__file__).resolve().parents[3]
MIB = 1024 * 1024
# The config node/server.py builds from fields of the tree (field -> NodeConfig field) rather
# than keeping it in the tree: the Raft store's, from the node's identity and its tuning.
BUILT_BY_THE_NODE = {
    "RaftConfig": {
        "self_address": "raft",
        "peer_addresses": "peers",
        "data_dir": "data_dir",
        "secret": "secret",
        "tuning": "raft_store",
        "recover": "recover",
    },
}
# `tock up`'s: it starts node processes and configures none of them.
NOT_A_NODES = {"LocalClusterConfig"}


def node_config(**changes: object) -> NodeConfig:
    base = NodeConfig(
        node_id="n1",
        http="127.0.0.1:3500",
        raft="127.0.0.1:7500",
        data_dir=Path("/nonexistent/tock"),
        secret=TEST_CLUSTER_SECRET,
        admin_token="a" * 16,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_default_tree_with_the_required_fields_is_valid() -> None:
    config = node_config(grpc="127.0.0.1:50001", peers={"n2": "127.0.0.1:7501"})
    assert config.validate() is config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Rules between fields of one part, checked by that part and named under it.
        (
            {"membership": MembershipConfig(heartbeat_s=1.0, lease_s=1.0, dead_s=1.5)},
            r"^membership: heartbeat_s, lease_s and dead_s must satisfy 0 < heartbeat_s < lease_s",
        ),
        (
            {"membership": MembershipConfig(heartbeat_s=0.25, lease_s=2.0, dead_s=1.5)},
            r"^membership: heartbeat_s, lease_s and dead_s must satisfy",
        ),
        (
            {"membership": MembershipConfig(heartbeat_s=0.0)},
            r"^membership: heartbeat_s, lease_s and dead_s must satisfy 0 < heartbeat_s",
        ),
        (
            {"engine": EngineConfig(misfire_skips_max=257)},
            r"^engine: misfire_skips_max must be in 1..acks_per_command_max",
        ),
        (
            {"engine": EngineConfig(acks=AckConfig(acks_per_command_max=100))},
            r"^engine: misfire_skips_max must be in 1..acks_per_command_max",
        ),
        (
            {"raft_store": RaftTuning(election_timeout_s_max=0.3)},
            r"^raft_store: election_timeout_s_max must exceed election_timeout_s_min",
        ),
        (
            {"raft_store": RaftTuning(hardening=HardeningConfig(quiet_election_timeout_s_max=1))},
            r"^raft_store: quiet_election_timeout_s_min and quiet_election_timeout_s_max",
        ),
        (
            {"supervision": SupervisionConfig(crashes_max=6)},
            r"^supervision: crashes_max \* backoff_max_s must be < crash_window_s",
        ),
        # Rules between parts of the tree, checked by NodeConfig.
        (
            {"engine": EngineConfig(acks=AckConfig(propose_timeout_s=1.0))},
            r"^engine.acks.propose_timeout_s is set from propose_timeout_s",
        ),
        (
            {"service": ServiceConfig(job_limits=JobLimits(data_bytes_max=4 * MIB))},
            r"^service.job_limits.data_bytes_max \(4194304\) must be below body_bytes_max",
        ),
        (
            {"body_bytes_max": MIB},
            r"^service.job_limits.data_bytes_max \(1048576\) must be below body_bytes_max",
        ),
        (
            {"forward": ForwardConfig(batch_bytes_max=4 * MIB)},
            r"^forward.batch_bytes_max \(4194304\) must be below body_bytes_max",
        ),
    ],
)
def test_a_rule_across_fields_is_refused_naming_them(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        node_config(**changes).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node_id": "n 1"}, r"^node_id 'n 1' must be a non-empty word"),
        ({"http": "nowhere"}, r"^address 'nowhere' is not HOST:PORT"),
        ({"peers": {"n1": "127.0.0.1:7501"}}, r"^node 'n1' is listed among its own peers"),
        ({"secret": ""}, r"^the cluster secret is required"),
        ({"admin_token": ""}, r"^the admin token is required \(--admin-token-file or TOCK_ADMIN"),
        ({"admin_token": "a" * 15}, r"^admin_token: the admin token must be at least 16 char"),
        ({"admin_token": "a" * 15 + " "}, r"^admin_token: the admin token must be printable"),
        ({"partitions": 0}, r"^partitions must be between 1 and 65536"),
        ({"propose_timeout_s": 0.0}, r"^propose_timeout_s must be positive"),
        ({"delivery_timeout_s": -1.0}, r"^delivery_timeout_s must be positive"),
        ({"body_bytes_max": 0}, r"^body_bytes_max must be positive"),
        ({"app_host_allow": ("10.0.0.0/8", "a b")}, r"^app_host_allow: 'a b' is neither"),
        ({"service": ServiceConfig(time_zone="Mars/Olympus")}, r"^service: time_zone: "),
        ({"service": ServiceConfig(jobs_max_per_app=0)}, r"^service: jobs_max_per_app must"),
        (
            {"service": ServiceConfig(job_limits=JobLimits(name_chars_max=0))},
            r"^service: name_chars_max must be positive",
        ),
        ({"watch": WatchConfig(watchers_max=0)}, r"^watch: .*watchers_max"),
        ({"announcer": AnnouncerConfig(reconcile_s=0)}, r"^announcer: reconcile_s"),
        ({"forward": ForwardConfig(queue_max=0)}, r"^forward: .*queue_max"),
        ({"forward": ForwardConfig(signature_window_s=0)}, r"^forward: .*signature_window_s"),
        ({"watch": WatchConfig(token_check_s=0)}, r"^watch: .*token_check_s"),
        ({"http_delivery": DeliveryConfig(connections_max=0)}, r"^http_delivery: connections_max"),
        ({"grpc_delivery": GrpcDeliveryConfig(channels_max=0)}, r"^grpc_delivery: channels_max"),
        ({"http_api": ApiConfig(retry_after_s=0)}, r"^http_api: .*retry_after_s"),
        ({"grpc_api": GrpcApiConfig(stop_grace_s=0)}, r"^grpc_api: stop_grace_s"),
        ({"engine": EngineConfig(lease_poll_ms=0)}, r"^engine: .*lease_poll_ms"),
        ({"engine": EngineConfig(timer_horizon_ms=999)}, r"^engine: timer_horizon_ms"),
        ({"engine": EngineConfig(rows_per_turn=0)}, r"^engine: .*rows_per_turn"),
        ({"engine": EngineConfig(fires_per_turn=0)}, r"^engine: .*fires_per_turn"),
        ({"raft_store": RaftTuning(batch_commands_max=0)}, r"^raft_store: batch_commands_max"),
        (
            {"tls": TlsConfig(cert_file=Path("node.pem"))},
            r"^tls: cert_file and key_file must be given together",
        ),
        (
            {"tls": TlsConfig(ca_file=Path("ca.pem"))},
            r"^tls: ca_file is for checking other nodes: it needs cert_file",
        ),
    ],
)
def test_every_part_of_the_tree_is_validated_with_its_own_rules(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        node_config(**changes).validate()


def test_the_engine_gets_the_nodes_propose_timeout() -> None:
    engine = engine_config_of(node_config(propose_timeout_s=7.0))
    assert engine.acks.propose_timeout_s == 7.0
    assert dataclasses.replace(engine, acks=AckConfig()) == EngineConfig()


def tree_fields(cls: type, path: str = "") -> dict[tuple[str, str], str]:
    """(class name, field) -> its path from NodeConfig, for every field of every config below."""
    found: dict[tuple[str, str], str] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        place = f"{path}{field.name}"
        found[(cls.__name__, field.name)] = place
        kind = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found.update(tree_fields(kind, f"{place}."))
    return found


def is_dataclass_definition(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(called, ast.Name | ast.Attribute) and ast.unparse(called).endswith(
            "dataclass"
        ):
            return True
    return False


def config_classes_in_source() -> dict[str, list[str]]:
    """Every dataclass named like a config in store/, cluster/ and node/, with its fields."""
    classes: dict[str, list[str]] = {}
    for layer in ("store", "cluster", "node"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.ClassDef)
                    and is_dataclass_definition(node)
                    and node.name.endswith(("Config", "Tuning", "Limits"))
                ):
                    assert node.name not in classes, f"two classes named {node.name}"
                    classes[node.name] = [
                        statement.target.id
                        for statement in node.body
                        if isinstance(statement, ast.AnnAssign)
                        and isinstance(statement.target, ast.Name)
                    ]
    return classes


def test_every_field_of_every_config_is_reachable_from_node_config() -> None:
    reachable = tree_fields(NodeConfig)
    source = config_classes_in_source()
    outside = source.keys() - {name for name, _ in reachable}
    assert outside == BUILT_BY_THE_NODE.keys() | NOT_A_NODES
    unreachable = {
        f"{name}.{field}"
        for name, fields in source.items()
        if name not in NOT_A_NODES
        for field in fields
        if (name, field) not in reachable and field not in BUILT_BY_THE_NODE.get(name, {})
    }
    assert unreachable == set()
    # Every field the node builds RaftConfig from is a field of the tree.
    built_from = BUILT_BY_THE_NODE["RaftConfig"]
    assert set(built_from) == {field.name for field in dataclasses.fields(RaftConfig)}
    assert {("NodeConfig", name) for name in built_from.values()} <= reachable.keys()


def test_every_config_in_the_tree_checks_itself() -> None:
    classes = {name for name, _ in tree_fields(NodeConfig)} - {"NodeConfig"}
    by_name = {
        cls.__name__: cls
        for cls in (
            MembershipConfig,
            EngineConfig,
            AckConfig,
            DeliveryConfig,
            GrpcDeliveryConfig,
            WatchConfig,
            AnnouncerConfig,
            ForwardConfig,
            ServiceConfig,
            JobLimits,
            ApiConfig,
            GrpcApiConfig,
            RaftTuning,
            HardeningConfig,
            SupervisionConfig,
            TlsConfig,
        )
    }
    assert classes == by_name.keys()
    for name, cls in by_name.items():
        assert getattr(cls, "__dataclass_params__").frozen, name  # noqa: B009
        assert all(field.kw_only for field in dataclasses.fields(cls)), name
        cls().validate()
