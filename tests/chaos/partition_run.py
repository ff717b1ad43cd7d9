"""One partition run: the guarantee run's workload and checks (guarantee_run.py, history.py)
on a 3-node cluster whose nodes each live in a network namespace of their own (netns.py), under
a seeded schedule of real network partitions instead of process faults.

The schedule holds one of each, in a random order, a random gap before each:
- isolate a follower (one of the two, picked by the seed);
- isolate the leader;
- isolate the owner of the busy partitions: the node that owns the most jobs the workload made
  in the last few seconds, found from the leader's view at the time;
- flap one node: cut and heal it a few times in quick succession.
An isolation lasts longer than `dead`, so the majority declares the node dead and its
partitions fire elsewhere. During each isolation, a few creates are sent to the cut node from
inside its namespace (a client on the minority side); each must answer 503 or fail to connect,
never 204, and the cut lasts until they have all answered, so none can commit after the heal.
They are recorded as ops, so the checker also holds them to "a failed write is never applied".
Every cut is recorded as a fault (kind `partition-...`) from the cut until the cluster is whole
again.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cluster.local import LocalCluster
from cluster.membership import MembershipConfig
from tests.chaos import netns
from tests.chaos.guarantee_run import (
    DEAD_S,
    HEAL_TIMEOUT_S,
    NODES,
    ChaosFailure,
    RunResult,
    observe,
    outcome_of,
    report,
    rfc3339,
    send_op,
    wall_ms,
)
from tests.chaos.history import PARTITION_KIND_PREFIX, Fault, History, Op, Outcome, stale_deliveries
from tests.chaos.netns_cluster import netns_cluster
from tests.support.cluster_watch import owner_of
from tests.support.sink import Sink

PartitionKind = Literal["follower", "leader", "owner", "flap"]
LEASE_MS = int(MembershipConfig().lease_s * 1000)
# An isolation lasts well beyond `dead`, so the majority fails over, and beyond the node's
# propose timeout (5 s), so the writes sent to the minority side are answered while it is cut.
ISOLATION_S = (DEAD_S + 4.0, DEAD_S + 6.0)
FLAPS = 3
FLAP_DOWN_S = (0.5, 2.5)
FLAP_UP_S = (0.5, 1.5)
GAP_S = (1.0, 3.0)
# The minority writes start this long after the cut, so they reach a node that is cut already.
MINORITY_DELAY_S = 0.2
MINORITY_WRITES = 3
# Op ids of the minority writes start here, far above the workload's own.
MINORITY_OP_BASE = 100_000
MINORITY_DUE_S = (2.0, 4.0)
# The owner of the busy partitions owns the most jobs the workload made this recently.
BUSY_WINDOW_MS = 10_000


@dataclass(frozen=True)
class PartitionPlan:
    kind: PartitionKind
    gap_s: float
    # How long each cut lasts: one for an isolation, FLAPS for a flap.
    down_s: tuple[float, ...]
    # Between the cuts of a flap.
    up_s: float = 0.0
    # The flapping node, or which follower (of the two, in id order) to isolate.
    node: str = ""
    follower: int = 0

    def describe(self) -> str:
        cuts = ", ".join(f"{s:.1f} s" for s in self.down_s)
        if self.kind == "flap":
            return f"after {self.gap_s:.1f} s: flap {self.node}: cut {cuts}, up {self.up_s:.1f} s"
        target = f"follower #{self.follower}" if self.kind == "follower" else self.kind
        return f"after {self.gap_s:.1f} s: isolate the {target} for {cuts}"


def plan_partitions(rng: random.Random) -> list[PartitionPlan]:
    kinds: list[PartitionKind] = ["follower", "leader", "owner", "flap"]
    rng.shuffle(kinds)
    plans = []
    for kind in kinds:
        gap_s = rng.uniform(*GAP_S)
        if kind == "flap":
            down_s = tuple(rng.uniform(*FLAP_DOWN_S) for _ in range(FLAPS))
            plans.append(
                PartitionPlan(kind, gap_s, down_s, rng.uniform(*FLAP_UP_S), rng.choice(NODES))
            )
        else:
            plans.append(
                PartitionPlan(kind, gap_s, (rng.uniform(*ISOLATION_S),), follower=rng.randrange(2))
            )
    return plans


@dataclass(frozen=True)
class MinorityWrite:
    """A create sent to a cut node from its own side of the cut, and what it answered."""

    node: str
    op_id: int
    answer: str
    # 503 or no connection at all; anything else (above all a 204) breaks the guarantee.
    refused: bool


class PartitionInjector:
    """Carries out a partition schedule, recording each cut and each minority write."""

    def __init__(
        self,
        cluster: LocalCluster,
        net: netns.Network,
        history: History,
        rng: random.Random,
        log: Callable[[str], None],
    ) -> None:
        self._cluster = cluster
        self._net = net
        self._history = history
        self._rng = rng
        self._log = log
        self.minority_writes: list[MinorityWrite] = []

    def run(self, plans: list[PartitionPlan]) -> None:
        for plan in plans:
            time.sleep(plan.gap_s)
            if plan.kind == "flap":
                self._flap(plan)
            else:
                self._isolate(plan)

    def _isolate(self, plan: PartitionPlan) -> None:
        node = self._target(plan)
        start_ms, deadline = wall_ms(), time.monotonic() + plan.down_s[0]
        self._net.cut(node)
        try:
            time.sleep(MINORITY_DELAY_S)
            self._write_to_minority(node)
            time.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            self._net.heal(node)
        self._whole_again(plan, [(node, start_ms)])

    def _flap(self, plan: PartitionPlan) -> None:
        cuts: list[tuple[str, int]] = []
        for k, down_s in enumerate(plan.down_s):
            if k:
                time.sleep(plan.up_s)
            cuts.append((plan.node, wall_ms()))
            self._net.cut(plan.node)
            try:
                time.sleep(down_s)
            finally:
                self._net.heal(plan.node)
        self._whole_again(plan, cuts)

    def _whole_again(self, plan: PartitionPlan, cuts: list[tuple[str, int]]) -> None:
        """Wait until every node is ready and agreed, then record each cut until then."""
        try:
            self._cluster.wait_ready(HEAL_TIMEOUT_S)
        except TimeoutError as error:
            raise ChaosFailure(
                f"the cluster did not heal after {plan.describe()}: {error}"
            ) from None
        end_ms = wall_ms()
        kind = f"{PARTITION_KIND_PREFIX}-{plan.kind}"
        for node, start_ms in cuts:
            self._history.faults.append(Fault(kind, (node,), start_ms, end_ms))
        nodes = ",".join(node for node, _ in cuts)
        self._log(f"chaos: {kind} {nodes} whole again {(end_ms - cuts[0][1]) / 1000:.1f} s "
                  "after the first cut")  # fmt: skip

    def _target(self, plan: PartitionPlan) -> str:
        leader = self._cluster.wait_ready(HEAL_TIMEOUT_S)
        if plan.kind == "leader":
            return leader
        if plan.kind == "follower":
            return sorted(n for n in NODES if n != leader)[plan.follower]
        view = self._cluster.cluster_status(leader)
        since_ms = wall_ms() - BUSY_WINDOW_MS
        busy = [
            op.name
            for op in list(self._history.ops)
            if op.outcome == "ok" and op.kind != "delete" and op.invoke_ms >= since_ms
        ]
        jobs = Counter(owner_of(view, name) for name in busy)
        owner = max(NODES, key=lambda node: jobs[node])
        self._log(f"chaos: jobs of the last {BUSY_WINDOW_MS // 1000} s by owner: "
                  f"{dict(jobs)}; isolating {owner}")  # fmt: skip
        return owner

    def _write_to_minority(self, node: str) -> None:
        """Creates sent at once to the cut node from inside its namespace; each recorded."""
        first = MINORITY_OP_BASE + len(self.minority_writes)
        op_ids = range(first, first + MINORITY_WRITES)
        creates = [self._create(node, op_id) for op_id in op_ids]
        with ThreadPoolExecutor(MINORITY_WRITES) as pool:
            ops = list(pool.map(lambda create: self._net.run_in(node, create), creates))
        for op in ops:
            self._history.ops.append(op)
            refused = op.outcome != "ok" and (
                op.detail.startswith("HTTP 503") or not op.detail.startswith("HTTP")
            )
            self.minority_writes.append(MinorityWrite(node, op.op_id, op.detail or "204", refused))
        self._log(f"chaos: writes to the cut {node}: {[op.detail or '204' for op in ops]}")

    def _create(self, node: str, op_id: int) -> Callable[[], Op]:
        name = f"w-m{op_id}"
        body: dict[str, Any] = {
            "dueTime": rfc3339(wall_ms() + int(self._rng.uniform(*MINORITY_DUE_S) * 1000)),
            "data": {"op": op_id},
        }
        url = f"{self._cluster.node(node).url}/v1.0/jobs/{name}"

        def create() -> Op:
            invoke_ms, invoke_mono = wall_ms(), time.monotonic()
            outcome: Outcome = "ok"
            detail = ""
            try:
                send_op(url, body)
            except (OSError, ValueError) as error:
                outcome, detail = outcome_of(error)
            return Op(
                op_id, "due", name, node, invoke_ms, wall_ms(), invoke_mono, time.monotonic(),
                outcome, body, None, detail,
            )  # fmt: skip

        return create


@dataclass(frozen=True)
class PartitionResult:
    run: RunResult
    minority_writes: list[MinorityWrite]
    faults: int


def run_partitions(
    data_dir: Path, seed: int, log: Callable[[str], None] = print
) -> PartitionResult:
    """One run; the verdict and what the minority writes answered, for the caller to judge."""
    rng = random.Random(seed)
    plans = plan_partitions(rng)
    log(f"chaos: TOCK_CHAOS_SEED={seed}")
    for plan in plans:
        log(f"chaos: partition {plan.describe()}")
    history = History()
    try:
        with netns_cluster(data_dir / "cluster", NODES) as (net, cluster):
            sink = Sink(host=net.bridge_address).start()
            try:
                injector = PartitionInjector(
                    cluster, net, history, random.Random(rng.random()), log
                )
                verdict = observe(cluster, sink, rng, history, lambda: injector.run(plans))
            finally:
                sink.stop()
            schedule = [plan.describe() for plan in plans]
            result = RunResult(seed, schedule, verdict, data_dir / "history.jsonl")
            report(result, history, log)
            stale = stale_deliveries(history, LEASE_MS)
            log(f"chaos: {len(history.faults)} cuts, {len(stale)} stale deliveries")
            for line in stale:
                log(f"chaos: {line}")
            return PartitionResult(result, injector.minority_writes, len(history.faults))
    finally:
        history.dump(data_dir / "history.jsonl")
