"""The recorded history of a chaos run, and the checks of the guarantees made from it alone.

A run records three kinds of events: client operations on the Jobs API
(invoke and complete times, wall and monotonic, and an outcome: ok, failed or unknown), the
deliveries the sink received, and fault windows. Nothing here talks to a cluster: `check`
takes the history and the final state read from every node, and returns the violations.

Every create carries `data = {"op": op_id}`, and a trigger's body is the job's data, so each
delivery names the exact create that made it: overwrites and re-used names need no guessing.

Expected occurrences are computed independently of the product, exactly:
- a dueTime job is created with an absolute RFC3339 dueTime, so its one occurrence is known;
- an `@every 1s` job's first occurrence is one interval after the accepting node stamped the
  create, and a cron job's the first matching second strictly after it. That stamp is not
  visible, so the runner reads the job back right after the create: `status.nextTrigger` minus
  `status.count` steps is the first occurrence (count includes every occurrence delivered or
  exhausted, and nothing is skipped under the default misfire policy `all`). When that read
  failed, the stamp lies within [invoke, complete] of the create: if that window allows one
  first occurrence only (given the times actually delivered), it is used; otherwise the job is
  counted as inexact and only the checks that need no first occurrence apply to it;
- a cron job's ttl is absolute, and inclusive (the product ends a job when its next time is
  past ttl).
Because misfire `all` delivers every occurrence missed while the cluster was down, every
expected occurrence of a job that nothing superseded must be delivered by quiescence, also
those due during the kill of all nodes: a stricter form of "due while a majority was up".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "failed", "unknown"]
Kind = Literal["every", "due", "cron", "keep", "delete"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CREATE_KINDS = ("every", "due", "cron", "keep")
EVERY_MS = 1000
CRON_STEP_MS = 2000
# How long after its first delivery an occurrence can still be in flight: its ack is batched
# and committed through Raft, and a node that dies first leaves the occurrence to its successor.
IN_FLIGHT_MS_MAX = 3000
# "Within a few seconds once the app answers", for an occurrence no fault touched:
# generous, as the suite shares two cores with other clusters.
LATENESS_MS_MAX = 5000
# Faults whose kind starts so cut nodes off the network (tests/chaos/partition_run.py).
PARTITION_KIND_PREFIX = "partition"


@dataclass(frozen=True)
class Op:
    """One client operation: a create (of a kind, maybe an overwrite) or a delete of `name`."""

    op_id: int
    kind: Kind
    name: str
    node: str
    invoke_ms: int
    complete_ms: int
    invoke_mono: float
    complete_mono: float
    outcome: Outcome
    body: dict[str, Any] | None = None
    # The job as read back right after an acknowledged create, if that read succeeded.
    readback: dict[str, Any] | None = None
    detail: str = ""


@dataclass(frozen=True)
class Delivery:
    op_id: int
    name: str
    trigger_id: str
    uid: str
    scheduled_ms: int
    scheduled_header_ms: int
    node: str
    attempt: int
    received_ms: int


@dataclass(frozen=True)
class Fault:
    kind: str
    nodes: tuple[str, ...]
    start_ms: int
    # When the cluster was whole again (every node ready and agreed), not just the signal.
    end_ms: int


@dataclass(frozen=True)
class NodeState:
    node: str
    commit_index: int
    applied_index: int
    # (name, the job as GET lists it, JSON): spec, data and status must agree on every node.
    jobs: tuple[tuple[str, str], ...]


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def dump(self, path: Path) -> None:
        """The history as JSON lines, one event a line, for a look after a failed run."""
        events: Iterable[tuple[str, object]] = [
            *(("op", op) for op in self.ops),
            *(("delivery", d) for d in self.deliveries),
            *(("fault", f) for f in self.faults),
        ]
        with path.open("w") as out:
            for kind, event in events:
                out.write(json.dumps({"event": kind, **asdict(event)}) + "\n")  # type: ignore[call-overload]


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    deliveries: int = 0
    duplicates: int = 0
    inexact: list[str] = field(default_factory=list)
    # The latest first delivery of an occurrence that no fault window touched.
    lateness_ms_max: int = 0
    # Occurrences due or in flight while a fault was on (or just after): what the run tested.
    near_faults: int = 0

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.deliveries if self.deliveries else 0.0


def parse_ms(text: str) -> int:
    """RFC3339 to epoch ms, exactly (no float on the way)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(milliseconds=1)


