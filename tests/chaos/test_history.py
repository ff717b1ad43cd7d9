"""The chaos checker (history.py) on hand-made histories: a clean one passes, and each broken
guarantee is reported. Pure and fast: no cluster."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from tests.chaos.guarantee_run import rfc3339
from tests.chaos.history import (
    Delivery,
    Fault,
    History,
    NodeState,
    Op,
    check,
    stale_deliveries,
)

T0 = 1_800_000_000_000
HORIZON = T0 + 60_000
UID = "u1"


def create(op_id: int, kind: str, body: dict[str, Any], **changes: object) -> Op:
    op = Op(op_id, "every", f"w-{op_id}", "n1", T0, T0 + 20, 0.0, 0.02, "ok", body)
    return replace(op, kind=kind, **changes)  # type: ignore[arg-type]


def delivered(op: Op, scheduled_ms: int, late_ms: int = 5, uid: str = UID) -> Delivery:
    return Delivery(
        op.op_id, op.name, f"{scheduled_ms}:{uid}", uid, scheduled_ms, scheduled_ms, "n2", 1,
        scheduled_ms + late_ms,
    )  # fmt: skip


def every_job(op_id: int = 1, repeats: int = 3) -> Op:
    """An `@every 1s` job stamped at T0 + 10 ms, read back before its first occurrence."""
    readback = {"data": {"op": op_id}, "status": {"count": 0, "nextTrigger": rfc3339(T0 + 1010)}}
    body = {"schedule": "@every 1s", "repeats": repeats, "data": {"op": op_id}}
    return create(op_id, "every", body, readback=readback)


def states(jobs: tuple[tuple[str, str], ...] = ()) -> list[NodeState]:
    return [NodeState(node, 7, 7, jobs) for node in ("n1", "n2", "n3")]


def violations(history: History, final: list[NodeState] | None = None) -> list[str]:
    return check(history, states() if final is None else final, HORIZON).violations


def test_a_clean_history_passes() -> None:
    job = every_job()
    cron_body = {"schedule": "*/2 * * * * *", "ttl": rfc3339(T0 + 6500), "data": {"op": 2}}
    cron = create(2, "cron", cron_body, invoke_ms=T0 + 100, complete_ms=T0 + 150)
    history = History(
        [job, cron],
        [delivered(job, T0 + 1010 + k * 1000) for k in range(3)]
        + [delivered(cron, T0 + ms) for ms in (2000, 4000, 6000)],
    )
    assert violations(history) == []


def test_an_early_delivery_is_reported() -> None:
    job = every_job(repeats=1)
    history = History([job], [delivered(job, T0 + 1010, late_ms=-3)])
    assert [v for v in violations(history) if v.startswith("early")]


def test_a_missing_and_an_invented_occurrence_are_reported() -> None:
    job = every_job(repeats=2)
    history = History([job], [delivered(job, T0 + 1010), delivered(job, T0 + 5010)])
    found = violations(history)
    assert any(v.startswith("missing") and str(T0 + 2010) in v for v in found)
    assert any(v.startswith("invented") and str(T0 + 5010) in v for v in found)


def test_a_late_delivery_far_from_any_fault_is_reported() -> None:
    job = every_job(repeats=1)
    late = History([job], [delivered(job, T0 + 1010, late_ms=9000)])
    assert any(v.startswith("late") for v in violations(late))
    excused = replace(late, faults=[Fault("pause", ("n1",), T0 + 500, T0 + 4000)])
    assert violations(excused) == []


def test_a_duplicate_is_allowed_only_while_a_fault_overlaps_it() -> None:
    job = every_job(repeats=1)
    copies = [delivered(job, T0 + 1010), delivered(job, T0 + 1010, late_ms=900)]
    alone = History([job], copies)
    assert any(v.startswith("duplicate") for v in violations(alone))
    during = History([job], copies, [Fault("kill", ("n2",), T0 + 1500, T0 + 4000)])
    assert violations(during) == []
    assert check(during, states(), HORIZON).duplicates == 1


def test_an_occurrence_scheduled_after_an_acknowledged_delete_is_reported() -> None:
    job = every_job(repeats=3)
    delete = Op(2, "delete", job.name, "n3", T0 + 1500, T0 + 1600, 1.5, 1.6, "ok")
    history = History([job, delete], [delivered(job, T0 + 1010), delivered(job, T0 + 2010)])
    assert any(v.startswith("superseded") for v in violations(history))


def test_a_lost_job_and_diverged_replicas_are_reported() -> None:
    keep_body = {"dueTime": rfc3339(T0 + 3_600_000), "data": {"op": 1}}
    keep = replace(create(1, "keep", keep_body), name="k-1")
    held = (("k-1", json.dumps({"data": {"op": 1}})),)
    assert violations(History([keep]), states(held)) == []
    final = [*states(held)[:2], NodeState("n3", 7, 7, ())]
    found = violations(History([keep]), final)
    assert any(v.startswith("lost") for v in found)
    assert any(v.startswith("diverged jobs") for v in found)


def test_a_cut_node_copy_after_its_replacement_is_stale_and_one_before_it_is_not() -> None:
    job = every_job(repeats=1)
    scheduled = T0 + 1010
    cut = Fault("partition-leader", ("n1",), T0 + 800, T0 + 9000)
    replacement = replace(delivered(job, scheduled, late_ms=1500), node="n2")
    stale_copy = replace(delivered(job, scheduled, late_ms=7000), node="n1")
    history = History([job], [replacement, stale_copy], [cut])
    lease_ms = 1000
    assert len(stale_deliveries(history, lease_ms)) == 1
    assert violations(history) == [], "a duplicate near a cut is no violation of check()"
    first = replace(stale_copy, received_ms=scheduled + 10)
    assert stale_deliveries(replace(history, deliveries=[first, replacement]), lease_ms) == []
    not_a_partition = replace(history, faults=[replace(cut, kind="pause")])
    assert stale_deliveries(not_a_partition, lease_ms) == []
    fired_after_its_lease = replace(history, faults=[replace(cut, start_ms=T0 - 500)])
    assert stale_deliveries(fired_after_its_lease, lease_ms) == []
