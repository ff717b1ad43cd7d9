"""A snapshot's jobs as columns: an array per field (per block of jobs), checked and built in C.

Stored row by row, a restore pays a Python function call, a dozen type checks, five string
interns and two tuple builds per job: about 6 us, six seconds at a million jobs. Stored as
columns (every job's namespace, then every job's app, ...), each check is `all(map(isinstance,
column, ...))` and each job's row (store/job_row.py, what the machine keeps) a `map` of the
packer over a `zip` of columns, all in C: the same checks at a fraction of the cost
(`scripts/bench snapshot` times it). Writing goes the other way: each row unpacked, the block
transposed.

Layout (snapshot version 3): an array of blocks, each `[count, *job columns, *spec columns]`
for up to BLOCK_JOBS jobs in the snapshot's order, where the job columns are Job's fields but
`spec` (store/codec.py JOB_FIELDS) and the spec columns JobSpec's fields (SPEC_FIELDS), each an
array of `count` values. Blocks keep every pass over the jobs within the CPU's caches (a column
of a million jobs, read from rows spread over the heap, costs a cache miss per job) and
bound the extra memory of encoding and decoding to one block. A failure policy and an attempt
history are checked by the caller's functions (store/codec.py), once per distinct policy and
once per non-empty history.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any

import msgpack

from store import job_row
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

_MISFIRE_POLICIES: dict[Hashable, Any] = {str(policy): policy for policy in MisfirePolicy}
# Where each of a snapshot's columns is in a row (the spec's name is the job's).
_ROW_OF_COLUMN = tuple(
    job_row.ROW_FIELDS.index(name)
    for name in (*_JOB_COLUMNS, "name", *(f"spec.{name}" for name in JobSpec._fields[1:]))
)
_IN_ROW = {name: job_row.ROW_FIELDS.index(name) for name in job_row.ROW_FIELDS}


class JobRows(list[bytes]):
    """Job rows (store/job_row.py) in snapshot order, with the columns a machine indexes them
    by: read from the snapshot's columns, so that indexing a million rows unpacks none.

    The columns hold no object per job that the machine does not keep (names and uids are its
    index keys): namespaces and apps are interned, numbers kept in arrays. A million small
    objects freed after the restore, spread among the ones kept, would leave the allocator's
    arenas partly used and never returned: 200 MB more resident after a restart.
    """

    __slots__ = ("apps", "data_sizes", "names", "namespaces", "partitions", "uids")

    def __init__(self, rows: Iterable[bytes] = ()) -> None:
        super().__init__(rows)
        self.namespaces: list[str] = []
        self.apps: list[str] = []
        self.names: list[str] = []
        self.uids: list[str] = []
        self.partitions = array("H")
        self.data_sizes = array("Q")

    @classmethod
    def of(cls, rows: Iterable[bytes]) -> JobRows:
        """Rows with their columns, unpacking each row (rows that came from elsewhere)."""
        indexed, rows = cls(), list(rows)
        for start in range(0, len(rows), BLOCK_JOBS):
            block = rows[start : start + BLOCK_JOBS]
            indexed._extend(block, list(zip(*map(job_row.fields, block), strict=True)))
        return indexed

    def _extend(self, rows: Sequence[bytes], columns: Sequence[Sequence[Any]]) -> None:
        """Add rows, given their columns in row order."""
        self.extend(rows)
        self.namespaces.extend(_interned(columns[_IN_ROW["namespace"]]))
        self.apps.extend(_interned(columns[_IN_ROW["app"]]))
        self.names.extend(columns[_IN_ROW["name"]])
        self.uids.extend(columns[_IN_ROW["uid"]])
        self.partitions.extend(columns[_IN_ROW["partition"]])
        self.data_sizes.extend(map(len, columns[_IN_ROW["spec.data"]]))


def pack_jobs(packer: msgpack.Packer, rows: Sequence[bytes]) -> Iterator[bytes]:
    """The packed pieces of the jobs array, in order (join them, or write them one by one)."""
    yield packer.pack_array_header(-(-len(rows) // BLOCK_JOBS))
    for start in range(0, len(rows), BLOCK_JOBS):
        block = rows[start : start + BLOCK_JOBS]
        columns = list(zip(*map(job_row.fields, block), strict=True))
        yield packer.pack((len(block), *map(columns.__getitem__, _ROW_OF_COLUMN)))


def unpack_jobs(
    unpacker: msgpack.Unpacker,
    policy_of: Callable[[Any], FailurePolicy | None],
    history_of: Callable[[Any], tuple[Attempt, ...]],
) -> JobRows:
    """The job rows of a column layout; CodecError naming the column for anything out of place.

    `policy_of` checks one failure policy row (or None), `history_of` one non-empty history.
    """
    rows = JobRows()
    policies: dict[Hashable, Any] = {}
    packer = msgpack.Packer(use_bin_type=True)
    for _ in range(unpacker.read_array_header()):
        if unpacker.read_array_header() != 1 + COLUMNS:
            raise CodecError(f"snapshot jobs: a block of other than {1 + COLUMNS} arrays")
        count = unpacker.unpack()
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= BLOCK_JOBS:
            raise CodecError(f"snapshot jobs: bad block count {count!r:.80}")
        columns = _block(unpacker, count, policies, policy_of, history_of)
        rows._extend(list(map(packer.pack, zip(*columns, strict=True))), columns)
    return rows


def _block(
    unpacker: msgpack.Unpacker,
    count: int,
    policies: dict[Hashable, Any],
    policy_of: Callable[[Any], FailurePolicy | None],
    history_of: Callable[[Any], tuple[Attempt, ...]],
) -> list[Sequence[Any]]:
    """A block's columns, every one checked, in row order (store/job_row.py)."""
    columns = {
        name: _column(unpacker, count, name, kind)
        for name, kind in zip(_JOB_COLUMNS, JOB_COLUMN_TYPES, strict=True)
    }
    columns |= {
        f"spec.{name}": _column(unpacker, count, f"spec.{name}", kind)
        for name, kind in zip(JobSpec._fields, SPEC_COLUMN_TYPES, strict=True)
    }
    if columns.pop("spec.name") != columns["name"]:
        raise CodecError("snapshot jobs: a spec's name differs from its job's")
    _check(columns["spec.misfire_policy"], "misfire_policy", _MISFIRE_POLICIES, _misfire_policy)
    _check(columns["spec.failure_policy"], "failure_policy", policies, policy_of)
    # Only jobs that have fired have a history.
    for history in columns["history"]:
        if history:
            history_of(history)
    return [columns[name] for name in job_row.ROW_FIELDS]


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


def _interned(column: Sequence[str]) -> list[str]:
    table = {text: sys.intern(text) for text in set(column)}
    return list(map(table.__getitem__, column))


def _check(
    column: Sequence[Hashable],
    name: str,
    known: dict[Hashable, Any],
    decode: Callable[[Any], Any],
) -> None:
    """CodecError unless each value decodes; each distinct one is decoded once (`known` keeps
    them across blocks)."""
    try:
        for value in set(column).difference(known):
            known[value] = decode(value)
    except TypeError as error:  # an unhashable value: a map where an array belongs
        raise CodecError(f"snapshot jobs.{name}: {error}") from None


def _misfire_policy(text: str) -> MisfirePolicy:
    try:
        return MisfirePolicy(text)
    except ValueError:
        raise CodecError(f"unknown misfire policy {text!r:.80}") from None
