"""Trigger throughput and lateness over the watch stream in a real 3-node cluster:
`jobs` one-shot jobs due at one instant go to watchers that ack each trigger at once.

    scripts/bench watch [--jobs 20000] [--watchers 3] [--lead-seconds auto] [--in-flight 64]

Watcher k holds its stream on node k mod 3. An owner delivers to a watcher of its own first: with
one on every node (the default) no trigger takes a hop; with fewer (`--watchers 1`), the owners
without one forward theirs to a node that has one. Jobs are created first
(concurrently, over all nodes) with an absolute dueTime `lead` seconds ahead, long enough that
every create has answered before the first is due (reported as `created_before_due`).

Figures: triggers delivered (must be all) and duplicates; lateness = receive time - scheduled
time (the frame's `scheduledTime`) as min/p50/p99/max in ms, never below zero; delivered/s over
[due, last delivery]; acked/s over [due, the cluster holding none of the jobs any more], i.e.
fired + delivered + acked through Raft; over that same window, the three nodes' CPU summed, as a
% of one core and in µs per trigger (`us/trig`: what each trigger cost the cluster, steadier
from run to run than the rates, which follow the machine's speed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aiohttp
from bench_report import Series
from bench_support import (
    Load,
    closed_loop,
    cpu_seconds,
    get_json,
    now_ms,
    post_expecting,
    rfc3339,
    rfc3339_ms,
    spread,
    tock_cluster,
)

from node.client.client import SUCCESS, TockClient, WatchStream

APP = "default"
# Creates per second assumed before the first due time: lead = jobs / this + the margin.
ASSUMED_CREATES_PER_S = 800
LEAD_MARGIN_S = 3.0
DELIVERY_TIMEOUT_S = 120.0
ACKED_TIMEOUT_S = 60.0
ACKED_POLL_S = 0.1
# After everything arrived, listen this long more for duplicates.
QUIET_S = 1.0


@dataclass
class Receipts:
    """Every trigger the watchers got: (trigger id, scheduled ms, received ms)."""

    wanted: int
    rows: list[tuple[str, int, float]] = field(default_factory=list)
    distinct: set[str] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, trigger_id: str, scheduled_ms: int) -> None:
        self.rows.append((trigger_id, scheduled_ms, time.time_ns() / 1_000_000))
        self.distinct.add(trigger_id)
        if len(self.distinct) >= self.wanted:
            self.arrived.set()


async def watch(stream: WatchStream, receipts: Receipts) -> None:
    async for batch in stream:
        for trigger in batch:
            receipts.add(trigger.trigger_id, rfc3339_ms(trigger.scheduled_time))
        await stream.ack([(trigger.id, SUCCESS) for trigger in batch])


async def create_jobs(node_urls: list[str], count: int, due_ms: int, in_flight: int) -> Load:
    body = json.dumps({"dueTime": rfc3339(due_ms)}).encode()

    async def send(session: aiohttp.ClientSession, worker: int, i: int) -> None:
        url = f"{node_urls[worker % len(node_urls)]}/v1.0/jobs/watch-{i:06d}"
        await post_expecting(session, url, body, 204)

    return await closed_loop(send, range(count), in_flight)


async def wait_no_jobs(session: aiohttp.ClientSession, node_url: str) -> float | None:
    deadline = time.monotonic() + ACKED_TIMEOUT_S
    while time.monotonic() < deadline:
        if (await get_json(session, f"{node_url}/admin/cluster"))["jobs"] == 0:
            return time.time_ns() / 1_000_000
        await asyncio.sleep(ACKED_POLL_S)
    return None


async def cpu_when_due(due_ms: int, pids: tuple[int, ...]) -> float | None:
    """The nodes' CPU seconds so far, read at `due_ms`."""
    await asyncio.sleep(max(due_ms - now_ms(), 0) / 1000)
    return cpu_seconds(pids)


