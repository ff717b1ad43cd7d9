"""What a seed decides before a simulation starts: the fault rates and the fault schedule.

Swarm style: a seed first picks which kinds of fault it turns on and how hard (message loss,
slow and failing apps, crashes, leader kills, partitions, clock jumps, a clean stop of the whole
cluster), then when each fault strikes. Faults take down at most one node at a time, so a
majority stays up, except the clean whole-cluster stop, which is no fault: nothing may be
duplicated or lost across it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from tests.sim.app import AppFaults
from tests.sim.memory_log import LogTiming

NODES = ("n1", "n2", "n3")
FaultKind = Literal["crash", "crash-leader", "partition", "clock-jump"]
FAULTS_MAX = 5


@dataclass(frozen=True)
class FaultPlan:
    kind: FaultKind
    # The node hit, for crash, partition and clock-jump; the leader at the time for crash-leader.
    node: str
    # Seconds after the previous fault ended.
    gap_s: float
    # How long the node stays down or cut off.
    duration_s: float
    jump_ms: int = 0

    def describe(self) -> str:
        what = f"{self.kind} {self.node if self.kind != 'crash-leader' else '(leader)'}"
        if self.kind == "clock-jump":
            return f"+{self.gap_s:.2f}s {what} +{self.jump_ms}ms"
        return f"+{self.gap_s:.2f}s {what} for {self.duration_s:.2f}s"


@dataclass(frozen=True)
class Scenario:
    seed: int
    log: LogTiming
    app: AppFaults
    faults: tuple[FaultPlan, ...]
    jobs: int
    # A clean stop of every node, and a restart, this long after the last fault (None: none).
    cluster_stop_after_s: float | None

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: {self.jobs} jobs, log loss {self.log.loss:.3f}, app fail "
            f"{self.app.fail:.2f} slow {self.app.slow:.2f} drop {self.app.drop:.2f}",
            *(f"  fault {plan.describe()}" for plan in self.faults),
        ]
        if self.cluster_stop_after_s is not None:
            lines.append(f"  clean stop of the cluster +{self.cluster_stop_after_s:.2f}s")
        return "\n".join(lines)


def _rate(rng: random.Random, high: float) -> float:
    """Off half the time; otherwise anything up to `high`."""
    return rng.uniform(0, high) if rng.random() < 0.5 else 0.0


def scenario_of(seed: int, rng: random.Random) -> Scenario:
    kinds: list[FaultKind] = [
        kind for kind in ("crash", "crash-leader", "partition", "clock-jump") if rng.random() < 0.5
    ]
    faults = []
    for _ in range(rng.randint(0, FAULTS_MAX) if kinds else 0):
        faults.append(
            FaultPlan(
                kind=rng.choice(kinds),
                node=rng.choice(NODES),
                gap_s=rng.uniform(0.2, 3.0),
                duration_s=rng.uniform(0.1, 4.0),
                jump_ms=rng.randint(100, 4000),
            )
        )
    return Scenario(
        seed=seed,
        log=LogTiming(loss=_rate(rng, 0.1)),
        app=AppFaults(fail=_rate(rng, 0.3), slow=_rate(rng, 0.1), drop=_rate(rng, 0.1)),
        faults=tuple(faults),
        jobs=rng.randint(4, 16),
        cluster_stop_after_s=rng.uniform(0.2, 3.0) if rng.random() < 0.5 else None,
    )
