"""`scripts/bench snapshot [--jobs N]`: snapshot a JobMachine of N jobs to bytes and back.

Builds the machine through apply (as Raft would), then times encode (to_bytes), decode
(from_bytes, which checks every field) and reports the snapshot size and how much the process's
peak resident memory grew in each phase.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

from cluster.ring import Ring
from store.codec import Put
from store.jobs import DATA_TYPE_JSON, JobSpec
from store.machine import JobMachine

NOW_MS = 1_700_000_000_000
SCHEDULES = ("@every 1s", "@every 1m", "0 */5 * * * *", "@daily")


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(jobs: int, partitions: int) -> JobMachine:
    machine = JobMachine(partitions, Ring)
    for i in range(jobs):
        spec = JobSpec(
            name=f"job-{i * 7919 % jobs:08d}",
            schedule=SCHEDULES[i % len(SCHEDULES)],
            due_time="10s" if i % 3 == 0 else None,
            repeats=100 if i % 2 else None,
            data=b'{"order":%d}' % i,
            data_type=DATA_TYPE_JSON,
        )
        app = f"app-{i % 10}"
        result = machine.apply(Put("default", app, spec, False, NOW_MS + i, f"uid-{i:012x}", "UTC"))
        assert result.ok, result.message
    return machine


def timed(label: str, figures: dict[str, object], action: object) -> object:
    gc.collect()
    rss_before = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    value = action()  # type: ignore[operator]
    # Wall time suffers from other processes on a shared machine; CPU time does not.
    figures[f"{label}_s"] = round(time.perf_counter() - started, 3)
    figures[f"{label}_cpu_s"] = round(time.process_time() - cpu_started, 3)
    figures[f"{label}_peak_rss_delta_mb"] = round(peak_rss_mb() - rss_before, 1)
    return value


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="scripts/bench snapshot")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1024)
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"jobs": args.jobs}
    machine = timed("build", figures, lambda: build(args.jobs, args.partitions))
    assert isinstance(machine, JobMachine)
    data = timed("encode", figures, machine.to_bytes)
    assert isinstance(data, bytes)
    figures["bytes"] = len(data)
    restored = timed("decode", figures, lambda: JobMachine.from_bytes(data, Ring))
    assert isinstance(restored, JobMachine) and restored.count() == args.jobs
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    for key, value in figures.items():
        print(f"{key:>28}  {value}")
    return figures
