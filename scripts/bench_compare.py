"""tock against its references in one run, as ratios: etcd for creates, APScheduler for triggers.

    scripts/bench compare [--seconds 10] [--in-flight 64] [--jobs 5000]

1. Creates: `scripts/bench create`'s two halves, one after the other with the same driver: a
   local 3-node tock cluster (durable) and a 3-member etcd through its HTTP gateway (durable).
2. Triggers: `jobs` one-shot jobs due at the same instant, delivered over HTTP to the same kind
   of app (an aiohttp sink in this process). tock: `scripts/bench trigger`'s burst scenario on a
   local 3-node cluster. APScheduler: the in-process reference a single-process Python scheduler
   reaches: an AsyncIOScheduler in this process holding the same jobs (date triggers), each
   posting its trigger to the sink with aiohttp, the way a scheduler embedded in the app would.
   APScheduler keeps its jobs in memory: nothing is replicated, fsynced or acked.

Figures: each half's own figures, then tock/etcd (creates/s; the target is >= 2) and
tock/APScheduler (triggers delivered/s), with both sides' lateness.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import aiohttp
import bench_create
import bench_trigger
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from bench_support import (
    add_target_arguments,
    endpoints,
    now_ms,
    rfc3339,
    running_sink,
)

# Time from the last job added to the instant they are all due.
APSCHEDULER_LEAD_S = 2.0
JOBS_DEFAULT = 5000


async def apscheduler_burst(jobs: int) -> dict[str, object]:
    """`jobs` date jobs due at one instant in an in-process AsyncIOScheduler, posting to a sink."""
    async with running_sink() as sink, aiohttp.ClientSession() as session:

        async def fire(name: str, due_ms: int) -> None:
            headers = {"tock-scheduled-time": rfc3339(due_ms), "tock-trigger-id": name}
            async with session.post(f"{sink.url}/job/{name}", data=b"{}", headers=headers) as sent:
                await sent.read()

        scheduler = AsyncIOScheduler(timezone=UTC)
        due_ms = now_ms() + int(APSCHEDULER_LEAD_S * 1000) + jobs // 10  # adding takes time too
        run_date = datetime.fromtimestamp(due_ms / 1000, UTC)
        for i in range(jobs):
            name = f"aps-{i:06d}"
            scheduler.add_job(fire, "date", run_date=run_date, args=[name, due_ms], id=name)
        scheduler.start()
        try:
            await sink.wait_for(jobs, (due_ms - now_ms()) / 1000 + bench_trigger.DELIVERY_TIMEOUT_S)
        finally:
            scheduler.shutdown(wait=False)
        return bench_trigger.delivery_figures(sink.receipts, jobs, due_ms, None)


def ratio(ours: object, theirs: object) -> float | None:
    if isinstance(ours, float) and isinstance(theirs, float) and theirs > 0:
        return round(ours / theirs, 2)
    return None


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_create.add_load_arguments(parser)
    parser.add_argument("--jobs", type=int, default=JOBS_DEFAULT, help="triggers due at once")
    args = parser.parse_args(argv)
    # The halves run on local clusters: the arguments they read for --target stay unset.
    local = argparse.ArgumentParser()
    add_target_arguments(local)
    args = argparse.Namespace(**vars(local.parse_args([])), **vars(args))
    args.burst, args.spread, args.spread_seconds, args.sink_host = args.jobs, 0, 0.0, "127.0.0.1"

    creates = {"tock": bench_create.run_tock(args).figures(), "etcd": bench_create.run_etcd(args)}
    bench_create.print_table(creates)
    with endpoints(args) as nodes:
        tock_run = asyncio.run(bench_trigger.run(nodes, args))
    tock_run.pop("series")
    tock_burst = tock_run["burst"]
    aps_burst = asyncio.run(apscheduler_burst(args.jobs))
    assert isinstance(tock_burst, dict)

    figures: dict[str, object] = {
        "creates": creates,
        "triggers": {"tock": tock_burst, "apscheduler": aps_burst},
        "ratio_creates_tock_over_etcd": ratio(
            creates["tock"].get("requests_per_s"), creates["etcd"].get("requests_per_s")
        ),
        "ratio_triggers_tock_over_apscheduler": ratio(
            tock_burst.get("delivered_per_s"), aps_burst.get("delivered_per_s")
        ),
    }
    for name, row in (("tock", tock_burst), ("apscheduler", aps_burst)):
        print(
            f"{name:>11}: {row.get('delivered')} of {args.jobs} delivered, "
            f"{row.get('delivered_per_s')}/s, lateness {row.get('lateness_ms')}, "
            f"{row.get('duplicates', 0)} duplicates, {row.get('early', 0)} early"
        )
    print(f"creates:  tock / etcd = {figures['ratio_creates_tock_over_etcd']} (target >= 2)")
    print(f"triggers: tock / APScheduler = {figures['ratio_triggers_tock_over_apscheduler']}")
    return figures
