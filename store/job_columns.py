"""A snapshot's jobs as columns: an array per field (per block of jobs), checked and built in C.

Stored row by row, a restore pays a Python function call, a dozen type checks, five string
interns and two tuple builds per job: about 6 us, six seconds at a million jobs. Stored as
columns (every job's namespace, then every job's app, ...), each check is `all(map(isinstance,
column, ...))` and each build a `map` of `tuple.__new__` over a `zip` of columns, all in C:
the same checks at a fraction of the cost (`scripts/bench snapshot` times it).

Layout (snapshot version 3): an array of blocks, each `[count, *job columns, *spec columns]`
for up to BLOCK_JOBS jobs in the snapshot's order, where the job columns are Job's fields but
`spec` (store/codec.py JOB_FIELDS) and the spec columns JobSpec's fields (SPEC_FIELDS), each an
array of `count` values. Blocks keep every pass over the jobs within the CPU's caches (a column
of a million jobs, read from Job objects spread over the heap, costs a cache miss per job) and
bound the extra memory of encoding and decoding to one block. A failure policy and an attempt
history are decoded by the caller's functions (store/codec.py), once per distinct policy and
once per non-empty history.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from functools import partial
from itertools import repeat
from typing import Any

import msgpack

from store.errors import CodecError
from store.failure_policy import FailurePolicy
from store.history import Attempt
from store.jobs import Job, JobSpec, MisfirePolicy

_NONE = type(None)
_OPTIONAL_INT = (int, _NONE)
_OPTIONAL_STR = (str, _NONE)
SPEC_INDEX = Job._fields.index("spec")

# Each column's type, in Job's order without `spec`, then JobSpec's (codec.py checks the rows of
# older snapshots with the same). A bool passes for an int (isinstance), which only our own
# encoder could have written into a checksummed snapshot.
JOB_COLUMN_TYPES: tuple[type | tuple[type, ...], ...] = (
    *(str, str, str, str, int, str, int),
    *(_OPTIONAL_INT, _OPTIONAL_INT, int, _OPTIONAL_INT, int, int, _OPTIONAL_INT, _OPTIONAL_STR),
    *(bool, _OPTIONAL_INT, tuple),
)
SPEC_COLUMN_TYPES: tuple[type | tuple[type, ...], ...] = (
    *(str, _OPTIONAL_STR, _OPTIONAL_STR, _OPTIONAL_INT, _OPTIONAL_STR),
    *(bytes, str, (tuple, _NONE), str, _OPTIONAL_STR, _OPTIONAL_STR),
)
_JOB_COLUMNS = tuple(name for name in Job._fields if name != "spec")
assert len(JOB_COLUMN_TYPES) == len(_JOB_COLUMNS)
assert len(SPEC_COLUMN_TYPES) == len(JobSpec._fields)
COLUMNS = len(_JOB_COLUMNS) + len(JobSpec._fields)
# Jobs per block: a block's jobs and columns stay within the CPU's caches.
BLOCK_JOBS = 1024

# Columns whose few distinct strings every job would otherwise hold a copy of.
_INTERNED_JOB_COLUMNS = frozenset({"namespace", "app", "zone"})
_INTERNED_SPEC_COLUMNS = frozenset({"schedule", "data_type"})

_MISFIRE_POLICIES: dict[Hashable, Any] = {str(policy): policy for policy in MisfirePolicy}
_new_job = partial(tuple.__new__, Job)
_new_spec = partial(tuple.__new__, JobSpec)


def pack_jobs(packer: msgpack.Packer, jobs: Sequence[Job]) -> Iterator[bytes]:
    """The packed pieces of the jobs array, in order (join them, or write them one by one)."""
    yield packer.pack_array_header(-(-len(jobs) // BLOCK_JOBS))
    for start in range(0, len(jobs), BLOCK_JOBS):
        block = jobs[start : start + BLOCK_JOBS]
        job_columns = list(zip(*block, strict=True))
        spec_columns = zip(*job_columns.pop(SPEC_INDEX), strict=True)
        yield packer.pack((len(block), *job_columns, *spec_columns))


def unpack_jobs(
    unpacker: msgpack.Unpacker,
    policy_of: Callable[[Any], FailurePolicy | None],
    history_of: Callable[[Any], tuple[Attempt, ...]],
) -> list[Job]:
    """The jobs of a column layout; CodecError naming the column for anything out of place.

    `policy_of` decodes one failure policy row (or None), `history_of` one non-empty history.
    """
    jobs: list[Job] = []
    policies: dict[Hashable, Any] = {}
    for _ in range(unpacker.read_array_header()):
        if unpacker.read_array_header() != 1 + COLUMNS:
            raise CodecError(f"snapshot jobs: a block of other than {1 + COLUMNS} arrays")
        count = unpacker.unpack()
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= BLOCK_JOBS:
            raise CodecError(f"snapshot jobs: bad block count {count!r:.80}")
        jobs.extend(_block(unpacker, count, policies, policy_of, history_of))
    return jobs


def _block(
    unpacker: msgpack.Unpacker,
    count: int,
    policies: dict[Hashable, Any],
    policy_of: Callable[[Any], FailurePolicy | None],
    history_of: Callable[[Any], tuple[Attempt, ...]],
) -> Iterator[Job]:
    job_columns = {
        name: _column(unpacker, count, name, kind)
        for name, kind in zip(_JOB_COLUMNS, JOB_COLUMN_TYPES, strict=True)
    }
    spec_columns = {
        name: _column(unpacker, count, f"spec.{name}", kind)
        for name, kind in zip(JobSpec._fields, SPEC_COLUMN_TYPES, strict=True)
    }
    if spec_columns["name"] != job_columns["name"]:
        raise CodecError("snapshot jobs: a spec's name differs from its job's")
    # One string for both, as a job built by apply has: 64 bytes a job less after a restart.
    spec_columns["name"] = job_columns["name"]
    for name in _INTERNED_JOB_COLUMNS:
        job_columns[name] = list(map(sys.intern, job_columns[name]))
    for name in _INTERNED_SPEC_COLUMNS:
        spec_columns[name] = _interned(spec_columns[name])
    spec_columns["misfire_policy"] = _decoded(
        spec_columns["misfire_policy"], "misfire_policy", _MISFIRE_POLICIES, _misfire_policy
    )
    spec_columns["failure_policy"] = _decoded(
        spec_columns["failure_policy"], "failure_policy", policies, policy_of
    )
    # Only jobs that have fired have a history: the rest keep the empty tuple they came with.
    job_columns["history"] = [history and history_of(history) for history in job_columns["history"]]
    job_columns["spec"] = list(map(_new_spec, zip(*spec_columns.values(), strict=True)))
    return map(_new_job, zip(*(job_columns[name] for name in Job._fields), strict=True))


def _column(
    unpacker: msgpack.Unpacker, count: int, name: str, kind: type | tuple[type, ...]
) -> Sequence[Any]:
    column = unpacker.unpack()
    if not isinstance(column, tuple) or len(column) != count:
        raise CodecError(f"snapshot jobs.{name}: expected an array of {count} values")
    if not all(map(isinstance, column, repeat(kind))):
        bad = next(value for value in column if not isinstance(value, kind))
        raise CodecError(f"snapshot jobs.{name}: unexpected value {bad!r:.80}")
    return column


def _interned(column: Sequence[str | None]) -> list[str | None]:
    table: dict[str | None, str | None] = {text: text and sys.intern(text) for text in set(column)}
    return list(map(table.__getitem__, column))


def _decoded(
    column: Sequence[Hashable],
    name: str,
    known: dict[Hashable, Any],
    decode: Callable[[Any], Any],
) -> list[Any]:
    """Each value decoded, each distinct one once (`known` keeps them across blocks);
    CodecError for a value that cannot be."""
    try:
        for value in set(column).difference(known):
            known[value] = decode(value)
    except TypeError as error:  # an unhashable value: a map where an array belongs
        raise CodecError(f"snapshot jobs.{name}: {error}") from None
    return list(map(known.__getitem__, column))


def _misfire_policy(text: str) -> MisfirePolicy:
    try:
        return MisfirePolicy(text)
    except ValueError:
        raise CodecError(f"unknown misfire policy {text!r:.80}") from None
