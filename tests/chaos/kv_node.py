"""A minimal pysyncobj node for the Raft fault tests: a replicated key-value map and a control port.

Run: python -m tests.chaos.kv_node --self 127.0.0.1:P --peers 127.0.0.1:Q,127.0.0.1:R
     --data DIR --control C [--compaction-entries N] [--transport hardened|stock]

It exercises store/raft_transport.py exactly as the store configures pysyncobj (journal + dump,
password, no batching, huge connection timeout), without the rest of tock, so a fault test can
blame the transport alone. The control port speaks JSON lines on 127.0.0.1:
  {"op": "put", "id": N, "keys": [...]}  -> later {"id": N, "err": code}   (0 = committed)
  {"op": "status"}                        -> {"status": {...}}
  {"op": "data"}                          -> {"data": {key: write id}}
One write sets all its keys in one log entry, so a write is either wholly applied or absent.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.transport import TCPTransport

from store.raft_transport import HardenedTransport, HardeningConfig

CHAOS_PASSWORD = "chaos-secret"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Make a forked dump child die with its node, as a machine crash would take both.

    Without this, a SIGKILLed node leaves its dump child running: it holds the node's listening
    ports (a restart cannot bind) and renames a stale dump into place after the restart.
    """
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class KeyValueMap(SyncObjConsumer):  # type: ignore[misc]
    """The replicated state: key -> id of the write that set it."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, int] = {}

    @replicated  # type: ignore[untyped-decorator]
    def put_many(self, write_id: int, keys: list[str]) -> int:
        for key in keys:
            self.data[key] = write_id
        return write_id


class KvNode(SyncObj):  # type: ignore[misc]
    def __init__(self, arguments: argparse.Namespace, kv: KeyValueMap) -> None:
        # Set before SyncObj.__init__: read by HardenedTransport, and not snapshot state.
        self.hardening = HardeningConfig(
            quiet_election_timeout_s_min=arguments.quiet_min,
            quiet_election_timeout_s_max=arguments.quiet_max,
        )
        data_dir = Path(arguments.data)
        conf = SyncObjConf(
            journalFile=str(data_dir / "raft.journal"),
            fullDumpFile=str(data_dir / "raft.dump"),
            password=CHAOS_PASSWORD,
            connectionTimeout=1e6,
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            leaderFallbackTimeout=3.0,
            logCompactionMinEntries=arguments.compaction_entries,
            logCompactionMinTime=1e9,
        )
        transport = HardenedTransport if arguments.transport == "hardened" else TCPTransport
        peers = [peer for peer in arguments.peers.split(",") if peer]
        super().__init__(arguments.self, peers, conf, consumers=[kv], transportClass=transport)


def node_status(node: KvNode, kv: KeyValueMap) -> dict[str, Any]:
    status = node.getStatus()
    transport = node._SyncObj__transport
    stats = asdict(transport.stats()) if isinstance(transport, HardenedTransport) else {}
    leader = status["leader"]
    return {
        "state": status["state"],
        "leader": leader.address if leader is not None else None,
        "term": status["raft_term"],
        "commit": status["commit_idx"],
        "applied": status["last_applied"],
        "log_len": status["log_len"],
        "ready": node.isReady(),
        "keys": len(kv.data),
        "stats": stats,
    }


class ControlHandler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        write_lock = threading.Lock()

        def reply(payload: dict[str, Any]) -> None:
            line = (json.dumps(payload) + "\n").encode()
            # A client that went away counts its writes as unknown on its side.
            with write_lock, contextlib.suppress(OSError):
                self.connection.sendall(line)

        for raw in self.rfile:
            request = json.loads(raw)
            op = request["op"]
            if op == "put":
                self.put(request, reply)
            elif op == "status":
                reply({"status": node_status(self.server.node, self.server.kv)})
            elif op == "data":
                reply({"data": dict(self.server.kv.data)})

    def put(self, request: dict[str, Any], reply: Any) -> None:
        write_id = request["id"]

        def done(_result: Any, error: int) -> None:
            reply({"id": write_id, "err": error})

        self.server.kv.put_many(write_id, request["keys"], callback=done)


class ControlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, node: KvNode, kv: KeyValueMap) -> None:
        self.node = node
        self.kv = kv
        super().__init__(("127.0.0.1", port), ControlHandler)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--self", required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--data", required=True)
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--compaction-entries", type=int, default=2000)
    parser.add_argument("--transport", choices=["hardened", "stock"], default="hardened")
    parser.add_argument("--quiet-min", type=float, default=3.0)
    parser.add_argument("--quiet-max", type=float, default=4.0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.register_at_fork(after_in_child=die_with_parent)
    kv = KeyValueMap()
    node = KvNode(arguments, kv)
    server = ControlServer(arguments.control, node, kv)
    socket.setdefaulttimeout(None)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
