"""One Raft store node in a process of its own, driven over a JSON-lines control socket.

Tests (integration, chaos) start several of these on 127.0.0.1 through raft_cluster.py; the
benchmark drives its load from inside one of them. The CLI is stable:

    python -m tests.integration.raft_node --self 127.0.0.1:P --peers 127.0.0.1:Q,127.0.0.1:R
        --data-dir DIR --control-port C [--secret S] [--machine kv|jobs]
        [--log-compaction-entries N] [--batch-window-ms MS] [--batch-commands-max N]
        [--entries-in-flight-max N] [--chunk-assembly-entries-max N] [--audit-io]

The secret comes from --secret, else from the TOCK_RAFT_SECRET environment variable; without
one the node refuses to start (exit status 2, the reason on stderr). Logs go to stderr.

Control protocol: one JSON object per line on 127.0.0.1:C, answered by one JSON object per
line: {"ok": true, ...} or {"ok": false, "error": "<exception class>", "message": "..."}.
Bytes travel as base64 text. Requests on one connection run concurrently, so a client may
pipeline them; their answers come in completion order, each echoing the request's "id" field
when it had one. Requests ("op" and its fields):

- status: the store's status() as a dict (the transport's counters under "transport";
  role "stopped" until the node first ticked) plus digest
  (of the machine's to_bytes), events (commands seen by the subscriber), events_in_order
  (subscriber indexes never went back), restores (Restored events: snapshots loaded), pid,
  and io_audit (raft_io_audit.py) with --audit-io.
- propose {command, timeout}: {result}. The result is JSON as is, or its repr.
- propose_many {commands, timeout}: all proposed concurrently; {results: [{ok, result|error}]}.
- barrier {timeout}: returns once every write acknowledged before has been applied here.
- get {keys} (kv machine): {values: {key: base64 or null}} read locally; barrier first if
  asked with "barrier": true.
- items (kv machine): {items: {key: base64 or integer}}, the whole map, read locally.
- compact: force a snapshot and log compaction now.
- load {seconds, in_flight, value_bytes}: closed-loop writes of kv "set" commands from this
  node, `in_flight` proposals outstanding at all times: {committed, failed, seconds,
  latency_ms_p50, latency_ms_p99, entries, commands}.
- stop: stop the store cleanly, answer, exit 0.

Machines: `kv` is a small deterministic key/value machine defined here (commands are msgpack
["set", key, value], ["set_many", [keys], value] and ["incr", key, n]); `jobs` carries
store.machine.JobMachine (commands are store.codec encodings).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from cluster.ring import Ring
from store.errors import TockError, ValidationError
from store.log import Applied, Restored
from store.partition import PARTITIONS_DEFAULT
from store.raft.config import RaftConfig, RaftTuning
from store.raft.state import StateMachine
from store.raft.store import RaftStore
from tests.integration.raft_io_audit import IoAudit

log = logging.getLogger("raft_node")

EXIT_CONFIG_REFUSED = 2
# One control request line may carry a 1 MiB command, base64-encoded, and then some.
CONTROL_LINE_BYTES_MAX = 64 * 1024 * 1024


class KvMachine:
    """A deterministic map of text keys to bytes or integers; results are JSON-able."""

    def __init__(self) -> None:
        self.data: dict[str, bytes | int] = {}
        self.applied = 0

    def apply_command(self, command: bytes) -> object:
        self.applied += 1
        try:
            op, key, value = msgpack.unpackb(command, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return "error: undecodable command"
        if op == "set" and isinstance(key, str) and isinstance(value, bytes):
            self.data[key] = value
            return self.applied
        if op == "set_many" and isinstance(key, list) and isinstance(value, bytes):
            # One command, so all its keys are set together or none is: what a chaos test checks.
            self.data.update(dict.fromkeys(map(str, key), value))
            return self.applied
        if op == "incr" and isinstance(key, str) and isinstance(value, int):
            current = self.data.get(key, 0)
            total = (current if isinstance(current, int) else 0) + value
            self.data[key] = total
            return total
        return f"error: bad command {op!r}"

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.applied, sorted(self.data.items())], use_bin_type=True)

    def load_bytes(self, data: bytes) -> None:
        applied, items = msgpack.unpackb(data, raw=False)
        self.applied = applied
        self.data = dict(items)


def kv_set(key: str, value: bytes) -> bytes:
    return msgpack.packb(["set", key, value], use_bin_type=True)


def kv_set_many(keys: list[str], value: bytes) -> bytes:
    return msgpack.packb(["set_many", keys, value], use_bin_type=True)


def kv_incr(key: str, amount: int) -> bytes:
    return msgpack.packb(["incr", key, amount], use_bin_type=True)


def make_machine(name: str) -> StateMachine:
    if name == "kv":
        return KvMachine()
    from store.machine import JobMachine

    return JobMachine(PARTITIONS_DEFAULT, Ring)


def _json_fields(fields: list[tuple[str, object]]) -> dict[str, object]:
    """A status dataclass's fields as JSON holds them: a set as a sorted list."""
    return {
        name: sorted(value) if isinstance(value, frozenset) else value for name, value in fields
    }


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _error(error: BaseException) -> dict[str, object]:
    return {"ok": False, "error": type(error).__name__, "message": str(error)}


