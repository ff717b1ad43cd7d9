"""The guarantees, checked from a simulation's recorded history alone.

- never early: no attempt started before its occurrence was due by the sending node's clock
  (tests/chaos/history.py's timing check, on the sends);
- at least once: every occurrence of every acknowledged job was delivered with success, also
  those due during faults (misfire `all` and a failure policy that retries forever owe them all),
  and the job is gone once its sequence ended: nothing acknowledged was lost;
- exact: no occurrence outside the job's schedule, and no job that was never created;
- duplicates only under a fault: an occurrence delivered with success more than once, or sent
  again after its success, is excused only when a fault of one of the nodes that sent it (a
  crash, a partition, a proposal of its lost) overlapped it in flight, from its first send to its
  last; a clock jump concerns every node. A leader's crash alone excuses nothing on the others:
  their acks whose outcome it made unknown must be sent again, not their occurrences;
- convergence: every replica holds the same state, which is the state a fresh machine reaches by
  replaying the log, and no callback on the loop raised.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tests.chaos.history import Delivery, Fault, Verdict, check_timing
from tests.sim.app import Send


@dataclass(frozen=True)
class Created:
    name: str
    uid: str
    # Every occurrence the job has, computed from its Put alone.
    expected: tuple[int, ...]
    acked: bool


def check(
    sends: list[Send],
    created: list[Created],
    faults: list[Fault],
    digests: dict[str, str],
    final_jobs: int,
    errors: list[str],
    recreated: frozenset[str] = frozenset(),
) -> list[str]:
    violations = [f"loop error: {error}" for error in errors]
    verdict = Verdict()
    check_timing([_as_delivery(send) for send in sends], verdict)
    violations += verdict.violations
    violations += _check_occurrences(sends, created)
    violations += _check_duplicates([s for s in sends if s.uid not in recreated], faults)
    if len(set(digests.values())) != 1:
        violations.append(f"replicas diverged: {digests}")
    if final_jobs:
        violations.append(f"{final_jobs} jobs left in the machine after every job finished")
    return violations


def _as_delivery(send: Send) -> Delivery:
    return Delivery(
        op_id=0,
        name=send.uid,
        trigger_id=send.trigger_id,
        uid=send.uid,
        scheduled_ms=send.scheduled_ms,
        scheduled_header_ms=send.scheduled_ms,
        node=send.node,
        attempt=send.attempt,
        received_ms=send.node_wall_ms,
    )


def _check_occurrences(sends: list[Send], created: list[Created]) -> list[str]:
    violations = []
    by_uid = {job.uid: job for job in created}
    succeeded: dict[str, set[int]] = defaultdict(set)
    for send in sends:
        job = by_uid.get(send.uid)
        if job is None:
            violations.append(f"invented: {send.trigger_id} of no created job")
        elif send.scheduled_ms not in job.expected:
            violations.append(f"invented: {job.name} sent {send.trigger_id}, not in its schedule")
        elif send.outcome == "SUCCESS":
            succeeded[send.uid].add(send.scheduled_ms)
    for job in created:
        missing = sorted(set(job.expected) - succeeded[job.uid])
        if job.acked and missing:
            violations.append(f"missing: {job.name} never delivered {missing}")
    return violations


def _check_duplicates(sends: list[Send], faults: list[Fault]) -> list[str]:
    violations = []
    copies: dict[str, list[Send]] = defaultdict(list)
    for send in sends:
        copies[send.trigger_id].append(send)
    for trigger_id, same in sorted(copies.items()):
        successes = [send for send in same if send.outcome == "SUCCESS"]
        if not successes:
            continue
        first = successes[0]
        assert first.done_ms is not None
        after = [s for s in same if s is not first and s.sent_ms >= first.done_ms]
        involved = [first, *successes[1:], *after]
        if len(involved) < 2:
            continue
        start_ms = min(send.sent_ms for send in involved)
        end_ms = max(send.sent_ms for send in involved)
        senders = {send.node for send in same}
        if not any(
            f.start_ms <= end_ms and start_ms <= f.end_ms and senders & set(f.nodes) for f in faults
        ):
            violations.append(
                f"duplicate without a fault: {trigger_id} sent by "
                f"{[(s.node, s.attempt, s.sent_ms, s.outcome) for s in same]}"
            )
    return violations