def delivery_from(headers: dict[str, str], body: bytes, name: str, received_ms: int) -> Delivery:
    """A sink call as a history event; the op id comes from the job's data in the body."""
    trigger_id = headers.get("tock-trigger-id", "")
    scheduled, _, uid = trigger_id.partition(":")
    data = json.loads(body) if body else {}
    return Delivery(
        op_id=int(data.get("op", -1)) if isinstance(data, dict) else -1,
        name=name,
        trigger_id=trigger_id,
        uid=uid,
        scheduled_ms=int(scheduled),
        scheduled_header_ms=parse_ms(headers.get("tock-scheduled-time", "1970-01-01T00:00:00Z")),
        node=headers.get("tock-node", ""),
        attempt=int(headers.get("tock-attempt", "0")),
        received_ms=received_ms,
    )


# -- expected occurrences ---------------------------------------------------------------------


def _next_cron(after_ms: int) -> int:
    """The first `*/2 * * * * *` time strictly after after_ms (even seconds of the minute)."""
    second = after_ms // 1000 + 1
    return (second + second % 2) * 1000


def _first_from_readback(op: Op) -> int | None:
    # An earlier create whose outcome was unknown may have landed in between and replaced it.
    if op.readback is None or op.readback.get("data") != {"op": op.op_id}:
        return None
    status = op.readback["status"]
    step = EVERY_MS if op.kind == "every" else CRON_STEP_MS
    return parse_ms(status["nextTrigger"]) - int(status["count"]) * step


def _first_from_window(op: Op, delivered: set[int]) -> int | None:
    """The first occurrence if the create's [invoke, complete] window and the times delivered
    leave one candidate only; None otherwise."""
    if op.kind == "every":
        if not delivered:
            return None
        phase = min(delivered) % EVERY_MS
        low = op.invoke_ms + EVERY_MS
        first = low + (phase - low) % EVERY_MS
        return first if first + EVERY_MS > op.complete_ms + EVERY_MS else None
    low, high = _next_cron(op.invoke_ms), _next_cron(op.complete_ms)
    if low == high or (delivered and min(delivered) == low):
        return low
    return None


def expected_occurrences(op: Op, delivered: set[int]) -> list[int] | None:
    """Every occurrence `op`'s job has if nothing supersedes it; None if not exactly known."""
    body = op.body or {}
    if op.kind in ("due", "keep"):
        return [parse_ms(body["dueTime"])]
    first = _first_from_readback(op)
    if first is None:
        first = _first_from_window(op, delivered)
    if first is None:
        return None
    if op.kind == "every":
        return [first + k * EVERY_MS for k in range(int(body["repeats"]))]
    ttl_ms = parse_ms(body["ttl"])
    return list(range(first, ttl_ms + 1, CRON_STEP_MS))


# -- the checks -------------------------------------------------------------------------------


def _later_ops(ops: list[Op]) -> dict[int, list[Op]]:
    """For each op, the ops on the same name invoked after it that could have changed it."""
    by_name: dict[str, list[Op]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.invoke_mono):
        by_name[op.name].append(op)
    later: dict[int, list[Op]] = {}
    for same in by_name.values():
        for k, op in enumerate(same):
            later[op.op_id] = [o for o in same[k + 1 :] if o.outcome != "failed"]
    return later


