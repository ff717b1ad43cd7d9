"""One chaos run against a real 3-node cluster: a bounded workload through the Jobs API on
random nodes, a seeded fault schedule meanwhile, heal, quiescence, and the final state of every
node; tests/chaos/history.py then checks the guarantees from what was recorded.

The seed fixes the fault schedule (printed before it starts) and the workload's choices; the
timing of real processes does not replay exactly, but the same schedule does. Faults never take
down more than one node at a time, except the one kill of all nodes per run; each fault ends
only once every node is ready again and agrees on a leader and an epoch.
"""

from __future__ import annotations

import errno
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cluster.local import LocalCluster
from cluster.membership import MembershipConfig
from node.http.errors import CODE_UNAVAILABLE
from tests.chaos.history import (
    Fault,
    History,
    Kind,
    NodeState,
    Op,
    Outcome,
    Verdict,
    check,
    delivery_from,
)
from tests.support.cluster_watch import HTTP_TIMEOUT_S as CALL_TIMEOUT_S
from tests.support.cluster_watch import call, register_app
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink

FaultKind = Literal["kill", "pause", "kill-leader", "kill-all"]
NODES = ("n1", "n2", "n3")
DEAD_S = MembershipConfig().dead_s
# A request a node holds longer than its propose timeout (5 s) has an unknown outcome.
HTTP_TIMEOUT_S = 6.0
HEAL_TIMEOUT_S = 45.0
QUIESCE_TIMEOUT_S = 60.0
AGREE_TIMEOUT_S = 20.0
# Late duplicates would arrive within this after the last job finished.
SETTLE_S = 1.5
# The workload goes on this long after the last fault healed, so jobs run on a whole cluster too.
TAIL_S = 3.0
OP_GAP_S = (0.2, 0.6)
OP_WEIGHTS: dict[str, int] = {
    "every": 3,
    "due": 3,
    "cron": 2,
    "keep": 1,
    "overwrite": 2,
    "delete": 2,
}
KEEP_DUE_S = 3600.0
POLL_S = 0.2
# What connect() answers when a partition left no route to the node: nothing was sent.
NOT_CONNECTED_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH)


class ChaosFailure(AssertionError):
    """A guarantee broken, or the cluster not healing within its bound."""


@dataclass(frozen=True)
class FaultPlan:
    kind: FaultKind
    # The node to hit for `kill` and `pause`; the leader's and all nodes' are found at the time.
    node: str
    gap_s: float
    down_s: float

    def describe(self) -> str:
        target = self.node or ("leader" if self.kind == "kill-leader" else "all")
        return f"after {self.gap_s:.1f} s: {self.kind} {target} for {self.down_s:.1f} s"


def plan_faults(rng: random.Random) -> list[FaultPlan]:
    """One of each single-node fault, one kill of all nodes, in a random order."""
    kinds: list[FaultKind] = ["kill", "pause", "kill-leader", "kill-all"]
    rng.shuffle(kinds)
    plans = []
    for kind in kinds:
        node = rng.choice(NODES) if kind in ("kill", "pause") else ""
        # A pause outlasts `dead`, so the others declare the paused node dead and fail over.
        down_s = DEAD_S + rng.uniform(0.5, 2.0) if kind == "pause" else rng.uniform(1.0, 3.0)
        plans.append(FaultPlan(kind, node, rng.uniform(1.0, 3.0), down_s))
    return plans


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def send_op(url: str, body: dict[str, Any] | None) -> None:
    """A create (POST `body`) or a delete (None). Unlike cluster_watch.call, it waits longer
    than a node's propose timeout, so that the node's own verdict (the 503's code) arrives."""
    data = None if body is None else json.dumps(body).encode()
    method = "DELETE" if body is None else "POST"
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
        reply.read()


