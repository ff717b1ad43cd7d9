"""Benchmark case `wheel`: the timing wheel against heapq with lazy cancellation.

For each size N, both structures get the same N timers with deadlines spread uniformly over
`--spread-ms` (an hour by default), then half of them (a random half) are cancelled, then the
clock is driven the way the engine drives it: sleep until next_deadline_ms(), call expire() at that
time, repeat until no timer is left. Each phase is timed on its own and reported as ns per timer
(insert: per insert; cancel: per cancel; expire: per expired timer, the wake-ups included).
"Left after cancel" counts the entries each structure still holds once half are cancelled: the
heap keeps its cancelled entries until their deadline comes round, the wheel frees them at once.

The best of `--repeat` runs is kept for each figure: the machine is shared and noisy, and the
best run is the one least disturbed by others.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from node.engine.wheel import TimingWheel

START_MS = 1_700_000_000_000
PHASES = ("insert", "cancel", "expire")


class Timers(Protocol):
    """What the benchmark drives: the subset of TimingWheel's API the engine uses."""

    def add(self, key: int, deadline_ms: int, value: int) -> None: ...

    def cancel(self, key: int) -> bool: ...

    def next_deadline_ms(self) -> int | None: ...

    def expire(self, now_ms: int) -> list[tuple[int, int, int]]: ...


class HeapTimers:
    """heapq with lazy cancellation, the usual Python answer: the baseline.

    `live` maps a key to its current heap entry; a heap entry that is not its key's current
    one was cancelled or replaced, and is dropped when it reaches the top.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, int, int]] = []
        self.live: dict[int, tuple[int, int, int, int]] = {}
        self.sequence = 0

    def add(self, key: int, deadline_ms: int, value: int) -> None:
        # The sequence number breaks deadline ties, so keys and values are never compared.
        self.sequence += 1
        entry = (deadline_ms, self.sequence, key, value)
        self.live[key] = entry
        heapq.heappush(self.heap, entry)

    def cancel(self, key: int) -> bool:
        return self.live.pop(key, None) is not None

    def next_deadline_ms(self) -> int | None:
        heap, live = self.heap, self.live
        while heap and live.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now_ms: int) -> list[tuple[int, int, int]]:
        heap, live, pop = self.heap, self.live, heapq.heappop
        expired = []
        while heap and heap[0][0] <= now_ms:
            entry = pop(heap)
            key = entry[2]
            if live.get(key) is entry:
                del live[key]
                expired.append((key, entry[0], entry[3]))
        return expired


@dataclass(frozen=True)
class Run:
    ns_per_timer: dict[str, float]
    left_after_cancel: int
    wakeups: int


def run_once(
    timers: Timers, deadlines: list[int], cancelled: list[int], held: Callable[[], int]
) -> Run:
    """Time the three phases on one fresh structure; check that exactly the rest expired.

    Order and exactly-once are the unit tests' business; the timed loops only count.
    """
    add, cancel, next_deadline_ms, expire = (
        timers.add,
        timers.cancel,
        timers.next_deadline_ms,
        timers.expire,
    )
    gc.collect()
    started = time.perf_counter_ns()
    for key, deadline in enumerate(deadlines):
        add(key, deadline, key)
    inserted = time.perf_counter_ns()
    for key in cancelled:
        cancel(key)
    cancel_done = time.perf_counter_ns()
    left = held()
    expire_started = time.perf_counter_ns()
    expired = wakeups = 0
    while (now_ms := next_deadline_ms()) is not None:
        wakeups += 1
        expired += len(expire(now_ms))
    finished = time.perf_counter_ns()
    assert expired == len(deadlines) - len(cancelled), "every timer left must expire once"
    return Run(
        ns_per_timer={
            "insert": (inserted - started) / len(deadlines),
            "cancel": (cancel_done - inserted) / max(len(cancelled), 1),
            "expire": (finished - expire_started) / max(expired, 1),
        },
        left_after_cancel=left,
        wakeups=wakeups,
    )


def run_wheel(deadlines: list[int], cancelled: list[int]) -> Run:
    wheel: TimingWheel[int, int] = TimingWheel(START_MS)
    return run_once(wheel, deadlines, cancelled, lambda: len(wheel))


def run_heap(deadlines: list[int], cancelled: list[int]) -> Run:
    heap = HeapTimers()
    return run_once(heap, deadlines, cancelled, lambda: len(heap.heap))


def best_of(runs: list[Run]) -> Run:
    return Run(
        ns_per_timer={phase: min(run.ns_per_timer[phase] for run in runs) for phase in PHASES},
        left_after_cancel=runs[0].left_after_cancel,
        wakeups=runs[0].wakeups,
    )


def measure(size: int, spread_ms: int, repeat: int, seed: int) -> dict[str, Run]:
    chooser = random.Random(seed + size)
    deadlines = [START_MS + chooser.randrange(spread_ms) for _ in range(size)]
    cancelled = chooser.sample(range(size), size // 2)
    results: dict[str, Run] = {}
    for name, runner in (("wheel", run_wheel), ("heapq", run_heap)):
        results[name] = best_of([runner(deadlines, cancelled) for _ in range(repeat)])
    return results


def print_table(figures: dict[int, dict[str, Run]]) -> None:
    print(
        f"{'timers':>9} {'structure':<9} {'insert ns':>10} {'cancel ns':>10} {'expire ns':>10}"
        f" {'left after cancel':>18} {'wake-ups':>9}"
    )
    for size, results in figures.items():
        for name, run in results.items():
            ns = run.ns_per_timer
            print(
                f"{size:>9,} {name:<9} {ns['insert']:>10.0f} {ns['cancel']:>10.0f}"
                f" {ns['expire']:>10.0f} {run.left_after_cancel:>18,} {run.wakeups:>9,}"
            )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench wheel", description="TimingWheel against heapq + lazy cancel"
    )
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="timer counts, comma-separated"
    )
    parser.add_argument(
        "--spread-ms", type=int, default=3_600_000, help="deadlines spread over this"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per size; the best is kept")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str]) -> dict[str, object]:
    args = parse(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    figures = {size: measure(size, args.spread_ms, args.repeat, args.seed) for size in sizes}
    print_table(figures)
    return {
        "spread_ms": args.spread_ms,
        "cancelled_fraction": 0.5,
        "repeat": args.repeat,
        "sizes": {
            str(size): {
                name: {
                    "ns_per_timer": run.ns_per_timer,
                    "left_after_cancel": run.left_after_cancel,
                    "wakeups": run.wakeups,
                }
                for name, run in results.items()
            }
            for size, results in figures.items()
        },
    }
