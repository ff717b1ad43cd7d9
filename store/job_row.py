"""A stored job as one bytes object: how the machine keeps a million jobs in half the memory.

A Job held as objects costs about 750 bytes resident: the Job and JobSpec tuples (330), the uid,
the data and three ms ints as objects of their own (~230), and the partition number. Packed as
one msgpack array (about 160 bytes for a typical job, ~190 as a bytes object) it costs a quarter
of that; `unpack` builds the Job again in about 2 us when a read, an ack or a fire needs it.

A row is the job's partition, its other fields in Job's order without `spec`, then JobSpec's
without `name` (the job's own): a failure policy as its array (store/codec.py's snapshot form),
enums as their strings, an attempt as its array. So a row is also one line of a snapshot's job
columns (store/job_columns.py): a snapshot is written from the rows and read back into rows
without building a single Job. The partition comes first, at a fixed offset, so that finding
the jobs of some partitions reads two bytes of each row (`partition`) instead of keeping an
index of them. Rows are only ever written by `pack` (or from a snapshot whose every column was
checked), so `unpack` checks nothing.

Pure and thread-safe: a row is immutable, and packing keeps no shared state.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from sys import intern
from typing import Any

import msgpack

from store.failure_policy import FailureKind, FailurePolicy
from store.history import Attempt, AttemptOutcome
from store.jobs import Job, JobSpec, MisfirePolicy

# The row's fields, in order.
ROW_FIELDS = (
    "partition",
    *(name for name in Job._fields if name not in ("spec", "partition")),
    *(f"spec.{name}" for name in JobSpec._fields if name != "name"),
)
# Where a Job's partition and spec are.
_JOB_PARTITION = Job._fields.index("partition")
_JOB_SPEC = Job._fields.index("spec")
_NAME = ROW_FIELDS.index("name")
_ZONE = ROW_FIELDS.index("zone")
_HISTORY = ROW_FIELDS.index("history")
_POLICY = ROW_FIELDS.index("spec.failure_policy")
_MISFIRE = ROW_FIELDS.index("spec.misfire_policy")
# More than 15 fields: a row opens with 0xdc and a 2-byte count, then the partition.
assert len(ROW_FIELDS) > 15 and ROW_FIELDS[0] == "partition"
_PARTITION_OFFSET = 3

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
        (job.partition, *job[:_JOB_PARTITION], *job[_JOB_SPEC + 1 :], *job.spec[1:]),
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
            f[_NAME],
            *f[_HISTORY + 1 : _POLICY],
            _policy(f[_POLICY]),
            _MISFIRE_POLICIES[f[_MISFIRE]],
            *f[_MISFIRE + 1 :],
        )
    )
    history = f[_HISTORY]
    return _new_job(
        (
            # One namespace and app string for all: the key tuples of a node's timers hold them.
            intern(f[1]),
            intern(f[2]),
            *f[3:_ZONE],
            f[0],
            spec,
            *f[_ZONE:_HISTORY],
            history and tuple(map(_attempt, history)),
        )
    )


def partition(row: bytes) -> int:
    """The row's partition, read from its bytes: a uint below 2**16 (store/partition.py) is a
    positive fixint, or 0xcc and one byte, or 0xcd and two."""
    kind = row[_PARTITION_OFFSET]
    if kind < 0x80:
        return kind
    if kind == 0xCC:
        return row[_PARTITION_OFFSET + 1]
    return row[_PARTITION_OFFSET + 1] << 8 | row[_PARTITION_OFFSET + 2]


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
