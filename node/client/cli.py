"""The command-line client of any node: `tock job create|get|list|delete|pause|resume|run|history`,
`tock deadletter list|redrive|delete`, `tock export [FILE]`, `tock import FILE`, `tock status` and
`tock app token create|list|revoke`.

`add_commands(subparsers)` adds the commands to `tock`'s parser; each sets `func`, a handler
that takes the parsed arguments and returns the exit status. get, list, history and deadletter
list print JSON, the other job and dead letter commands a short line, status a table; export
writes NDJSON to FILE or stdout, import streams FILE to the node and shows its progress on
stderr. Errors go to stderr with exit status 1. A node serving TLS is given as an https:// URL,
its certificate checked against `--ca-file` (default: the system's store).

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
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from node.client.client import TockClient
from store.errors import TockError

DEFAULT_NODE_URL = "http://127.0.0.1:3500"
DEFAULT_DATA_DIR = Path(".tock")
ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_ENV = "TOCK_ADMIN_TOKEN"
APP_TOKEN_ENV = "DAPR_API_TOKEN"
EXIT_FAILED = 1
# An import shows how far it got each time this many more jobs (lines) have been sent.
PROGRESS_EVERY_LINES = 10_000
MIB = 1024 * 1024
# The file name that means standard input or output.
STDIO = "-"
FAILURE_POLICY_FORMS = (
    "drop, constant:INTERVAL[:MAXRETRIES] or "
    "exponential:INITIAL[:MAXINTERVAL[:MULTIPLIER[:MAXRETRIES]]]"
)

Command = Callable[[TockClient, argparse.Namespace], Awaitable[None]]


def add_commands(subparsers: Any) -> None:
    """Add `job`, `deadletter`, `export`, `import` and `status` to `tock`'s subparsers."""
    job = subparsers.add_parser("job", help="create, read, delete and operate jobs on a node")
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
        metavar="POLICY",
        help=f"{FAILURE_POLICY_FORMS}, e.g. constant:1s:3 or exponential:1s:5m:2:10",
    )
    create.add_argument("--jitter", help="delay each occurrence by up to this (e.g. 30s)")
    create.add_argument("--delivery-timeout", help="how long the app may take to answer (5s)")
    listing = _command(commands, "list", "print the app's jobs as JSON", _list)
    listing.add_argument("--prefix", default="")
    by_name = (
        ("get", "print a job as JSON", _get),
        ("delete", "delete a job", _delete),
        ("pause", "stop a job firing until it is resumed", _pause),
        ("resume", "let a paused job fire again, from its next occurrence", _resume),
        ("run", "trigger a job once now, outside its schedule", _run_now),
    )
    for name, help_text, handler in by_name:
        _command(commands, name, help_text, handler).add_argument("name")
    history = _command(commands, "history", "print a job's last attempts as JSON", _history)
    history.add_argument("name")
    history.add_argument("--limit", type=int, help="at most this many attempts (default 20)")

    letter = subparsers.add_parser("deadletter", help="the app's given-up triggers")
    letters = letter.add_subparsers(dest="deadletter_command", required=True)
    letter_list = _command(letters, "list", "print the app's dead letters as JSON", _letters)
    letter_list.add_argument("--prefix", default="", help="only those of jobs named so")
    redrive = _command(letters, "redrive", "deliver a dead letter again now", _redrive)
    redrive.add_argument("id")
    _command(letters, "delete", "forget a dead letter", _forget).add_argument("id")

    export = _command(
        subparsers, "export", "write every job with its state as NDJSON", _export, scoped=False
    )
    export.add_argument("file", nargs="?", default=STDIO, help="where to write (default: stdout)")
    export.add_argument(
        "--namespace", dest="only_namespace", metavar="NAMESPACE", default="", help="only its jobs"
    )
    export.add_argument("--app", dest="only_app", metavar="APP", default="", help="only its jobs")
    export.add_argument("--prefix", default="", help="only jobs whose name starts with this")
    import_ = _command(
        subparsers, "import", "read jobs written by tock export", _import, scoped=False
    )
    import_.add_argument("file", help="an export's NDJSON file ('-': stdin)")
    import_.add_argument("--overwrite", action="store_true", help="replace existing jobs")
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
    """`drop`, `constant:1s[:3]` or `exponential:1s[:5m[:2[:10]]]` as the JSON failurePolicy."""
    kind, _, rest = text.partition(":")
    fields = rest.split(":") if rest else []
    if kind == "drop" and not fields:
        return {"drop": {}}
    if kind == "constant" and 1 <= len(fields) <= 2 and all(fields):
        return {"constant": _with_retries({"interval": fields[0]}, fields[1:], text)}
    if kind == "exponential" and 1 <= len(fields) <= 4 and all(fields):
        exponential: dict[str, object] = {"initialInterval": fields[0]}
        if len(fields) > 1:
            exponential["maxInterval"] = fields[1]
        if len(fields) > 2:
            exponential["multiplier"] = _multiplier(fields[2], text)
        return {"exponential": _with_retries(exponential, fields[3:], text)}
    raise _bad_policy(text)


