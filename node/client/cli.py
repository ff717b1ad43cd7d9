"""`tock job create|get|list|delete`, `tock status` and `tock app token create|list|revoke`: the
command-line client of any node.

`add_commands(subparsers)` adds the commands to `tock`'s parser; each sets `func`, a handler
that takes the parsed arguments and returns the exit status. get and list print JSON, create
and delete a short line, status a table; errors go to stderr with exit status 1.

Credentials: the admin token comes from `--admin-token-file`, else TOCK_ADMIN_TOKEN, else the
file `admin-token` in `--data-dir` (`./.tock` by default, where `tock up` writes it) when there
is one; an app token (for a node in token mode) from DAPR_API_TOKEN, as Dapr's SDKs read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from node.client.client import TockClient
from store.errors import TockError

DEFAULT_NODE_URL = "http://127.0.0.1:3500"
DEFAULT_DATA_DIR = Path(".tock")
ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_ENV = "TOCK_ADMIN_TOKEN"
APP_TOKEN_ENV = "DAPR_API_TOKEN"
EXIT_FAILED = 1

Command = Callable[[TockClient, argparse.Namespace], Awaitable[None]]


def add_commands(subparsers: Any) -> None:
    """Add `job` (with create, get, list, delete) and `status` to `tock`'s subparsers."""
    job = subparsers.add_parser("job", help="create, read and delete jobs on a node")
    commands = job.add_subparsers(dest="job_command", required=True)

    create = _command(commands, "create", "schedule a job", _create)
    create.add_argument("name")
    create.add_argument("--schedule", help="cron (6 fields), @every 10s, @daily, 1h30m, ...")
    create.add_argument("--due-time", help="RFC3339 time, Go duration (10s) or ISO 8601")
    create.add_argument("--repeats", type=int)
    create.add_argument("--ttl")
    create.add_argument("--data", type=_json_value, help="any JSON value, e.g. '{\"a\": 1}'")
    create.add_argument("--overwrite", action="store_true")
    create.add_argument(
        "--failure-policy",
        type=parse_failure_policy,
        metavar="drop|constant:INTERVAL[:MAXRETRIES]",
    )
    _command(commands, "get", "print a job as JSON", _get).add_argument("name")
    listing = _command(commands, "list", "print the app's jobs as JSON", _list)
    listing.add_argument("--prefix", default="")
    _command(commands, "delete", "delete a job", _delete).add_argument("name")
    _command(subparsers, "status", "print the node's view of the cluster", _status)

    app = subparsers.add_parser("app", help="manage apps")
    app_commands = app.add_subparsers(dest="app_command", required=True)
    token = app_commands.add_parser("token", help="issue, list and revoke an app's tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create_token = "issue a token of APP and print it (shown this once)"
    _command(token_commands, "create", create_token, _create_token).add_argument("app")
    _command(token_commands, "list", "print APP's token ids", _list_tokens).add_argument("app")
    revoke = _command(token_commands, "revoke", "revoke one of APP's tokens", _revoke_token)
    revoke.add_argument("app")
    revoke.add_argument("id", help="the token id (create and list print it)")


def parse_failure_policy(text: str) -> dict[str, object]:
    """`drop`, `constant:1s` or `constant:1s:3` as the JSON failurePolicy."""
    kind, _, rest = text.partition(":")
    if kind == "drop" and not rest:
        return {"drop": {}}
    interval, _, retries = rest.partition(":")
    if kind != "constant" or not interval or (retries and not retries.isdecimal()):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected drop or constant:INTERVAL[:MAXRETRIES], e.g. constant:1s:3"
        )
    constant: dict[str, object] = {"interval": interval}
    if retries:
        constant["maxRetries"] = int(retries)
    return {"constant": constant}


def format_status(status: dict[str, Any]) -> str:
    """/admin/cluster as text: the node's summary, then one row per member."""
    summary = [
        ("node", status["node"]),
        ("role", status["role"]),
        ("leader", status["leader"] or "-"),
        ("term", status["term"]),
        ("commit", status["commitIndex"]),
        ("applied", status["appliedIndex"]),
        ("epoch", status["epoch"]),
        ("partitions", status["partitions"]),
        ("jobs", status["jobs"]),
    ]
    lines = [f"{key:<11}{value}" for key, value in summary]
    rows: list[tuple[str, ...]] = [("MEMBER", "HTTP", "RAFT", "ALIVE", "PARTITIONS")]
    for member in status["members"]:
        alive = "yes" if member["alive"] else "no"
        fields = (member["id"], member["http"], member["raft"], alive, member["partitions"])
        rows.append(tuple(str(field) for field in fields))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines.append("")
    for row in rows:
        cells = (f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _command(subparsers: Any, name: str, help_text: str, command: Command) -> Any:
    parser = subparsers.add_parser(name, help=help_text)
    parser.add_argument("--node", default=DEFAULT_NODE_URL, help="the node's HTTP base URL")
    parser.add_argument(
        "--app-id", help="the app the jobs belong to (default: the app token's, else 'default')"
    )
    parser.add_argument("--namespace", help="default: the app token's, else 'default'")
    parser.add_argument("--admin-token-file", type=Path, help=f"else {ADMIN_TOKEN_ENV}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where `tock up` keeps the admin token (default: .tock)",
    )
    parser.set_defaults(func=lambda args: _run(command, args))
    return parser


def admin_token(args: argparse.Namespace) -> str | None:
    """The admin token the command was given or can find; None when there is none."""
    if args.admin_token_file is not None:
        return str(args.admin_token_file.read_text().strip())
    from_environment = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if from_environment:
        return from_environment
    found = args.data_dir / ADMIN_TOKEN_FILE
    return found.read_text().strip() if found.is_file() else None


def _run(command: Command, args: argparse.Namespace) -> int:
    async def go() -> None:
        async with TockClient(
            args.node,
            args.app_id,
            args.namespace,
            token=os.environ.get(APP_TOKEN_ENV) or None,
            admin_token=admin_token(args),
        ) as client:
            await command(client, args)

    try:
        asyncio.run(go())
    except TockError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _json_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON (a string needs quotes: '\"text\"')"
        ) from None


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


async def _create(client: TockClient, args: argparse.Namespace) -> None:
    await client.create(
        args.name,
        schedule=args.schedule,
        due_time=args.due_time,
        repeats=args.repeats,
        ttl=args.ttl,
        data=args.data,
        overwrite=args.overwrite,
        failure_policy=args.failure_policy,
    )
    print(f"created {args.name}")


async def _get(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.get(args.name))


async def _list(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.list_all(args.prefix))


async def _delete(client: TockClient, args: argparse.Namespace) -> None:
    await client.delete(args.name)
    print(f"deleted {args.name}")


async def _status(client: TockClient, args: argparse.Namespace) -> None:
    print(format_status(await client.cluster_status()))


async def _create_token(client: TockClient, args: argparse.Namespace) -> None:
    issued = await client.create_app_token(args.app)
    print(f"id     {issued['id']}\ntoken  {issued['token']}")


async def _list_tokens(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.app_tokens(args.app))


async def _revoke_token(client: TockClient, args: argparse.Namespace) -> None:
    await client.revoke_app_token(args.id, args.app)
    print(f"revoked {args.id}")
