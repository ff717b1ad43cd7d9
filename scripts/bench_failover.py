"""Failover: how long triggers stop when the Raft leader of a 3-node tock cluster is SIGKILLed.

    scripts/bench failover [--trials 5] [--jobs 60] [--watch-seconds 8] [--kill leader]

`jobs` jobs `@every 1s`, their first dueTimes staggered evenly over one second, so that each
node's partitions (about a third of the jobs) send the app a trigger every ~50 ms at the
default of 60. Each trial: wait until triggers flow, SIGKILL the current leader, watch for
`watch-seconds` while polling the survivors' `GET /admin/cluster` every 50 ms, then restart the
killed node and wait until the cluster is whole again; the next trial kills the next leader.
`--kill follower` kills a follower instead, for comparison: no election then, and the leader
declares the node dead once it applied its last heartbeat `lease_s + heard_margin_s` ago, with
no election first.

Figures per trial, in seconds from the SIGKILL:
- elected: a survivor reports a new leader (Raft election; none when a follower was killed);
- moved: a survivor's status shows the killed node owning no partitions, i.e. the membership
  epoch without it is committed (the leader declares a node dead once it applied its last
  heartbeat `lease_s + heard_margin_s` ago, 0.95 s by default, or its wall stamp is `dead_s`
  old, 1.3 s, when the new leader applied it only as it was elected);
- flowing: the first trigger the app receives, after the kill, of a job whose partition the
  killed node owned (the new owner has armed the partition and delivered);
- gap: the longest silence in the killed node's jobs' triggers around the kill;
- others_gap: the longest silence in the survivors' own jobs' triggers around the kill (their
  acks and heartbeats need a leader to commit);
- others_job: the longest silence of any one of the survivors' jobs around the kill (1 s when
  undisturbed: each job fires every second);
- dup, hdup: triggers received twice after the kill, and those of them whose first copy a
  survivor sent (the killed node's deliveries in flight may go out again; a survivor's never).
The target: flowing <= 1 s, median.
Then min/median/max over the trials. The parts of `flowing`: election = elected; dead-node
detection = moved - elected; re-arm and first delivery = flowing - moved.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bench_report import Series
from bench_support import (
    Receipt,
    TriggerSink,
    get_json,
    now_ms,
    post_expecting,
    register_app,
    rfc3339,
    running_sink,
    tock_cluster,
)

from cluster.local import LocalCluster
from cluster.ring import Ring
from store.partition import partition_of

APP_ID = "default"
NAMESPACE = "default"
INTERVAL_MS = 1000
FIRST_DUE_LEAD_MS = 3000
STATUS_POLL_S = 0.05
STATUS_TIMEOUT_S = 1.0
STEADY_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
# Triggers must have flowed this long, undisturbed, before a kill.
STEADY_S = 3.0
FIGURES = ("elected", "moved", "flowing", "gap", "others_gap", "others_job")


@dataclass
class Watch:
    """What the survivors' statuses showed after a kill: wall times in ms, None if never."""

    killed_ms: int
    # The leader before the kill: any other leader a survivor reports is a newly elected one.
    leader: str
    elected_ms: int | None = None
    moved_ms: int | None = None
    errors: int = 0


@dataclass
class Rig:
    cluster: LocalCluster
    sink: TriggerSink
    session: aiohttp.ClientSession
    names: list[str] = field(default_factory=list)