def check_timing(deliveries: list[Delivery], verdict: Verdict) -> None:
    for d in deliveries:
        if d.received_ms < d.scheduled_ms:
            verdict.violations.append(
                f"early: {d.name} {d.trigger_id} received {d.scheduled_ms - d.received_ms} ms "
                "before its scheduled time"
            )
        if d.scheduled_header_ms != d.scheduled_ms:
            verdict.violations.append(f"tock-scheduled-time disagrees with {d.trigger_id}")


def _check_op(
    op: Op, got: list[Delivery], later: list[Op], horizon_ms: int, verdict: Verdict
) -> None:
    """Repeats/ttl exact, at least once, nothing invented, deletes and overwrites honoured."""
    where = f"op {op.op_id} ({op.kind} {op.name}, {op.outcome})"
    if got and op.outcome == "failed":
        verdict.violations.append(f"invented: {where} failed yet {len(got)} deliveries")
        return
    if len({d.uid for d in got}) > 1:
        verdict.violations.append(f"{where}: deliveries under several uids")
    delivered = {d.scheduled_ms for d in got}
    expected = expected_occurrences(op, delivered)
    if expected is None:
        if got:
            verdict.inexact.append(where)
    elif extra := sorted(delivered - set(expected)):
        verdict.violations.append(f"invented: {where} delivered {extra}, expected {expected}")
    acked_after = [o for o in later if o.outcome == "ok"]
    if acked_after:
        cut_ms = acked_after[0].complete_ms
        if after := sorted(ms for ms in delivered if ms > cut_ms):
            verdict.violations.append(
                f"superseded: {where} delivered {after}, scheduled after the ack of "
                f"op {acked_after[0].op_id} at {cut_ms}"
            )
    # A create with an unknown outcome that was delivered was evidently applied: its job owes
    # every occurrence as much as an acknowledged one.
    applied = op.outcome == "ok" or bool(got)
    due = {ms for ms in expected or [] if ms <= horizon_ms}
    if applied and not later and (missing := sorted(due - delivered)):
        verdict.violations.append(
            f"missing: {where} never delivered {missing} (delivered {sorted(delivered)})"
        )


def _check_lateness(deliveries: list[Delivery], faults: list[Fault], verdict: Verdict) -> None:
    first: dict[str, Delivery] = {}
    for d in sorted(deliveries, key=lambda d: d.received_ms):
        first.setdefault(d.trigger_id, d)
    for d in first.values():
        touched = any(
            f.start_ms <= d.received_ms and d.scheduled_ms <= f.end_ms + IN_FLIGHT_MS_MAX
            for f in faults
        )
        if touched:
            verdict.near_faults += 1
            continue
        late_ms = d.received_ms - d.scheduled_ms
        verdict.lateness_ms_max = max(verdict.lateness_ms_max, late_ms)
        if late_ms > LATENESS_MS_MAX:
            verdict.violations.append(
                f"late: {d.name} {d.trigger_id} delivered {late_ms} ms late, no fault near"
            )


def _check_duplicates(deliveries: list[Delivery], faults: list[Fault], verdict: Verdict) -> None:
    copies: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        copies[d.trigger_id].append(d)
    for trigger_id, same in copies.items():
        if len(same) < 2:
            continue
        verdict.duplicates += len(same) - 1
        start = same[0].scheduled_ms
        end = min(d.received_ms for d in same) + IN_FLIGHT_MS_MAX
        if not any(f.start_ms <= end and start <= f.end_ms for f in faults):
            verdict.violations.append(
                f"duplicate without a fault: {same[0].name} {trigger_id} delivered "
                f"{len(same)} times, at {[d.received_ms for d in same]} by "
                f"{[d.node for d in same]}"
            )


