"""Export and import of jobs with their whole state, as NDJSON: one job a line, streamed both ways
so that a million jobs never sit in memory at once.

A line is `{"namespace", "app", "name", "definition", "status", "state"}`: the definition and
status as GET shows them, for people and tools, and `state`, the job's exact replicated state
(base64 of its msgpack row), which is what an import reads. Importing into another cluster keeps
every job's uid, schedule position, count, pause and history, so it fires the same occurrences
with the same trigger ids. Jobs are imported in batches, each one command through the log; an
existing name is skipped unless `overwrite`. A bad line stops the import with a 400 that says
how many jobs came in before it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from store.codec import ImportJobs, decode_job, encode_command, encode_job
from store.errors import CodecError, OutcomeUnknown, ValidationError
from store.jobs import Job, job_to_json
from store.log import ReplicatedLog
from store.machine import JobKey, JobMachine, Result
from store.shared_machine import SharedMachine

# Jobs read from the machine at a time while exporting (one short hold of its lock each).
EXPORT_CHUNK_JOBS = 500
# Jobs per import command, and their encoded bytes: a batch must stay a modest Raft command.
IMPORT_BATCH_JOBS_MAX = 200
IMPORT_BATCH_BYTES_MAX = 4 * 1024 * 1024
# The longest line an import reads: a job with the largest data, base64'ed, and its definition.
IMPORT_LINE_BYTES_MAX = 80 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportCounts:
    imported: int = 0
    skipped: int = 0


def export_line(job: Job) -> bytes:
    shown = job_to_json(job)
    status = shown.pop("status")
    line = {
        "namespace": job.namespace,
        "app": job.app,
        "name": job.name,
        "definition": shown,
        "status": status,
        "state": base64.b64encode(encode_job(job)).decode(),
    }
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def job_of_line(line: bytes, number: int) -> Job:
    """The job an export line carries; a ValidationError naming the line if it carries none."""
    try:
        value = json.loads(line)
        state = value["state"] if isinstance(value, dict) else None
        if not isinstance(state, str):
            raise ValueError("no state")
        return decode_job(base64.b64decode(state, validate=True))
    except (ValueError, KeyError, RecursionError, binascii.Error, CodecError) as error:
        raise ValidationError(f"import line {number} is not an exported job: {error}") from None


class Backup:
    def __init__(
        self, store: ReplicatedLog, machine: SharedMachine, propose_timeout_s: float
    ) -> None:
        self._store = store
        self._machine = machine
        self._propose_timeout_s = propose_timeout_s

    async def export(
        self, namespace: str, app: str, prefix: str, read_timeout_s: float
    ) -> AsyncIterator[bytes]:
        """Every job (narrowed by namespace, app and name prefix), a line each, in key order."""
        await self._store.barrier(read_timeout_s)
        after: JobKey | None = None
        while True:
            read = partial(
                JobMachine.jobs_after,
                after=after,
                limit=EXPORT_CHUNK_JOBS,
                namespace=namespace,
                app=app,
                prefix=prefix,
            )
            chunk = self._machine.read(read)
            for job in chunk:
                yield export_line(job)
            if len(chunk) < EXPORT_CHUNK_JOBS:
                return
            after = chunk[-1].key

    async def import_lines(self, lines: AsyncIterator[bytes], overwrite: bool) -> ImportCounts:
        counts = ImportCounts()
        batch: list[Job] = []
        size = 0
        number = 0
        try:
            async for line in lines:
                number += 1
                if not line.strip():
                    continue
                job = job_of_line(line, number)
                batch.append(job)
                size += len(line)
                if len(batch) >= IMPORT_BATCH_JOBS_MAX or size >= IMPORT_BATCH_BYTES_MAX:
                    counts = await self._import(batch, overwrite, counts)
                    batch, size = [], 0
            if batch:
                counts = await self._import(batch, overwrite, counts)
        except ValidationError as error:
            raise ValidationError(f"{error} ({counts.imported} jobs imported before it)") from None
        return counts

    async def _import(self, jobs: list[Job], overwrite: bool, counts: ImportCounts) -> ImportCounts:
        command = encode_command(ImportJobs(tuple(jobs), overwrite))
        result = await self._store.propose(command, self._propose_timeout_s)
        if not isinstance(result, Result):
            raise OutcomeUnknown(f"the import was not applied: {result}")
        if not result.ok:
            raise ValidationError(result.message)
        value = result.value
        assert isinstance(value, tuple), "ImportJobs returns (imported, skipped)"
        imported, skipped = value
        assert isinstance(imported, int) and isinstance(skipped, int)
        return ImportCounts(counts.imported + imported, counts.skipped + skipped)


async def lines_of(chunks: AsyncIterator[bytes], line_bytes_max: int) -> AsyncIterator[bytes]:
    """The lines of a byte stream, each without its newline; a line past the bound is a 400."""
    # The pieces of the line not yet ended, joined once it ends: a long line arriving in many
    # chunks costs time in proportion to its length, not to its length squared.
    pieces: list[bytes] = []
    pending_bytes = 0
    async for chunk in chunks:
        *complete, rest = chunk.split(b"\n")
        if complete:
            yield b"".join((*pieces, complete[0]))
            for line in complete[1:]:
                yield line
            pieces, pending_bytes = [], 0
        if rest:
            pieces.append(rest)
            pending_bytes += len(rest)
        if pending_bytes > line_bytes_max:
            raise ValidationError(f"an import line is longer than {line_bytes_max} bytes")
    if pieces:
        yield b"".join(pieces)