def outcome_of(error: Exception) -> tuple[Outcome, str]:
    """A 4xx was not applied; neither was a 503 ERR_UNAVAILABLE, which a node answers only when
    the write certainly was not proposed (store/raft/store.py), a promise the checks hold it to. Any
    other 503 (ERR_OUTCOME_UNKNOWN) and no answer at all may or may not have been applied,
    except a connection never made: refused (no process had the request), or no route to the
    node (a partition cut it off before the first byte)."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, OSError):
        if isinstance(error.reason, ConnectionRefusedError):
            return "failed", "connection refused"
        if error.reason.errno in NOT_CONNECTED_ERRNOS:
            return "failed", os.strerror(error.reason.errno)
    if not isinstance(error, urllib.error.HTTPError):
        return "unknown", type(error).__name__
    try:
        code = json.loads(error.read()).get("errorCode", "")
    except (OSError, ValueError, AttributeError):
        code = ""
    detail = f"HTTP {error.code} {code}"
    if error.code == 503 and code != CODE_UNAVAILABLE:
        return "unknown", detail
    return "failed", detail


class Workload:
    """Sequential client operations on random nodes until stopped, each recorded as an Op."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, history: History) -> None:
        self._cluster = cluster
        self._rng = rng
        self._history = history
        self._names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2 * HTTP_TIMEOUT_S + CALL_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(*OP_GAP_S)):
            self._history.ops.append(self._one_op(len(self._history.ops)))

    def _one_op(self, op_id: int) -> Op:
        choice = self._rng.choices(list(OP_WEIGHTS), list(OP_WEIGHTS.values()))[0]
        if choice in ("overwrite", "delete") and not self._names:
            choice = "due"
        if choice == "delete":
            return self._send(op_id, "delete", self._rng.choice(self._names), None)
        if choice == "overwrite":
            name = self._rng.choice(self._names)
            kind: Kind = (
                "keep" if name.startswith("k-") else self._rng.choice(["every", "due", "cron"])
            )
            return self._send(op_id, kind, name, {**self._body(kind, op_id), "overwrite": True})
        kind = choice  # type: ignore[assignment]
        name = f"{'k' if kind == 'keep' else 'w'}-{op_id}"
        self._names.append(name)
        return self._send(op_id, kind, name, self._body(kind, op_id))

    def _body(self, kind: Kind, op_id: int) -> dict[str, Any]:
        now = wall_ms()
        data = {"op": op_id}
        if kind == "every":
            return {"schedule": "@every 1s", "repeats": self._rng.randint(5, 10), "data": data}
        if kind == "cron":
            ttl = now + int(self._rng.uniform(5.0, 9.0) * 1000)
            return {"schedule": "*/2 * * * * *", "ttl": rfc3339(ttl), "data": data}
        ahead_s = KEEP_DUE_S if kind == "keep" else self._rng.uniform(1.0, 4.0)
        return {"dueTime": rfc3339(now + int(ahead_s * 1000)), "data": data}

    def _send(self, op_id: int, kind: Kind, name: str, body: dict[str, Any] | None) -> Op:
        node = self._cluster.node(self._rng.choice(NODES))
        url = f"{node.url}/v1.0/jobs/{name}"
        invoke_ms, invoke_mono = wall_ms(), time.monotonic()
        outcome: Outcome = "ok"
        detail = ""
        try:
            send_op(url, body)
        except (OSError, ValueError) as error:
            outcome, detail = outcome_of(error)
        complete_ms, complete_mono = wall_ms(), time.monotonic()
        readback = None
        if outcome == "ok" and kind in ("every", "cron"):
            readback = self._read_back(url)
        return Op(
            op_id, kind, name, node.node_id, invoke_ms, complete_ms, invoke_mono,
            complete_mono, outcome, body, readback, detail,
        )  # fmt: skip

    def _read_back(self, url: str) -> dict[str, Any] | None:
        try:
            job = call(url)
        except (OSError, ValueError):
            return None
        return job if isinstance(job, dict) else None


class Injector:
    """Carries out a fault schedule, recording each fault from its start until healed."""

    def __init__(self, cluster: LocalCluster, history: History, log: Callable[[str], None]):
        self._cluster = cluster
        self._history = history
        self._log = log

    def run(self, plans: list[FaultPlan]) -> None:
        for plan in plans:
            time.sleep(plan.gap_s)
            start_ms = wall_ms()
            nodes = self._inject(plan)
            self._heal(plan, nodes)
            self._history.faults.append(Fault(plan.kind, nodes, start_ms, wall_ms()))
            self._log(f"chaos: {plan.kind} {','.join(nodes)} healed after "
                      f"{(wall_ms() - start_ms) / 1000:.1f} s")  # fmt: skip

    def _inject(self, plan: FaultPlan) -> tuple[str, ...]:
        if plan.kind == "pause":
            self._cluster.pause(plan.node)
            return (plan.node,)
        if plan.kind == "kill":
            nodes: tuple[str, ...] = (plan.node,)
        elif plan.kind == "kill-leader":
            nodes = (self._cluster.wait_ready(HEAL_TIMEOUT_S),)
        else:
            nodes = NODES
        for node in nodes:
            self._cluster.kill(node)
        return nodes

    def _heal(self, plan: FaultPlan, nodes: tuple[str, ...]) -> None:
        time.sleep(plan.down_s)
        for node in nodes:
            if plan.kind == "pause":
                self._cluster.resume(node)
            else:
                self._cluster.start_node(node)
        try:
            self._cluster.wait_ready(HEAL_TIMEOUT_S)
        except TimeoutError as error:
            raise ChaosFailure(
                f"the cluster did not heal after {plan.describe()}: {error}"
            ) from None