def stale_deliveries(history: History, lease_ms: int) -> list[str]:
    """Copies that a node cut off by a partition delivered after their replacement: an
    occurrence it fired before its lease lapsed (scheduled by then), received more than a lease
    after the cut began, and after another node's copy of it.

    Duplicates near a partition are allowed (check), but only one way round: the cut node's
    copy may precede its replacement, never follow it. A cut node's attempt that outlives its
    lease, and whose bytes the kernel sends once the link is back, is what this finds."""
    cuts = sorted(
        (f for f in history.faults if f.kind.startswith(PARTITION_KIND_PREFIX)),
        key=lambda f: f.start_ms,
    )
    copies: dict[str, list[Delivery]] = defaultdict(list)
    for d in sorted(history.deliveries, key=lambda d: d.received_ms):
        copies[d.trigger_id].append(d)
    stale: list[str] = []
    for same in copies.values():
        for k, d in enumerate(same):
            replacement = next((e for e in same[:k] if e.node != d.node), None)
            lapsed = [
                f.start_ms + lease_ms
                for f in cuts
                if d.node in f.nodes and d.scheduled_ms <= f.start_ms + lease_ms < d.received_ms
            ]
            if replacement is not None and lapsed:
                stale.append(
                    f"stale: {d.name} {d.trigger_id} from {d.node}, received "
                    f"{d.received_ms - lapsed[-1]} ms after its lease lapsed in a cut and "
                    f"{d.received_ms - replacement.received_ms} ms after {replacement.node}'s copy"
                )
    return stale


def _final_possibilities(op_on_name: list[Op]) -> set[int | None]:
    """The op ids that may be the name's final job (None: no job), from its ops in order: the
    effect of the last acknowledged op, or of any op whose outcome is unknown."""
    possible: set[int | None] = {None}
    for op in op_on_name:
        effect = None if op.kind == "delete" else op.op_id
        if op.outcome == "ok":
            possible = {effect}
        elif op.outcome == "unknown":
            possible.add(effect)
    return possible


def _check_kept(ops: list[Op], states: list[NodeState], verdict: Verdict) -> None:
    """Nothing acknowledged lost, deletes stay deleted: the long-lived `keep` jobs, each node."""
    by_name: dict[str, list[Op]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.invoke_mono):
        if op.outcome != "failed":
            by_name[op.name].append(op)
    for name, same in by_name.items():
        if same[0].kind != "keep":
            continue
        possible = _final_possibilities(same)
        for state in states:
            held = dict(state.jobs)
            op_id = json.loads(held[name])["data"]["op"] if name in held else None
            if op_id not in possible:
                verdict.violations.append(
                    f"lost or resurrected: {state.node} holds {name} as op {op_id}, "
                    f"expected one of {sorted(possible, key=str)}"
                )


def _check_convergence(states: list[NodeState], verdict: Verdict) -> None:
    indexes = {(s.commit_index, s.applied_index) for s in states}
    if len(indexes) != 1:
        verdict.violations.append(f"diverged indexes: {[(s.node, s.commit_index) for s in states]}")
    if len({s.jobs for s in states}) != 1:
        names = {s.node: sorted(name for name, _ in s.jobs) for s in states}
        verdict.violations.append(f"diverged jobs: {names}")


def check(history: History, states: list[NodeState], horizon_ms: int) -> Verdict:
    """Every guarantee the history shows broken; `states` are the nodes' views after
    heal and quiescence (the runner waited for their indexes to agree, bounded), `horizon_ms`
    the wall time of quiescence: every occurrence due before it must have been delivered."""
    verdict = Verdict(deliveries=len(history.deliveries))
    check_timing(history.deliveries, verdict)
    _check_lateness(history.deliveries, history.faults, verdict)
    by_op: dict[int, list[Delivery]] = defaultdict(list)
    for d in history.deliveries:
        by_op[d.op_id].append(d)
    creates = {op.op_id: op for op in history.ops if op.kind in CREATE_KINDS}
    if unknown := sorted(set(by_op) - set(creates)):
        verdict.violations.append(f"invented: deliveries of no create: ops {unknown}")
    later = _later_ops(history.ops)
    for op in creates.values():
        _check_op(op, by_op.get(op.op_id, []), later[op.op_id], horizon_ms, verdict)
    _check_duplicates(history.deliveries, history.faults, verdict)
    _check_kept(history.ops, states, verdict)
    _check_convergence(states, verdict)
    return verdict
