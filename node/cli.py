"""`tock`: start a local cluster (`up`), run one node (`node`), talk to a cluster (`job`,
`status`, ...), or measure one (`bench`). README.md and docs/operations.md describe every command
and flag here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.local import READY_TIMEOUT_S_DEFAULT, LocalCluster, LocalClusterConfig
from cluster.membership import MembershipConfig
from node.address import parse_address
from node.client import cli as client_commands
from node.logs import LogFormat, configure_logging
from node.service import ServiceConfig
from store.errors import TockError, ValidationError
from store.partition import PARTITIONS_DEFAULT

# The exit status of a node whose Raft journal, meta or dump cannot be trusted (the dump's
# own check exits with the same status).
EXIT_STORAGE_DAMAGED = 70

if TYPE_CHECKING:
    from node.config import NodeConfig


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # every argument after it is the harness's, options included
        return _bench(argv[1:])
    parser = argparse.ArgumentParser(prog="tock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_up(commands)
    _add_node(commands)
    _add_bench(commands)
    client_commands.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except (TockError, OSError) as error:
        print(f"tock: {error}", file=sys.stderr)
        return 1
    return result


# -- tock bench ------------------------------------------------------------------------------

# The harness lives beside the packages in a checkout; its script makes sure the venv has the
# extras it needs (matplotlib for the reports) before it runs.
BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench"


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Listed for `tock --help` only: main() hands `tock bench ...` to the harness before parsing.
    commands.add_parser("bench", help="the benchmark harness (scripts/bench): tock bench --list")


def _bench(bench_args: list[str]) -> int:
    if not BENCH_SCRIPT.is_file():
        print(f"tock: tock bench runs {BENCH_SCRIPT}, not found: use a checkout", file=sys.stderr)
        return 1
    return subprocess.call([str(BENCH_SCRIPT), *bench_args])


# -- tock up ---------------------------------------------------------------------------------


def _add_up(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser("up", help="start a local cluster of N node processes")
    default = LocalClusterConfig()
    up.add_argument("--nodes", type=int, default=default.nodes)
    up.add_argument("--data-dir", type=Path, default=default.data_dir)
    up.add_argument("--http-port", type=int, default=default.http_port)
    up.add_argument("--raft-port", type=int, default=default.raft_port)
    up.add_argument("--grpc-port", type=int, default=default.grpc_port)
    up.add_argument("--app-url", help="register the callback URL of app 'default'")
    up.add_argument("--time-zone", help="zone for schedules without CRON_TZ= (default: local)")
    up.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S_DEFAULT)
    up.add_argument(
        "--no-open-api",
        dest="open_api",
        action="store_false",
        help="token mode: the Jobs API needs an app token (tock app token create APP)",
    )
    _add_log_format(up)
    up.add_argument(
        "--tls", action="store_true", help="HTTPS and gRPC over TLS, from a CA made in the data dir"
    )
    up.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    cluster = LocalCluster(
        LocalClusterConfig(
            nodes=args.nodes,
            data_dir=args.data_dir,
            http_port=args.http_port,
            raft_port=args.raft_port,
            grpc_port=args.grpc_port,
            time_zone=args.time_zone,
            open_api=args.open_api,
            node_args=("--log-format", args.log_format),
            tls=args.tls,
        )
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    cluster.start()
    try:
        for node in cluster.nodes:
            addresses = f"{node.url} raft {node.raft} grpc {node.grpc}"
            print(f"{node.node_id} {addresses} pid {node.pid}", flush=True)
        print(f"admin token: {cluster.admin_token_file}", flush=True)
        if cluster.ca_file is not None:
            print(f"CA (for --ca-file): {cluster.ca_file}", flush=True)
        leader = cluster.wait_ready(args.ready_timeout)
        if args.app_url:
            _register_app(
                cluster.nodes[0].url, args.app_url, cluster.admin_headers(), cluster.ca_file
            )
        print(f"ready: leader {leader}", flush=True)
        while not stop.wait(1.0):
            for node in cluster.nodes:
                if node.process is not None and not node.running():
                    print(f"{node.node_id} exited; see {node.log_file}", file=sys.stderr)
                    node.process = None
    finally:
        cluster.stop()
    return 0


def _register_app(
    node_url: str, app_url: str, admin_headers: dict[str, str], ca_file: Path | None
) -> None:
    body = json.dumps({"url": app_url}).encode()
    # The admin token may register any app's URL, in open and in token mode alike.
    headers = {"content-type": "application/json", **admin_headers}
    request = urllib.request.Request(
        f"{node_url}/v1.0/apps/default", data=body, headers=headers, method="PUT"
    )
    context = None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(request, timeout=10, context=context):
        pass


# -- tock node -------------------------------------------------------------------------------


def _add_node(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser("node", help="run one node of a cluster")
    node.add_argument("--id", required=True)
    node.add_argument("--http", required=True, help="HOST:PORT of the HTTP API")
    node.add_argument("--raft", required=True, help="HOST:PORT of Raft traffic")
    node.add_argument("--grpc", help="HOST:PORT of Dapr's gRPC API")
    node.add_argument("--peer", action="append", default=[], help="ID=HOST:PORT (raft)")
    node.add_argument("--data-dir", type=Path, required=True)
    node.add_argument(
        "--recover",
        action="store_true",
        help="discard this node's Raft state (kept aside under DATA/raft/discarded-*) and catch "
        "up from the leader's snapshot; for a node whose journal or dump is damaged. Only while "
        "the other nodes hold a majority",
    )
    node.add_argument("--secret-file", type=Path, help="else TOCK_CLUSTER_SECRET")
    node.add_argument("--admin-token-file", type=Path, help="else TOCK_ADMIN_TOKEN; required")
    node.add_argument(
        "--open-api",
        action="store_true",
        help="open mode: the Jobs API needs no app token, its scope comes from Dapr's headers",
    )
    node.add_argument("--time-zone", help="zone for schedules without CRON_TZ= (default: local)")
    node.add_argument("--partitions", type=int, default=PARTITIONS_DEFAULT)
    default = ServiceConfig()
    node.add_argument(
        "--jobs-max-per-app",
        type=int,
        default=default.jobs_max_per_app,
        help=f"jobs one app may hold (default {default.jobs_max_per_app:,})",
    )
    node.add_argument(
        "--data-bytes-max-per-app",
        type=int,
        default=default.data_bytes_max_per_app,
        help=f"bytes of job data one app may hold (default {default.data_bytes_max_per_app:,})",
    )
    node.add_argument(
        "--max-clock-offset",
        type=int,
        default=MembershipConfig().max_clock_offset_ms,
        metavar="MS",
        help="stop firing while this node's clock is further than MS from the cluster's median",
    )
    node.add_argument(
        "--app-host-allow",
        action="append",
        default=[],
        metavar="HOST|CIDR",
        help="where deliveries may go (repeatable; default: anywhere)",
    )
    node.add_argument(
        "--app-ca-file", type=Path, help="CA bundle for https:// apps (default: the system's)"
    )
    node.add_argument("--tls-cert-file", type=Path, help="PEM certificate (and chain): TLS on")
    node.add_argument("--tls-key-file", type=Path, help="the certificate's PEM private key")
    node.add_argument(
        "--tls-ca-file", type=Path, help="CA of other nodes (default: the chain in the cert)"
    )
    node.add_argument("--log-level", default="INFO")
    _add_log_format(node)
    node.set_defaults(func=_node)


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=LogFormat.TEXT.value,
        help="each node's log: text lines, or one JSON object a line with the node id",
    )


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The node's configuration tree from its flags, validated. Imported here, not at the top:
    the tree names every component of a node, and `tock job` needs none of them."""
    from node.config import NodeConfig, local_zone
    from node.delivery.http import DeliveryConfig
    from node.tls import TlsConfig

    peers: dict[str, str] = {}
    for peer in args.peer:
        peer_id, sep, address = peer.partition("=")
        if not sep:
            raise ValidationError(f"--peer {peer!r} is not ID=HOST:PORT")
        parse_address(address)
        peers[peer_id] = address
    return NodeConfig(
        node_id=args.id,
        http=args.http,
        raft=args.raft,
        grpc=args.grpc,
        peers=peers,
        data_dir=args.data_dir,
        secret=_secret(args.secret_file, "TOCK_CLUSTER_SECRET"),
        admin_token=_secret(args.admin_token_file, "TOCK_ADMIN_TOKEN"),
        open_api=args.open_api,
        recover=args.recover,
        partitions=args.partitions,
        membership=MembershipConfig(max_clock_offset_ms=args.max_clock_offset),
        app_host_allow=tuple(args.app_host_allow),
        http_delivery=DeliveryConfig(ca_file=args.app_ca_file),
        tls=TlsConfig(
            cert_file=args.tls_cert_file, key_file=args.tls_key_file, ca_file=args.tls_ca_file
        ),
        service=ServiceConfig(
            time_zone=args.time_zone or local_zone(),
            jobs_max_per_app=args.jobs_max_per_app,
            data_bytes_max_per_app=args.data_bytes_max_per_app,
        ),
    ).validate()


def _secret(path: Path | None, variable: str) -> str:
    if path is not None:
        return path.read_text().strip()
    return os.environ.get(variable, "").strip()


def _node(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, LogFormat(args.log_format), args.id)
    config = node_config(args)
    from node.server import run_node
    from store.raft.journal import JournalDamaged

    try:
        return run_node(config)
    except JournalDamaged as error:
        logging.getLogger("node").critical("%s", error)
        return EXIT_STORAGE_DAMAGED


if __name__ == "__main__":
    sys.exit(main())