def _with_retries(policy: dict[str, object], retries: list[str], text: str) -> dict[str, object]:
    if not retries:
        return policy
    if not retries[0].isdecimal():
        raise _bad_policy(text)
    return {**policy, "maxRetries": int(retries[0])}


def _multiplier(field: str, text: str) -> float:
    try:
        return float(field)
    except ValueError:
        raise _bad_policy(text) from None


def _bad_policy(text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(
        f"{text!r}: expected {FAILURE_POLICY_FORMS}, e.g. constant:1s:3 or exponential:1s:5m:2:10"
    )


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


def _command(
    subparsers: Any, name: str, help_text: str, command: Command, scoped: bool = True
) -> Any:
    """A command's parser with `--node`, and, when it acts for one app, `--app-id` and
    `--namespace`."""
    parser = subparsers.add_parser(name, help=help_text)
    parser.add_argument("--node", default=DEFAULT_NODE_URL, help="the node's HTTP base URL")
    if scoped:
        parser.add_argument(
            "--app-id",
            help="the app the jobs belong to (default: the app token's, else 'default')",
        )
        parser.add_argument("--namespace", help="default: the app token's, else 'default'")
    else:
        parser.set_defaults(app_id=None, namespace=None)
    parser.add_argument("--admin-token-file", type=Path, help=f"else {ADMIN_TOKEN_ENV}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where `tock up` keeps the admin token (default: .tock)",
    )
    parser.add_argument("--ca-file", type=Path, help="the CA of a node's https:// certificate")
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
            ca_file=args.ca_file,
        ) as client:
            await command(client, args)

    try:
        asyncio.run(go())
    except (TockError, OSError) as error:
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
        jitter=args.jitter,
        delivery_timeout=args.delivery_timeout,
    )
    print(f"created {args.name}")


async def _get(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.get(args.name))


async def _list(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.list_all(args.prefix))


async def _delete(client: TockClient, args: argparse.Namespace) -> None:
    await client.delete(args.name)
    print(f"deleted {args.name}")


async def _pause(client: TockClient, args: argparse.Namespace) -> None:
    await client.pause(args.name)
    print(f"paused {args.name}")


async def _resume(client: TockClient, args: argparse.Namespace) -> None:
    await client.resume(args.name)
    print(f"resumed {args.name}")


async def _run_now(client: TockClient, args: argparse.Namespace) -> None:
    await client.run(args.name)
    print(f"running {args.name}")


async def _history(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.history(args.name, args.limit))


async def _letters(client: TockClient, args: argparse.Namespace) -> None:
    _print_json(await client.dead_letters_all(args.prefix))


async def _redrive(client: TockClient, args: argparse.Namespace) -> None:
    await client.redrive(args.id)
    print(f"redriving {args.id}")


async def _forget(client: TockClient, args: argparse.Namespace) -> None:
    await client.delete_dead_letter(args.id)
    print(f"deleted {args.id}")


async def _export(client: TockClient, args: argparse.Namespace) -> None:
    filters = {"namespace": args.only_namespace, "app": args.only_app, "prefix": args.prefix}
    if args.file == STDIO:
        await client.export_to(sys.stdout.buffer, **filters)
        return
    # Written beside FILE and renamed once complete: a failed export never leaves a FILE that
    # looks whole but lacks jobs.
    target = Path(args.file)
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False
    ) as partial:
        try:
            jobs = await client.export_to(partial, **filters)
        except BaseException:
            os.unlink(partial.name)
            raise
    os.replace(partial.name, target)
    print(f"exported {jobs} jobs to {target}")


async def _import(client: TockClient, args: argparse.Namespace) -> None:
    progress = ImportProgressLine(sys.stderr, None if args.file == STDIO else Path(args.file))
    source: IO[bytes] | Path = sys.stdin.buffer if args.file == STDIO else Path(args.file)
    imported, skipped = await client.import_(source, args.overwrite, progress)
    print(f"imported {imported}, skipped {skipped}")


class ImportProgressLine:
    """Writes how far an import got each time another PROGRESS_EVERY_LINES jobs were sent:
    small files say nothing, large ones show that they move (and, from a file, how much is
    left)."""

    def __init__(self, out: IO[str], file: Path | None) -> None:
        self._out = out
        self._total_bytes = file.stat().st_size if file is not None else None
        self._steps_shown = 0

    def __call__(self, sent_bytes: int, sent_lines: int) -> None:
        steps = sent_lines // PROGRESS_EVERY_LINES
        if steps == self._steps_shown:
            return
        self._steps_shown = steps
        done = f"{sent_bytes / MIB:.1f} MiB"
        if self._total_bytes:
            share = 100 * sent_bytes // self._total_bytes
            done += f" of {self._total_bytes / MIB:.1f} MiB, {share}%"
        print(f"import: {sent_lines} jobs sent ({done})", file=self._out, flush=True)


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
