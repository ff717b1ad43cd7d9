"""Trigger throughput and lateness, end to end over HTTP: one-shot jobs in a real 3-node tock
cluster fire, go to a local app (`POST /job/{name}`), and are acked through Raft.

    scripts/bench trigger [--burst 5000] [--spread 20000] [--spread-seconds 20] [--in-flight 64]
                          [--target URL ... [--token TOKEN] [--sink-host HOST]]

Two scenarios, one after the other on the same cluster:
- burst: `burst` jobs all due at the same instant;
- spread: `spread` jobs due uniformly over `spread-seconds`.
The app is an aiohttp sink in this process that answers 200 at once and records each trigger's
receive time. Jobs are created first (concurrently, over all 3 nodes) with an absolute dueTime
far enough ahead that every create has answered before the first job is due: the lead time is
chosen from the create rate measured on a calibration batch (which also warms up delivery).

Figures per scenario: triggers delivered (must be all) and duplicates (by kind: `retry`, a later
attempt after an answer that came too late, or `refire`, the same attempt sent again after a fence
or an epoch; each with the node that sent the copy); lateness = receive time -
scheduled time (the `tock-scheduled-time` header) as min/p50/p99/max in ms, where the min must
never be below zero; delivered/s over [first due, last delivery]; acked/s over [first due, the
app holding none of the scenario's jobs any more], i.e. fired + delivered + acked through Raft.
Over that same window, for a cluster started here: the CPU its nodes used, summed (200% is two
cores' worth) and per trigger, and this process's (the sink's) CPU: what bounds the rate.

Then the reference (bench_ceiling.py): one aiohttp client process posts as many trigger-shaped
requests as the burst had to the same sink, 128 at a time (what a node keeps open to one app), with
nothing scheduled, replicated or acked; `ceiling/s` is what the sink received per second from it,
and the burst's delivered/s is shown as a ratio of that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from bench_report import Series
from bench_support import (
    Endpoints,
    Load,
    Receipt,
    TriggerSink,
    add_target_arguments,
    closed_loop,
    cpu_seconds,
    endpoints,
    get_json,
    now_ms,
    post_expecting,
    register_app,
    rfc3339,
    running_sink,
    spread,
)

CALIBRATION_JOBS = 300
CALIBRATION_DUE_S = 2.0
# Lead time = jobs / measured create rate x this, plus the margin: creates under load can be
# slower than in the calibration, and the first job must not be due before the last create.
LEAD_SAFETY_FACTOR = 2.0
LEAD_MARGIN_S = 3.0
DELIVERY_TIMEOUT_S = 120.0
ACKED_TIMEOUT_S = 60.0
ACKED_POLL_S = 0.1
# After everything arrived, listen this long more for duplicates.
QUIET_S = 1.0
# The reference client's requests in flight: as many as a node keeps open to one app
# (http_delivery.connections_per_host_max).
CEILING_IN_FLIGHT = 128
CEILING_CLIENT = Path(__file__).with_name("bench_ceiling.py")


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    spread_ms: int


@dataclass
class Rig:
    nodes: Endpoints
    sink: TriggerSink
    session: aiohttp.ClientSession
    in_flight: int
    # Per scenario, what the report draws: its receipts and its first due time (ms).
    series: dict[str, tuple[list[Receipt], int]] = field(default_factory=dict)


async def create_jobs(rig: Rig, prefix: str, due_ms: list[int]) -> Load:
    """Create one-shot jobs `{prefix}-{i}` due at `due_ms[i]`, spread over the nodes."""

    async def send(session: aiohttp.ClientSession, worker: int, i: int) -> None:
        urls = rig.nodes.urls
        url = f"{urls[worker % len(urls)]}/v1.0/jobs/{prefix}-{i:06d}"
        body = json.dumps({"dueTime": rfc3339(due_ms[i]), "data": {"i": i}}).encode()
        await post_expecting(session, url, body, 204, rig.nodes.app_headers)

    return await closed_loop(send, range(len(due_ms)), rig.in_flight)


def receipts_of(rig: Rig, prefix: str) -> list[Receipt]:
    return [r for r in rig.sink.receipts if r.name.startswith(prefix + "-")]


async def wait_no_jobs(rig: Rig, prefix: str, timeout_s: float) -> float | None:
    """Poll until the app holds no job named `prefix`-...; the wall time (ms) it was seen, or
    None. Only the benchmark's own jobs count: a cluster of the user's may hold others."""
    url = f"{rig.nodes.urls[0]}/v1.0/jobs?prefix={prefix}-&limit=1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = await get_json(rig.session, url, rig.nodes.app_headers)
        if not listed["jobs"]:
            return time.time_ns() / 1_000_000
        await asyncio.sleep(ACKED_POLL_S)
    return None


async def calibrate(rig: Rig) -> float:
    """Creates/s on a small batch of jobs, which are then delivered and acked (a warm-up)."""
    due = now_ms() + int(CALIBRATION_DUE_S * 1000)
    load = await create_jobs(rig, "calibrate", [due] * CALIBRATION_JOBS)
    await rig.sink.wait_for(load.done, DELIVERY_TIMEOUT_S)
    await wait_no_jobs(rig, "calibrate", ACKED_TIMEOUT_S)
    return load.done / load.elapsed_s


async def run_scenario(rig: Rig, scenario: Scenario, create_rate: float) -> dict[str, object]:
    lead_ms = int((scenario.jobs / create_rate * LEAD_SAFETY_FACTOR + LEAD_MARGIN_S) * 1000)
    first_due = now_ms() + lead_ms
    step = scenario.spread_ms / scenario.jobs
    due_ms = [first_due + int(i * step) for i in range(scenario.jobs)]
    # Scenarios run one after the other, each only once the last one's jobs are all acked.
    before = len(rig.sink.receipts)
    load = await create_jobs(rig, scenario.name, due_ms)
    created_ms = now_ms()
    # The CPU spent from the first due time on is the triggers' (and the polls below).
    await asyncio.sleep(max(first_due - now_ms(), 0) / 1000)
    cpu_at_due = cpu_seconds(rig.nodes.pids), time.process_time()
    await rig.sink.wait_for(
        before + load.done, (due_ms[-1] - created_ms) / 1000 + DELIVERY_TIMEOUT_S
    )
    acked_ms = await wait_no_jobs(rig, scenario.name, ACKED_TIMEOUT_S)
    cpu_at_acked = cpu_seconds(rig.nodes.pids), time.process_time()
    cpu = cpu_figures(cpu_at_due, cpu_at_acked, first_due, load.done)
    await asyncio.sleep(QUIET_S)
    receipts = receipts_of(rig, scenario.name)
    rig.series[scenario.name] = receipts, first_due
    return {
        "jobs": scenario.jobs,
        "spread_s": scenario.spread_ms / 1000,
        "lead_s": lead_ms / 1000,
        "create": load.figures(),
        "created_before_first_due": created_ms < first_due,
        **delivery_figures(receipts, load.done, first_due, acked_ms),
        **cpu,
    }


def cpu_figures(
    at_due: tuple[float | None, float],
    at_acked: tuple[float | None, float],
    first_due: int,
    triggers: int,
) -> dict[str, object]:
    """Over [first due, all acked]: the nodes' CPU summed, in % and per trigger (None for a
    cluster not started here), and this process's (the sink's) in %."""
    window_s = max(now_ms() - first_due, 1) / 1000
    figures: dict[str, object] = {
        "sink_cpu_pct": round(100 * (at_acked[1] - at_due[1]) / window_s, 1),
        "cluster_cpu_pct": None,
        "cluster_cpu_us_per_trigger": None,
    }
    if at_due[0] is not None and at_acked[0] is not None:
        cluster_s = at_acked[0] - at_due[0]
        figures["cluster_cpu_pct"] = round(100 * cluster_s / window_s, 1)
        figures["cluster_cpu_us_per_trigger"] = round(1e6 * cluster_s / max(triggers, 1))
    return figures


def duplicates_by_kind(receipts: list[Receipt]) -> dict[str, int]:
    """The extra copies of trigger ids, by why: `retry` (a later attempt of the occurrence: an
    answer that came after the attempt timeout), `refire` (the same attempt again: a fence or an
    epoch sent it twice), each counted with the node that sent the extra copy."""
    seen: set[tuple[str, int]] = set()
    first: set[str] = set()
    kinds: Counter[str] = Counter()
    for receipt in sorted(receipts, key=lambda r: r.received_ms):
        if receipt.trigger_id in first:
            again = (receipt.trigger_id, receipt.attempt) in seen
            kinds[f"{'refire' if again else 'retry'} from {receipt.node or '?'}"] += 1
        first.add(receipt.trigger_id)
        seen.add((receipt.trigger_id, receipt.attempt))
    return dict(kinds)


def delivery_figures(
    receipts: list[Receipt], created: int, first_due: int, acked_ms: float | None
) -> dict[str, object]:
    if not receipts:
        return {"delivered": 0, "missing": created}
    distinct = {r.trigger_id for r in receipts}
    lateness = [r.received_ms - r.scheduled_ms for r in receipts]
    last_ms = max(r.received_ms for r in receipts)
    delivered_s = max(last_ms - first_due, 1.0) / 1000
    figures: dict[str, object] = {
        "delivered": len(distinct),
        "missing": created - len(distinct),
        "duplicates": len(receipts) - len(distinct),
        "duplicates_by_kind": duplicates_by_kind(receipts),
        "lateness_ms": spread(lateness),
        "early": sum(1 for x in lateness if x < 0),
        "delivered_per_s": round(len(distinct) / delivered_s, 1),
        "acked_per_s": None,
    }
    if acked_ms is not None:
        figures["acked_per_s"] = round(len(distinct) / (max(acked_ms - first_due, 1.0) / 1000), 1)
    return figures


async def run(nodes: Endpoints, args: argparse.Namespace) -> dict[str, object]:
    scenarios = [
        Scenario("burst", args.burst, 0),
        Scenario("spread", args.spread, int(args.spread_seconds * 1000)),
    ]
    session = aiohttp.ClientSession()
    async with running_sink(args.sink_host) as sink, session:
        rig = Rig(nodes, sink, session, args.in_flight)
        await register_app(session, nodes.urls[0], sink.url, nodes.app, nodes.app_headers)
        create_rate = await calibrate(rig)
        rows = {s.name: await run_scenario(rig, s, create_rate) for s in scenarios if s.jobs > 0}
        ceiling = await measure_ceiling(sink, args.burst) if args.burst > 0 else None
    figures: dict[str, object] = {"calibration_creates_per_s": round(create_rate, 1), **rows}
    if ceiling is not None:
        figures["ceiling"] = ceiling
        delivered_per_s = rows["burst"].get("delivered_per_s")
        if isinstance(delivered_per_s, float | int):
            figures["burst_over_ceiling"] = round(delivered_per_s / ceiling["per_s"], 2)
    return {**figures, "series": plots(rig)}


async def measure_ceiling(sink: TriggerSink, count: int) -> dict[str, float]:
    """`count` trigger-shaped requests from one aiohttp client process to `sink`: the rate the
    sink received them at, over [first, last], and the sink's CPU meanwhile."""
    prefix = "ceiling"
    cpu_before = time.process_time()
    client = await asyncio.create_subprocess_exec(
        sys.executable, str(CEILING_CLIENT), sink.url, prefix, str(count), str(CEILING_IN_FLIGHT)
    )
    if await client.wait() != 0:
        raise RuntimeError(f"the reference client exited with {client.returncode}")
    cpu_s = time.process_time() - cpu_before
    received = [r.received_ms for r in sink.receipts if r.name.startswith(prefix + "-")]
    window_s = max(max(received) - min(received), 1.0) / 1000
    return {
        "requests": len(received),
        "per_s": round(len(received) / window_s, 1),
        "sink_cpu_pct": round(100 * cpu_s / window_s, 1),
    }