async def run(
    node_urls: list[str],
    pids: tuple[int, ...],
    admin_headers: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, object]:
    receipts = Receipts(wanted=args.jobs)
    lead_s = args.lead_seconds or args.jobs / ASSUMED_CREATES_PER_S + LEAD_MARGIN_S
    # The admin token on every request: the status polls need it, the creates ignore it.
    session = aiohttp.ClientSession(headers=admin_headers)
    async with session, AsyncExitStack() as held:
        streams = []
        for k in range(args.watchers):
            client = TockClient(node_urls[k % len(node_urls)], app_id=APP)
            held.push_async_callback(client.close)
            streams.append(await held.enter_async_context(client.watch()))
        watching = [asyncio.create_task(watch(stream, receipts)) for stream in streams]
        due_ms = now_ms() + int(lead_s * 1000)
        load = await create_jobs(node_urls, args.jobs, due_ms, args.in_flight)
        created_ms = now_ms()
        cpu_at_due = asyncio.create_task(cpu_when_due(due_ms, pids))
        wait_s = max(due_ms - created_ms, 0) / 1000 + DELIVERY_TIMEOUT_S
        try:
            await asyncio.wait_for(receipts.arrived.wait(), wait_s)
        except TimeoutError:
            print(f"!! only {len(receipts.rows)} of {load.done} triggers arrived in time")
        acked_ms = await wait_no_jobs(session, node_urls[0])
        cpu_s = cpu_used(await cpu_at_due, cpu_seconds(pids))
        await asyncio.sleep(QUIET_S)
        for task in watching:
            task.cancel()
    row = figures(receipts, load, due_ms, created_ms, acked_ms, lead_s, args.watchers)
    acked_window_s = None if acked_ms is None else max(acked_ms - due_ms, 1.0) / 1000
    return {**row, **cluster_cpu(cpu_s, acked_window_s, len(receipts.distinct))}


def cpu_used(started: float | None, ended: float | None) -> float | None:
    return None if started is None or ended is None else ended - started


def cluster_cpu(
    cpu_s: float | None, window_s: float | None, triggers: int
) -> dict[str, float | None]:
    """The nodes' CPU over [due, all acked]: % of one core, and µs per trigger delivered."""
    if cpu_s is None or window_s is None or not triggers:
        return {"cluster_cpu_pct": None, "cluster_cpu_us_per_trigger": None}
    return {
        "cluster_cpu_pct": round(100 * cpu_s / window_s, 1),
        "cluster_cpu_us_per_trigger": round(1e6 * cpu_s / triggers),
    }


def figures(
    receipts: Receipts,
    load: Load,
    due_ms: int,
    created_ms: int,
    acked_ms: float | None,
    lead_s: float,
    watchers: int,
) -> dict[str, object]:
    distinct = receipts.distinct
    lateness = [received - scheduled for _, scheduled, received in receipts.rows] or [0.0]
    last_ms = max((row[2] for row in receipts.rows), default=float(due_ms))
    acked_s = None if acked_ms is None else max(acked_ms - due_ms, 1.0) / 1000
    return {
        "jobs": load.done,
        "watchers": watchers,
        "lead_s": round(lead_s, 1),
        "created_before_due": created_ms < due_ms,
        "create": load.figures(),
        "delivered": len(distinct),
        "missing": load.done - len(distinct),
        "duplicates": len(receipts.rows) - len(distinct),
        "lateness_ms": spread(lateness),
        "early": sum(1 for x in lateness if x < 0),
        "delivered_per_s": round(len(distinct) / (max(last_ms - due_ms, 1.0) / 1000), 1),
        "acked_per_s": None if acked_s is None else round(len(distinct) / acked_s, 1),
        "series": {
            "delivered": Series(
                "rate",
                "triggers received per second, from the due time",
                "triggers",
                [max(0.0, (received - due_ms) / 1000) for _, _, received in receipts.rows],
            ),
            "lateness": Series("cdf", "trigger lateness", "ms", lateness),
        },
    }


def print_table(row: dict[str, object]) -> None:
    late = row["lateness_ms"]
    assert isinstance(late, dict)
    print(
        f"{'jobs':>6} {'watch':>5} {'deliv':>6} {'dup':>4} {'deliv/s':>8} {'acked/s':>8} "
        f"{'late min':>8} {'p50':>7} {'p99':>7} {'max':>7} {'lead s':>6} {'in time':>7} "
        f"{'srv cpu%':>8} {'us/trig':>7}"
    )
    print(
        f"{row['jobs']:>6} {row['watchers']:>5} {row['delivered']:>6} {row['duplicates']:>4} "
        f"{row['delivered_per_s']:>8} {row['acked_per_s']!s:>8} {late['min']:>8} "
        f"{late['p50']:>7} {late['p99']:>7} {late['max']:>7} {row['lead_s']:>6} "
        f"{row['created_before_due']!s:>7} {row['cluster_cpu_pct'] or '-':>8} "
        f"{row['cluster_cpu_us_per_trigger'] or '-':>7}"
    )
    if row["early"]:
        print(f"!! {row['early']} triggers arrived before their scheduled time")


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench watch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20000, help="jobs due at one instant")
    parser.add_argument("--watchers", type=int, default=3, help="streams, spread over nodes")
    parser.add_argument("--lead-seconds", type=float, default=0.0, help="0: from --jobs")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent creates")
    args = parser.parse_args(argv)
    with tock_cluster() as cluster:
        node_urls = [node.url for node in cluster.nodes]
        pids = tuple(node.pid for node in cluster.nodes if node.pid is not None)
        row = asyncio.run(run(node_urls, pids, cluster.admin_headers(), args))
    print_table(row)
    return row
