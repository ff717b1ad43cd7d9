"""A stored job as one bytes object: how the machine keeps a million jobs in half the memory.

A Job held as objects costs about 750 bytes resident: the Job and JobSpec tuples (330), the uid,
the data and three ms ints as objects of their own (~230), and the partition number. Packed as
one msgpack array (about 160 bytes for a typical job, ~190 as a bytes object) it costs a quarter
of that; `unpack` builds the Job again in about 2 us when a read, an ack or a fire needs it.

A row is the job's fields in Job's order without `spec`, then JobSpec's without `name` (the
job's own): a failure policy as its array (store/codec.py's snapshot form), enums as their
strings, an attempt as its array. So a row is also one line of a snapshot's job columns
(store/job_columns.py): a snapshot is written from the rows and read back into rows without
building a single Job. Rows are only ever written by `pack` (or from a snapshot whose every
column was checked), so `unpack` checks nothing.

Pure and thread-safe: a row is immutable, and packing keeps no shared state.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

import msgpack

from store.failure_policy import FailureKind, FailurePolicy
from store.history import Attempt, AttemptOutcome
from store.jobs import Job, JobSpec, MisfirePolicy

SPEC_INDEX = Job._fields.index("spec")
# The row's fields, in order.
ROW_FIELDS = (
    *(name for name in Job._fields if name != "spec"),
    *(f"spec.{name}" for name in JobSpec._fields if name != "name"),
)
_JOB_FIELDS = len(Job._fields) - 1
NAME_INDEX = Job._fields.index("name")
HISTORY_INDEX = ROW_FIELDS.index("history")
POLICY_INDEX = ROW_FIELDS.index("spec.failure_policy")
MISFIRE_INDEX = ROW_FIELDS.index("spec.misfire_policy")
PARTITION_INDEX = ROW_FIELDS.index("partition")

_new_job = functools.partial(tuple.__new__, Job)
_new_spec = functools.partial(tuple.__new__, JobSpec)
_MISFIRE_POLICIES: dict[Hashable, MisfirePolicy] = {str(p): p for p in MisfirePolicy}
_FAILURE_KINDS = {str(kind): kind for kind in FailureKind}
_OUTCOMES = {str(outcome): outcome for outcome in AttemptOutcome}
# Policies decoded so far, by their array: jobs share a handful. Cleared when it grows past
# this, so a stream of distinct policies cannot grow it without bound.
_POLICIES_CACHED_MAX = 4096
_policies: dict[Hashable, FailurePolicy] = {}


def policy_row(policy: FailurePolicy) -> tuple[object, ...]:
    """A failure policy as an array: its snapshot form."""
    return (
        policy.kind,
        policy.interval_ms,
        policy.max_retries,
        policy.max_interval_ms,
        policy.multiplier,
    )


def pack_policy(value: object) -> object:
    if isinstance(value, FailurePolicy):
        return policy_row(value)
    raise TypeError(f"cannot pack {type(value).__name__}")


def pack(job: Job) -> bytes:
    """The job as a row."""
    return msgpack.packb(
        (*job[:SPEC_INDEX], *job[SPEC_INDEX + 1 :], *job.spec[1:]),
        use_bin_type=True,
        default=pack_policy,
    )


def fields(row: bytes) -> tuple[Any, ...]:
    """The row's fields, as stored (a policy, a misfire policy and a history not decoded)."""
    return msgpack.unpackb(row, use_list=False)  # type: ignore[no-any-return]


def unpack(row: bytes) -> Job:
    """The job in a row written by `pack`."""
    f = fields(row)
    spec = _new_spec(
        (
            f[NAME_INDEX],
            *f[_JOB_FIELDS:POLICY_INDEX],
            _policy(f[POLICY_INDEX]),
            _MISFIRE_POLICIES[f[MISFIRE_INDEX]],
            *f[MISFIRE_INDEX + 1 :],
        )
    )
    history = f[HISTORY_INDEX]
    return _new_job(
        (
            *f[:SPEC_INDEX],
            spec,
            *f[SPEC_INDEX:HISTORY_INDEX],
            history and tuple(map(_attempt, history)),
        )
    )


def partition(row: bytes) -> int:
    return fields(row)[PARTITION_INDEX]  # type: ignore[no-any-return]


def _policy(row: tuple[Any, ...] | None) -> FailurePolicy | None:
    if row is None:
        return None
    policy = _policies.get(row)
    if policy is None:
        if len(_policies) >= _POLICIES_CACHED_MAX:
            _policies.clear()
        kind, *rest = row
        policy = _policies[row] = FailurePolicy(_FAILURE_KINDS[kind], *rest)
    return policy


def _attempt(row: tuple[Any, ...]) -> Attempt:
    return Attempt(row[0], row[1], _OUTCOMES[row[2]], *row[3:])
