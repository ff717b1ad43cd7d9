"""Benchmark case `apply`: what applying the job commands costs one replica, in-process.

Every node applies every committed command, so a trigger costs its Ack entry's apply once per
replica: this bounds the cluster's trigger rate by CPU before any network or delivery. One
JobMachine (the one the nodes run, with no Raft around it) gets `--jobs` Puts of one-shot jobs
(the creates), then their Acks of SUCCESS, `--ack-batch` entries per Ack as the engine batches
them (each ends its job); then as many recurring jobs (`@every 1s`) are created and acked once
(each moves its job to the next occurrence and records the attempt in its history). Commands are
encoded beforehand: what is timed is the apply of the bytes, decoding included.

Figures are µs per command (Put) or per ack entry, the best of `--repeat` runs (the machine is
shared and noisy), and what one trigger costs the cluster in apply alone at `--replicas`.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid

from cluster.ring import Ring
from node.engine.acks import AckConfig
from store.codec import (
    Ack,
    AckEntry,
    Member,
    Outcome,
    Put,
    SetMembers,
    encode_command,
)
from store.jobs import DATA_TYPE_JSON, Job, JobSpec
from store.machine import JobMachine, Result
from store.partition import PARTITIONS_DEFAULT
from store.schedule import format_rfc3339_ms

NODE = "n1"
NAMESPACE = "default"
APP = "bench"
# The history and dead-letter bounds a node stamps on its Acks by default.
ACK_DEFAULTS = AckConfig()
PHASES = ("put", "ack_ending", "ack_advancing")


def fresh_machine() -> JobMachine:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    member = Member(NODE, "127.0.0.1:1", "127.0.0.1:2")
    assert machine.apply_command(encode_command(SetMembers(1, (member,), (NODE,)))).ok
    return machine


def puts(jobs: int, now_ms: int, schedule: str | None, stem: str) -> list[bytes]:
    due = format_rfc3339_ms(now_ms + 60_000) if schedule is None else None
    return [
        encode_command(
            Put(
                NAMESPACE,
                APP,
                JobSpec(
                    name=f"{stem}-{k}",
                    schedule=schedule,
                    due_time=due,
                    data=b'{"bench":true}',
                    data_type=DATA_TYPE_JSON,
                ),
                False,
                now_ms,
                uuid.uuid4().hex,
                "UTC",
            )
        )
        for k in range(jobs)
    ]


def timed(machine: JobMachine, commands: list[bytes]) -> tuple[float, list[Result]]:
    """Apply `commands` in order; the seconds it took and the results."""
    apply = machine.apply_command
    gc.collect()
    started = time.perf_counter()
    results = [apply(command) for command in commands]
    elapsed = time.perf_counter() - started
    assert all(result.ok for result in results), "every command must apply"
    return elapsed, results


def acks(created: list[Result], batch: int, now_ms: int) -> list[bytes]:
    jobs = [result.value for result in created]
    entries = [
        AckEntry(job.uid, job.next_ms, Outcome.SUCCESS, started_ms=job.next_ms, duration_ms=2)
        for job in jobs
        if isinstance(job, Job)
    ]
    assert len(entries) == len(jobs), "every Put answers its job"
    return [
        encode_command(
            Ack(
                1,
                NODE,
                now_ms,
                tuple(entries[k : k + batch]),
                ACK_DEFAULTS.history_max,
                ACK_DEFAULTS.dead_letters_max,
            )
        )
        for k in range(0, len(entries), batch)
    ]


def run_once(jobs: int, batch: int) -> dict[str, float]:
    """µs per Put, per ending ack entry and per advancing ack entry, on a fresh machine."""
    machine = fresh_machine()
    now_ms = int(time.time() * 1000)
    one_shot = puts(jobs, now_ms, None, "once")
    put_s, created = timed(machine, one_shot)
    ending_s, _ = timed(machine, acks(created, batch, now_ms + 60_000))
    assert machine.count() == 0, "every one-shot job ends with its ack"
    _, recurring = timed(machine, puts(jobs, now_ms, "@every 1s", "every"))
    advancing_s, _ = timed(machine, acks(recurring, batch, now_ms + 1_000))
    assert machine.count() == jobs, "every recurring job moves on"
    return {
        "put": put_s * 1e6 / jobs,
        "ack_ending": ending_s * 1e6 / jobs,
        "ack_advancing": advancing_s * 1e6 / jobs,
    }


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {phase: min(run[phase] for run in runs) for phase in PHASES}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench apply", description="the job machine's apply cost per command"
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per phase")
    parser.add_argument("--ack-batch", type=int, default=256, help="entries per Ack")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is kept")
    parser.add_argument("--replicas", type=int, default=3, help="nodes that apply each command")
    args = parser.parse_args(argv)
    if min(args.jobs, args.ack_batch, args.repeat, args.replicas) < 1:
        parser.error("--jobs, --ack-batch, --repeat and --replicas must be at least 1")
    return args


def main(argv: list[str]) -> dict[str, object]:
    args = parse(argv)
    best = best_of([run_once(args.jobs, args.ack_batch) for _ in range(args.repeat)])
    per_trigger = best["ack_ending"] * args.replicas
    print(f"{'phase':<14} {'µs each':>8}")
    for phase in PHASES:
        print(f"{phase:<14} {best[phase]:>8.1f}")
    print(
        f"a one-shot trigger's ack costs the cluster {per_trigger:.0f} µs of CPU in apply at "
        f"{args.replicas} replicas: {1e6 / per_trigger:,.0f} triggers/s per core so spent"
    )
    return {
        "jobs": args.jobs,
        "ack_batch": args.ack_batch,
        "repeat": args.repeat,
        "replicas": args.replicas,
        "us_each": best,
        "apply_us_per_trigger": per_trigger,
    }