async def status(rig: Rig, node_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = await get_json(
        rig.session, f"{rig.cluster.node(node_id).url}/admin/cluster"
    )
    return answer


async def create_stream(rig: Rig, jobs: int) -> None:
    """`jobs` jobs every second, their phases staggered evenly over the second."""
    first_ms = now_ms() + FIRST_DUE_LEAD_MS
    url = rig.cluster.nodes[0].url
    for i in range(jobs):
        name = f"stream-{i:04d}"
        body = {"schedule": "@every 1s", "dueTime": rfc3339(first_ms + i * INTERVAL_MS // jobs)}
        await post_expecting(rig.session, f"{url}/v1.0/jobs/{name}", json.dumps(body).encode(), 204)
        rig.names.append(name)


async def owned_by(rig: Rig, victim: str) -> set[str]:
    """The stream's jobs whose partitions `victim` owns now, by the ring of the live members
    (cross-checked against the partition counts the cluster reports)."""
    view = await status(rig, victim)
    members = [m for m in view["members"] if m["alive"]]
    partitions = sum(m["partitions"] for m in members)
    ring = Ring([m["id"] for m in members], partitions)
    counts = {m["id"]: m["partitions"] for m in members}
    assert counts == {m: len(ring.partitions_of(m)) for m in counts}, view
    return {
        n for n in rig.names if ring.owner(partition_of(NAMESPACE, APP_ID, n, partitions)) == victim
    }


async def watch_survivors(rig: Rig, victim: str, watch: Watch, seconds: float) -> None:
    """Poll the survivors until `seconds` after the kill, noting the first new leader and the
    first status in which the victim owns no partitions."""
    survivors = [n.node_id for n in rig.cluster.nodes if n.node_id != victim]
    end = watch.killed_ms + seconds * 1000
    while now_ms() < end:
        for node_id in survivors:
            try:
                view = await asyncio.wait_for(status(rig, node_id), STATUS_TIMEOUT_S)
            except (aiohttp.ClientError, TimeoutError):
                watch.errors += 1
                continue
            seen = now_ms()
            if watch.elected_ms is None and view["leader"] not in (None, watch.leader):
                watch.elected_ms = seen
            victim_view = next(m for m in view["members"] if m["id"] == victim)
            if watch.moved_ms is None and victim_view["partitions"] == 0:
                watch.moved_ms = seen
        await asyncio.sleep(STATUS_POLL_S)


def silence(receipts: list[Receipt], killed_ms: int) -> tuple[float, float] | None:
    """The longest silence (start, end) in receipts that ends after the kill, or None."""
    times = sorted(r.received_ms for r in receipts)
    pairs = [(a, b) for a, b in itertools.pairwise(times) if b > killed_ms]
    return max(pairs, key=lambda p: p[1] - p[0], default=None)


def worst_job_silence(receipts: list[Receipt], names: list[str], killed_ms: int) -> float | None:
    """The longest silence, in s, of any single job among `names` that ends after the kill."""
    gaps = [length_s(silence([r for r in receipts if r.name == n], killed_ms)) for n in names]
    return max((g for g in gaps if g is not None), default=None)


def length_s(gap: tuple[float, float] | None) -> float | None:
    return None if gap is None else round((gap[1] - gap[0]) / 1000, 3)


def duplicates_since(receipts: list[Receipt], since_ms: float, victim: str = "") -> tuple[int, int]:
    """Receipts from `since_ms` on whose trigger id had already been received: all of them, and
    those whose first copy a node other than `victim` sent (a healthy node's: the killed node's
    deliveries in flight at the kill may go out again, no other)."""
    first: dict[str, str] = {}
    duplicates = healthy = 0
    for receipt in sorted(receipts, key=lambda r: r.received_ms):
        if receipt.trigger_id in first and receipt.received_ms >= since_ms:
            duplicates += 1
            healthy += first[receipt.trigger_id] != victim
        first.setdefault(receipt.trigger_id, receipt.node)
    return duplicates, healthy


async def wait_steady(rig: Rig) -> None:
    """Wait until every job of the stream fired within the last STEADY_S seconds."""
    deadline = time.monotonic() + STEADY_TIMEOUT_S
    while True:
        await asyncio.sleep(STEADY_S)
        since = now_ms() - STEADY_S * 1000
        silent = set(rig.names) - {r.name for r in rig.sink.receipts if r.received_ms >= since}
        if not silent:
            return
        if time.monotonic() >= deadline:
            break
    last = {r.name: r.received_ms for r in rig.sink.receipts if r.name in silent}
    ages = {name: round((now_ms() - ms) / 1000, 1) for name, ms in sorted(last.items())}
    views: dict[str, object] = {}
    for node in rig.cluster.nodes:
        try:
            views[node.node_id] = await asyncio.wait_for(
                status(rig, node.node_id), STATUS_TIMEOUT_S
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            views[node.node_id] = repr(error)
    raise TimeoutError(
        f"{len(silent)} jobs silent for {STEADY_TIMEOUT_S} s; s since their last trigger: {ages}; "
        f"the nodes' statuses: {json.dumps(views)}"
    )


async def trial(rig: Rig, kill: str, watch_s: float) -> dict[str, object]:
    leader = await asyncio.to_thread(rig.cluster.wait_ready, READY_TIMEOUT_S)
    victim = (
        leader
        if kill == "leader"
        else next(n.node_id for n in rig.cluster.nodes if n.node_id != leader)
    )
    await wait_steady(rig)
    victims = await owned_by(rig, victim)
    watch = Watch(killed_ms=now_ms(), leader=leader)
    await asyncio.to_thread(rig.cluster.kill, victim)
    await watch_survivors(rig, victim, watch, watch_s)
    recent = [r for r in rig.sink.receipts if r.received_ms >= watch.killed_ms - 2 * INTERVAL_MS]
    victim_gap = silence([r for r in recent if r.name in victims], watch.killed_ms)
    others_gap = silence([r for r in recent if r.name not in victims], watch.killed_ms)
    duplicates, healthy_duplicates = duplicates_since(rig.sink.receipts, watch.killed_ms, victim)
    await asyncio.to_thread(rig.cluster.restart, victim)

    def since_kill(ms: float | None) -> float | None:
        return None if ms is None else round((ms - watch.killed_ms) / 1000, 3)

    return {
        "killed": victim,
        "victim_jobs": len(victims),
        "elected": since_kill(watch.elected_ms),
        "moved": since_kill(watch.moved_ms),
        "flowing": since_kill(victim_gap[1] if victim_gap else None),
        "gap": length_s(victim_gap),
        "others_gap": length_s(others_gap),
        "others_job": worst_job_silence(
            recent, [n for n in rig.names if n not in victims], watch.killed_ms
        ),
        "duplicates": duplicates,
        "healthy_duplicates": healthy_duplicates,
        "status_errors": watch.errors,
    }


def summary(trials: list[dict[str, object]]) -> dict[str, dict[str, float] | None]:
    """min/median/max of each figure over the trials that saw it."""
    out: dict[str, dict[str, float] | None] = {}
    for key in FIGURES:
        values = [v for t in trials if isinstance(v := t[key], float)]
        out[key] = (
            {
                "min": min(values),
                "median": round(statistics.median(values), 3),
                "max": max(values),
            }
            if values
            else None
        )
    return out


async def run(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, object]:
    # The admin token on every request: the status polls need it, the creates ignore it.
    session = aiohttp.ClientSession(headers=cluster.admin_headers())
    async with running_sink() as sink, session:
        rig = Rig(cluster, sink, session)
        await register_app(session, cluster.nodes[0].url, sink.url)
        await create_stream(rig, args.jobs)
        trials = [await trial(rig, args.kill, args.watch_seconds) for _ in range(args.trials)]
    duplicates, _ = duplicates_since(rig.sink.receipts, 0)
    first_ms = min((r.received_ms for r in rig.sink.receipts), default=0.0)
    return {
        "kill": args.kill,
        "jobs": args.jobs,
        "trials": trials,
        "summary": summary(trials),
        "duplicates": duplicates,
        "series": {
            "delivered": Series(
                "rate",
                f"triggers received per second ({args.trials} kills of the {args.kill})",
                "triggers",
                [(r.received_ms - first_ms) / 1000 for r in rig.sink.receipts],
            ),
        },
    }


def print_table(figures: dict[str, Any]) -> None:
    heads = " ".join(f"{k + ' s':>9}" for k in FIGURES)
    print(f"{'trial':>5} {'killed':>6} {heads} {'victims':>7} {'dup':>4} {'hdup':>4}")
    for i, row in enumerate(figures["trials"], 1):
        cells = " ".join(f"{row[k]!s:>9}" for k in FIGURES)
        print(
            f"{i:>5} {row['killed']:>6} {cells} {row['victim_jobs']:>7} {row['duplicates']:>4} "
            f"{row['healthy_duplicates']:>4}"
        )
    for stat in ("min", "median", "max"):
        cells = " ".join(
            f"{(s or {}).get(stat, '-')!s:>9}" for s in (figures["summary"][k] for k in FIGURES)
        )
        print(f"{stat:>12} {cells}")
    print(
        f"duplicate triggers: {figures['duplicates']} over the whole run; dup: those in the "
        "watch after each kill (the rest, if any, came while the killed node rejoined); hdup: "
        "those whose first copy a survivor sent (only the killed node's deliveries in flight "
        "may go out twice)"
    )
    print("target: flowing <= 1 s (median)")


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench failover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=5, help="kills (default 5)")
    parser.add_argument("--kill", choices=("leader", "follower"), default="leader")
    parser.add_argument("--jobs", type=int, default=60, help="@every 1s jobs (default 60)")
    parser.add_argument(
        "--watch-seconds", type=float, default=8.0, help="how long to watch after a kill"
    )
    args = parser.parse_args(argv)
    with tock_cluster() as cluster:
        figures = asyncio.run(run(cluster, args))
    print_table(figures)
    return figures
