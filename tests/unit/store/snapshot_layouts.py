"""Older snapshot layouts made from the current one, for the tests that they still decode."""

from __future__ import annotations

from typing import Any

import msgpack

from store.codec import JOB_FIELDS

# Where a snapshot keeps its jobs: after the version and nine other fields.
JOBS_FIELD = 10
_SPEC = JOB_FIELDS.index("spec")


def unpacked(snapshot: bytes) -> list[Any]:
    """A snapshot's fields as lists, its jobs as rows (the layout of version 2)."""
    fields: list[Any] = msgpack.unpackb(snapshot, use_list=True, raw=False)
    fields[0] = 2
    fields[5:7] = old_handoff(fields[2], fields[5], fields[6])
    fields[JOBS_FIELD] = job_rows(fields[JOBS_FIELD])
    return fields


def old_handoff(
    epoch: int, past_live: list[list[Any]], released: list[list[Any]]
) -> list[list[str]]:
    """Version 4's past epochs and releases as versions 1 to 3 kept them: the live members of
    the epoch before, and the members that released the current epoch."""
    previous: list[str] = next((live for past, live in past_live if past == epoch - 1), [])
    return [previous, [member for member, last in released if last == epoch]]


def job_rows(blocks: object) -> list[list[object]]:
    """Version 3's blocks of job columns `[count, *job columns, *spec columns]` as version 2's
    rows."""
    assert isinstance(blocks, list)
    rows = []
    for count, *columns in blocks:
        job_columns, spec_columns = columns[: len(JOB_FIELDS) - 1], columns[len(JOB_FIELDS) - 1 :]
        for index in range(count):
            row = [column[index] for column in job_columns]
            row.insert(_SPEC, [column[index] for column in spec_columns])
            rows.append(row)
    return rows