def jobs_of(cluster: LocalCluster, node_id: str, prefix: str) -> tuple[tuple[str, str], ...]:
    """Every job of app `default` under `prefix` on one node: (name, the whole job as JSON)."""
    jobs: list[tuple[str, str]] = []
    cursor = ""
    while True:
        page = call(
            f"{cluster.node(node_id).url}/v1.0/jobs?"
            + urllib.parse.urlencode({"prefix": prefix, "limit": 1000, "cursor": cursor})
        )
        jobs += [(job["name"], json.dumps(job, sort_keys=True)) for job in page["jobs"]]
        cursor = page["nextCursor"] or ""
        if not cursor:
            return tuple(sorted(jobs))


def wait_quiescent(cluster: LocalCluster) -> None:
    """Until no workload job (`w-`) is left on any node: every finite job ran to its end."""
    deadline = time.monotonic() + QUIESCE_TIMEOUT_S
    left: dict[str, tuple[tuple[str, str], ...]] = {}
    while time.monotonic() < deadline:
        try:
            left = {node: jobs_of(cluster, node, "w-") for node in NODES}
        except (OSError, ValueError):
            left = {}
        if left and not any(left.values()):
            return
        time.sleep(POLL_S)
    raise ChaosFailure(f"not quiescent within {QUIESCE_TIMEOUT_S} s; jobs left: {left}")


def final_states(cluster: LocalCluster) -> list[NodeState]:
    """Every node's indexes, polled until they agree (bounded), and its jobs."""
    deadline = time.monotonic() + AGREE_TIMEOUT_S
    while True:
        admin = cluster.admin_headers()
        views = {
            node: call(f"{cluster.node(node).url}/admin/cluster", headers=admin) for node in NODES
        }
        indexes = {(v["commitIndex"], v["appliedIndex"]) for v in views.values()}
        if len(indexes) == 1 or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S / 4)
    return [
        NodeState(node, v["commitIndex"], v["appliedIndex"], jobs_of(cluster, node, ""))
        for node, v in views.items()
    ]


@dataclass(frozen=True)
class RunResult:
    seed: int
    # Each fault of the schedule, described.
    schedule: list[str]
    verdict: Verdict
    history_path: Path


def summary(result: RunResult) -> str:
    verdict = result.verdict
    return (
        f"chaos: seed {result.seed}: {len(verdict.violations)} violations, "
        f"{verdict.deliveries} deliveries ({verdict.near_faults} occurrences near a fault), "
        f"{verdict.duplicates} duplicates "
        f"({100 * verdict.duplicate_rate:.2f} %), {len(verdict.inexact)} jobs inexact, "
        f"lateness outside faults <= {verdict.lateness_ms_max} ms"
    )


def observe(
    cluster: LocalCluster,
    sink: Sink,
    rng: random.Random,
    history: History,
    inject: Callable[[], None],
) -> Verdict:
    """The workload on `cluster` (triggers to `sink`) while `inject` runs the faults, then the
    tail, quiescence, the final states and the checks of the recorded history."""
    register_app(cluster.node("n1").url, sink.url)
    workload = Workload(cluster, random.Random(rng.random()), history)
    workload.start()
    inject()
    time.sleep(TAIL_S)
    workload.stop()
    wait_quiescent(cluster)
    quiescent_ms = wall_ms()
    time.sleep(SETTLE_S)
    states = final_states(cluster)
    history.deliveries = [
        delivery_from(c.headers, c.body, c.name, c.received_ms) for c in list(sink.calls)
    ]
    return check(history, states, quiescent_ms)


def report(result: RunResult, history: History, log: Callable[[str], None]) -> None:
    history.dump(result.history_path)
    outcomes = Counter(op.outcome for op in history.ops)
    log(f"chaos: {len(history.ops)} ops: {dict(outcomes)}")
    log(summary(result))


def run_guarantees(data_dir: Path, seed: int, log: Callable[[str], None] = print) -> RunResult:
    """One run; raises ChaosFailure (after printing the nodes' logs) if a guarantee broke."""
    rng = random.Random(seed)
    plans = plan_faults(rng)
    log(f"chaos: TOCK_CHAOS_SEED={seed}")
    for plan in plans:
        log(f"chaos: fault {plan.describe()}")
    history = History()
    sink = Sink().start()
    try:
        with running_cluster(data_dir / "cluster") as cluster:
            injector = Injector(cluster, history, log)
            verdict = observe(cluster, sink, rng, history, lambda: injector.run(plans))
            schedule = [plan.describe() for plan in plans]
            result = RunResult(seed, schedule, verdict, data_dir / "history.jsonl")
            report(result, history, log)
            if result.verdict.violations:
                raise ChaosFailure("\n".join([summary(result), *result.verdict.violations]))
            return result
    finally:
        sink.stop()
        history.dump(data_dir / "history.jsonl")
