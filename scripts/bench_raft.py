"""Raft store throughput and commit latency: 3 node processes on 127.0.0.1, durable config.

    scripts/bench raft [--seconds 10] [--in-flight 1,100] [--value-bytes 200] [--from leader]

Each configuration starts a fresh 3-node cluster (tests/integration/raft_node.py, kv machine,
journal + dump + the hardened transport as it is at the time, cluster secret on), then a
driver inside one node keeps `in-flight` proposals outstanding for `seconds`: as soon as one
commits, the next is proposed (closed loop). "in-flight 1" is one command at a time;
"in-flight 100" is 100 concurrent callers, which the store batches into entries.

Figures per configuration: committed commands/s; commit latency p50/p99 in ms (propose() call
to its result on the driving node, which means applied there after a majority committed);
Raft entries used and commands per entry.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.raft_cluster import RaftCluster  # noqa: E402


def run_one(seconds: float, in_flight: int, value_bytes: int, driver: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as base, RaftCluster(Path(base)) as c:
        c.start()
        leader = c.wait_leader()
        node = leader if driver == "leader" else next(n for n in c.nodes if n is not leader)
        figures = node.ok(
            "load",
            timeout=seconds + 60,
            seconds=seconds,
            in_flight=in_flight,
            value_bytes=value_bytes,
        )
        c.wait_converged(timeout=60)
    entries = max(1, int(figures["entries"]))
    return {
        "in_flight": in_flight,
        "driver": driver,
        "commands_per_s": round(float(figures["commands_per_s"]), 1),
        "latency_ms_p50": round(float(figures["latency_ms_p50"]), 2),
        "latency_ms_p99": round(float(figures["latency_ms_p99"]), 2),
        "committed": figures["committed"],
        "failed": figures["failed"],
        "entries": figures["entries"],
        "commands_per_entry": round(int(figures["commands"]) / entries, 1),
    }


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="scripts/bench raft", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", default="1,100")
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--from", dest="driver", choices=("leader", "follower"), default="leader")
    args = parser.parse_args(argv)
    rows = [
        run_one(args.seconds, int(w), args.value_bytes, args.driver)
        for w in args.in_flight.split(",")
    ]
    print(
        f"{'in flight':>9} {'cmd/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cmd/entry':>9} {'failed':>6}"
    )
    for row in rows:
        print(
            f"{row['in_flight']:>9} {row['commands_per_s']:>9} {row['latency_ms_p50']:>8} "
            f"{row['latency_ms_p99']:>8} {row['commands_per_entry']:>9} {row['failed']:>6}"
        )
    return {"seconds": args.seconds, "value_bytes": args.value_bytes, "rows": rows}