def plots(rig: Rig) -> dict[str, Series]:
    """Per scenario: deliveries per second since the first due time, and the lateness CDF."""
    drawn: dict[str, Series] = {}
    for name, (receipts, first_due) in rig.series.items():
        arrived_s = [max(0.0, r.received_ms - first_due) / 1000 for r in receipts]
        lateness_ms = [r.received_ms - r.scheduled_ms for r in receipts]
        drawn[f"{name}-throughput"] = Series(
            "rate", f"{name}: triggers delivered per second", "triggers", arrived_s
        )
        drawn[f"{name}-lateness"] = Series("cdf", f"{name}: lateness CDF", "ms", lateness_ms)
    return drawn


def print_table(figures: dict[str, object]) -> None:
    print(
        f"{'scenario':>8} {'jobs':>6} {'deliv':>6} {'dup':>4} {'deliv/s':>8} {'acked/s':>8} "
        f"{'late min':>8} {'p50':>7} {'p99':>7} {'max':>7} {'lead s':>6} {'in time':>7} "
        f"{'srv cpu%':>8} {'us/trig':>7} {'sink cpu%':>9}"
    )
    for name in ("burst", "spread"):
        row = figures.get(name)
        if not isinstance(row, dict):
            continue
        late = row.get("lateness_ms", {})
        print(
            f"{name:>8} {row['jobs']:>6} {row['delivered']:>6} {row.get('duplicates', '-'):>4} "
            f"{row.get('delivered_per_s', '-'):>8} {row.get('acked_per_s', '-')!s:>8} "
            f"{late.get('min', '-'):>8} {late.get('p50', '-'):>7} {late.get('p99', '-'):>7} "
            f"{late.get('max', '-'):>7} {row['lead_s']:>6} {row['created_before_first_due']!s:>7} "
            f"{row.get('cluster_cpu_pct') or '-':>8} "
            f"{row.get('cluster_cpu_us_per_trigger') or '-':>7} {row.get('sink_cpu_pct', '-'):>9}"
        )
        if row.get("early"):
            print(f"!! {name}: {row['early']} triggers arrived before their scheduled time")
    ceiling = figures.get("ceiling")
    if isinstance(ceiling, dict):
        print(
            f"reference: one aiohttp client process to the same sink: {ceiling['per_s']} "
            f"requests/s (sink cpu {ceiling['sink_cpu_pct']}%); burst delivered/s over it: "
            f"{figures.get('burst_over_ceiling', '-')}x"
        )


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench trigger",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--burst", type=int, default=5000, help="jobs due at one instant")
    parser.add_argument("--spread", type=int, default=20000, help="jobs due over a window")
    parser.add_argument("--spread-seconds", type=float, default=20.0, help="that window")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent creates")
    parser.add_argument(
        "--sink-host",
        default="127.0.0.1",
        help="the address the app (sink) listens on; with --target, one the cluster can reach "
        "and its delivery rules allow",
    )
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    with endpoints(args) as nodes:
        figures = asyncio.run(run(nodes, args))
    print_table(figures)
    return figures