def _encoded(value: bytes | int | None) -> object:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


class Node:
    """The store, its machine, and the control requests."""

    def __init__(self, store: RaftStore, machine: StateMachine, audit: IoAudit | None) -> None:
        self.store = store
        self.machine = machine
        self.audit = audit
        self.events = 0
        self.restores = 0
        self.last_event_index = 0
        self.events_in_order = True
        self.stopping = asyncio.Event()
        store.subscribe(self._on_applied)

    def _on_applied(self, applied: Applied) -> None:
        if isinstance(applied.result, Restored):
            self.restores += 1
            return
        self.events += 1
        self.events_in_order &= applied.index >= self.last_event_index
        self.last_event_index = applied.index

    async def handle(self, request: dict[str, Any]) -> dict[str, object]:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            return {"ok": False, "error": "UnknownOp", "message": f"unknown op {op!r}"}
        try:
            answer: dict[str, object] = await handler(request)
        except TockError as error:
            return _error(error)
        return {"ok": True, **answer}

    async def op_status(self, request: dict[str, Any]) -> dict[str, object]:
        digest = hashlib.blake2b(self.machine.to_bytes(), digest_size=16).hexdigest()
        return {
            **dataclasses.asdict(self.store.status(), dict_factory=_json_fields),
            "digest": digest,
            "events": self.events,
            "events_in_order": self.events_in_order,
            "restores": self.restores,
            "pid": os.getpid(),
            "io_audit": None if self.audit is None else self.audit.snapshot(),
        }

    async def op_propose(self, request: dict[str, Any]) -> dict[str, object]:
        command = base64.b64decode(request["command"])
        result = await self.store.propose(command, float(request.get("timeout", 10.0)))
        return {"result": _jsonable(result)}

    async def op_propose_many(self, request: dict[str, Any]) -> dict[str, object]:
        timeout = float(request.get("timeout", 10.0))
        commands = [base64.b64decode(c) for c in request["commands"]]
        outcomes = await asyncio.gather(
            *(self.store.propose(c, timeout) for c in commands), return_exceptions=True
        )
        results: list[dict[str, object]] = []
        for outcome in outcomes:
            if isinstance(outcome, TockError):
                results.append(_error(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append({"ok": True, "result": _jsonable(outcome)})
        return {"results": results}

    async def op_propose_and_transfer(self, request: dict[str, Any]) -> dict[str, object]:
        """Propose a command and, without waiting for it, ask for a leadership transfer: what a
        leader whose clock is off does on each heartbeat (cluster/membership.py)."""
        command = base64.b64decode(request["command"])
        proposal = asyncio.ensure_future(self.store.propose(command, 10.0))
        await asyncio.sleep(0)
        self.store.transfer_leadership()
        return {"result": _jsonable(await proposal)}

    async def op_barrier(self, request: dict[str, Any]) -> dict[str, object]:
        await self.store.barrier(float(request.get("timeout", 10.0)))
        return {}

    async def op_get(self, request: dict[str, Any]) -> dict[str, object]:
        machine = self._kv_machine("get")
        if request.get("barrier"):
            await self.store.barrier(float(request.get("timeout", 10.0)))
        return {"values": {key: _encoded(machine.data.get(key)) for key in request["keys"]}}

    async def op_items(self, request: dict[str, Any]) -> dict[str, object]:
        machine = self._kv_machine("items")
        return {"items": {key: _encoded(value) for key, value in machine.data.items()}}

    def _kv_machine(self, op: str) -> KvMachine:
        if not isinstance(self.machine, KvMachine):
            raise ValidationError(f"{op} needs the kv machine")
        return self.machine

    async def op_compact(self, request: dict[str, Any]) -> dict[str, object]:
        self.store.force_compaction()
        return {}

    async def op_load(self, request: dict[str, Any]) -> dict[str, object]:
        return await closed_loop_load(
            self.store,
            seconds=float(request["seconds"]),
            in_flight=int(request["in_flight"]),
            value_bytes=int(request.get("value_bytes", 200)),
        )

    async def op_stop(self, request: dict[str, Any]) -> dict[str, object]:
        self.stopping.set()
        return {}


async def closed_loop_load(
    store: RaftStore, *, seconds: float, in_flight: int, value_bytes: int
) -> dict[str, object]:
    """Keep `in_flight` proposals outstanding for `seconds`; count and time the committed."""
    latencies: list[float] = []
    failed = 0
    value = b"v" * value_bytes
    before = store.status()
    deadline = time.monotonic() + seconds

    async def writer(number: int) -> None:
        nonlocal failed
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            started = time.monotonic()
            try:
                await store.propose(kv_set(f"w{number}-{sequence % 1000}", value), 10.0)
            except TockError:
                failed += 1
                continue
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(writer(n) for n in range(in_flight)))
    elapsed = time.monotonic() - started
    after = store.status()
    latencies.sort()
    return {
        "committed": len(latencies),
        "failed": failed,
        "seconds": elapsed,
        "commands_per_s": len(latencies) / elapsed,
        "latency_ms_p50": _percentile(latencies, 0.50) * 1000,
        "latency_ms_p99": _percentile(latencies, 0.99) * 1000,
        "entries": after.entries_proposed - before.entries_proposed,
        "commands": after.commands_proposed - before.commands_proposed,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def serve_control(node: Node, port: int) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answering: set[asyncio.Task[None]] = set()
        writing = asyncio.Lock()

        async def answer_one(request: dict[str, Any]) -> None:
            answer = await node.handle(request)
            if "id" in request:
                answer["id"] = request["id"]
            # A client that went away has given up on its answers (they are unknown to it).
            async with writing:
                if not writer.is_closing():
                    writer.write(json.dumps(answer).encode() + b"\n")
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()

        try:
            while line := await reader.readline():
                task = asyncio.create_task(answer_one(json.loads(line)))
                answering.add(task)
                task.add_done_callback(answering.discard)
            if answering:
                await asyncio.wait(answering)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(client, "127.0.0.1", port, limit=CONTROL_LINE_BYTES_MAX)


def parse_config(argv: list[str]) -> tuple[RaftConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="raft_node", description=__doc__.split("\n")[0])
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--secret", default=os.environ.get("TOCK_RAFT_SECRET", ""))
    parser.add_argument("--machine", choices=("kv", "jobs"), default="kv")
    tuning = RaftTuning()
    parser.add_argument(
        "--log-compaction-entries", type=int, default=tuning.log_compaction_entries_min
    )
    parser.add_argument("--batch-window-ms", type=float, default=tuning.batch_window_ms)
    parser.add_argument("--batch-commands-max", type=int, default=tuning.batch_commands_max)
    parser.add_argument("--entries-in-flight-max", type=int, default=tuning.entries_in_flight_max)
    parser.add_argument(
        "--chunk-assembly-entries-max", type=int, default=tuning.chunk_assembly_entries_max
    )
    parser.add_argument("--audit-io", action="store_true", help="run raft_io_audit.py")
    args = parser.parse_args(argv)
    config = RaftConfig(
        self_address=args.self_address,
        peer_addresses=tuple(p for p in args.peers.split(",") if p),
        data_dir=args.data_dir,
        secret=args.secret,
        tuning=RaftTuning(
            log_compaction_entries_min=args.log_compaction_entries,
            batch_window_ms=args.batch_window_ms,
            batch_commands_max=args.batch_commands_max,
            entries_in_flight_max=args.entries_in_flight_max,
            chunk_assembly_entries_max=args.chunk_assembly_entries_max,
        ),
    )
    return config, args


async def run(config: RaftConfig, args: argparse.Namespace) -> None:
    machine = make_machine(args.machine)
    audit = IoAudit(config.journal_file) if args.audit_io else None
    if audit is not None:
        audit.install()
    store = RaftStore(config, machine)
    node = Node(store, machine, audit)
    store.start()
    server = await serve_control(node, args.control_port)
    log.info("node %s up, control port %d", config.self_address, args.control_port)
    await node.stopping.wait()
    server.close()
    await store.stop()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        config, args = parse_config(argv)
        config.validate()
    except ValidationError as error:
        print(f"raft_node: refusing to start: {error}", file=sys.stderr)
        return EXIT_CONFIG_REFUSED
    asyncio.run(run(config, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
