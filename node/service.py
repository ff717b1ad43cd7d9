"""The Jobs API's one implementation; the HTTP face (api.py) and the gRPC face call it alike.

Writes are validated here first (the edge: a bad request never reaches the log), stamped with
this node's clock, a fresh job uid and its time zone, then proposed through Raft; the state
machine validates them again when it applies them. Reads that must see every acknowledged write
wait for a barrier through the log first, then read the local replica.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.app_counter import AppCounter
from node.delivery.allowed_hosts import AllowedHosts
from node.scope import Scope, check_utf8, checked_text
from store.app_url import parse_app_url
from store.clock import Clock
from store.codec import (
    Command,
    Delete,
    DeletePrefix,
    ForgetDeadLetter,
    Pause,
    Put,
    Redrive,
    RegisterApp,
    Resume,
    RunNow,
    UnregisterApp,
    WithAppToken,
    encode_command,
)
from store.dead_letters import DeadLetter
from store.errors import (
    DeadLetterNotFound,
    JobConflict,
    JobNotFound,
    OutcomeUnknown,
    QuotaExceeded,
    Unauthenticated,
    ValidationError,
)
from store.history import Attempt
from store.jobs import Job, JobLimits, JobSpec, derive_job, spec_from_request, validate_name
from store.machine import AppRoute, ErrorKind, Result, check_app_token
from store.raft.store import RaftStore
from store.schedule import check_zone
from store.shared_machine import SharedMachine
from store.upcoming import upcoming_ms

LIST_LIMIT_DEFAULT = 100
# A job's uid: 96 random bits as 16 URL-safe characters. Unique for the life of any cluster
# (the machine refuses a repeated one anyway), and every job keeps one as a string: a uuid's
# 32 hex characters cost a million jobs 32 MB more.
UID_BYTES = 12
# How many next occurrences GET /jobs/{name}/next lists: by default, and at most.
UPCOMING_COUNT_DEFAULT = 10
UPCOMING_COUNT_MAX = 100
HISTORY_LIMIT_DEFAULT = 20
# A dead letter's id is a trigger id: `{scheduled ms}:{job uid}`.
DEAD_LETTER_ID_CHARS_MAX = 64


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    # The zone of schedules that name none (no CRON_TZ=): stamped into each create.
    time_zone: str = "UTC"
    # The largest `limit` of a list.
    list_limit_max: int = 1000
    # What a list answer may hold, in the JSON bytes of its jobs (see JobMachine.list_jobs): with
    # the count bound alone, a page of a thousand 1 MiB jobs would build a gigabyte on the loop.
    list_bytes_max: int = 4 * 1024 * 1024
    # The bounds a submitted job must keep (its name, its data, its time texts).
    job_limits: JobLimits = field(default_factory=JobLimits)
    # Per-app quotas: a create past either answers 429, and the app's other jobs are unaffected.
    jobs_max_per_app: int = 1_000_000
    data_bytes_max_per_app: int = 1 << 30
    # Jobs one delete-by-prefix command removes: a larger delete is several commands, so that no
    # apply holds the machine (and every node's reads) for long.
    delete_prefix_chunk_max: int = 1000

    def validate(self) -> None:
        try:
            check_zone(self.time_zone)
        except ValidationError as error:
            raise ValidationError(f"time_zone: {error}") from None
        positive = {
            "list_limit_max": self.list_limit_max,
            "list_bytes_max": self.list_bytes_max,
            "jobs_max_per_app": self.jobs_max_per_app,
            "data_bytes_max_per_app": self.data_bytes_max_per_app,
            "delete_prefix_chunk_max": self.delete_prefix_chunk_max,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValidationError(f"{name} must be >= 1, not {value}")
        self.job_limits.validate()


class JobService:
    """Every write waits at most `propose_timeout_s` (the node's) for its command to apply, and
    every read as long for the barrier that makes it see every acknowledged write."""

    def __init__(
        self,
        store: RaftStore,
        machine: SharedMachine,
        clock: Clock,
        config: ServiceConfig,
        *,
        propose_timeout_s: float,
        app_hosts: AllowedHosts | None = None,
    ) -> None:
        config.validate()
        self._store = store
        self._machine = machine
        self._clock = clock
        self._config = config
        self._propose_timeout_s = propose_timeout_s
        # Jobs this node created (overwrites included), per app: /metrics' tock_jobs_created.
        self.created = AppCounter()
        self._app_hosts = app_hosts or AllowedHosts()

    # -- jobs ------------------------------------------------------------------------------

    @property
    def limits(self) -> JobLimits:
        """The bounds a submitted job must keep: the gRPC face builds its specs with them."""
        return self._config.job_limits

    @property
    def list_limit_max(self) -> int:
        """The most jobs one list answer holds."""
        return self._config.list_limit_max

    async def schedule(self, scope: Scope, name: str, body: object) -> Job:
        self._check_name(name)
        spec, overwrite = spec_from_request(name, body, self._config.job_limits)
        return await self.schedule_spec(scope, spec, overwrite)

    async def schedule_spec(self, scope: Scope, spec: JobSpec, overwrite: bool) -> Job:
        """Schedule a spec already checked against `limits` (by spec_from_request or alike)."""
        put = Put(
            namespace=scope.namespace,
            app=scope.app,
            spec=spec,
            overwrite=overwrite,
            now_ms=self._clock.wall_ms(),
            uid=secrets.token_urlsafe(UID_BYTES),
            zone=self._config.time_zone,
            jobs_max=self._config.jobs_max_per_app,
            data_bytes_max=self._config.data_bytes_max_per_app,
        )
        # The whole derivation (schedule, dueTime, ttl) runs here too, so that every error the
        # machine would give comes back before anything is proposed.
        derive_job(spec, put.namespace, put.app, put.uid, put.now_ms, put.zone, 1)
        job = (await self._write(put, scope)).value
        assert isinstance(job, Job)
        self.created.count(put.namespace, put.app)
        return job

    async def get(self, scope: Scope, name: str) -> Job:
        self._check_name(name)
        validate_name(name, self._config.job_limits.name_chars_max)
        await self._store.barrier(self._propose_timeout_s)
        job = self._machine.read(lambda m: m.get(scope.namespace, scope.app, name))
        if job is None:
            raise JobNotFound(f"job not found: {name}")
        return job

    async def upcoming(self, scope: Scope, name: str, count: int | None) -> list[int]:
        """The scheduled times of the job's next `count` occurrences (store/upcoming.py)."""
        count = UPCOMING_COUNT_DEFAULT if count is None else count
        if not 1 <= count <= UPCOMING_COUNT_MAX:
            raise ValidationError(f"count must be between 1 and {UPCOMING_COUNT_MAX}")
        return upcoming_ms(await self.get(scope, name), count)

    async def delete(self, scope: Scope, name: str) -> None:
        self._check_name(name)
        validate_name(name, self._config.job_limits.name_chars_max)
        await self._write(Delete(scope.namespace, scope.app, name), scope)

    async def list(
        self, scope: Scope, prefix: str, limit: int | None, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        limit_max = self._config.list_limit_max
        if limit is None:
            limit = min(LIST_LIMIT_DEFAULT, limit_max)
        if not 1 <= limit <= limit_max:
            raise ValidationError(f"limit must be between 1 and {limit_max}")
        self._check_prefix(prefix)
        # A cursor is the last name of the previous page: the same rule as a name.
        checked_text("cursor", cursor or "", self._config.job_limits.name_chars_max)
        bytes_max = self._config.list_bytes_max
        await self._store.barrier(self._propose_timeout_s)
        return self._machine.read(
            lambda m: m.list_jobs(
                scope.namespace, scope.app, prefix, limit, cursor or None, bytes_max=bytes_max
            )
        )

    async def delete_prefix(self, scope: Scope, prefix: str) -> int:
        """Delete every job of the app whose name starts with `prefix`, a chunk per command.

        Each chunk is atomic; the whole is not: a job created meanwhile under the prefix may or
        may not be deleted, as with any delete that races a create. Between chunks the machine
        is free for other commands and reads, so a delete of a million jobs stops nobody.
        """
        self._check_prefix(prefix)
        chunk = self._config.delete_prefix_chunk_max
        total = 0
        while True:
            command = DeletePrefix(scope.namespace, scope.app, prefix, chunk)
            deleted = (await self._write(command, scope)).value
            assert isinstance(deleted, int) and 0 <= deleted <= chunk
            total += deleted
            if deleted < chunk:
                return total

    def _check_name(self, name: str) -> None:
        """Valid UTF-8 first: validate_name has every other rule of a name (and its messages)."""
        check_utf8("job name", name)

    def _check_prefix(self, prefix: str) -> None:
        checked_text("prefix", prefix, self._config.job_limits.name_chars_max)

    # -- operations beyond Dapr's ------------------------------------------------------------

    async def pause(self, scope: Scope, name: str) -> None:
        self._check_name(name)
        await self._write(Pause(scope.namespace, scope.app, name), scope)

    async def resume(self, scope: Scope, name: str) -> None:
        self._check_name(name)
        await self._write(Resume(scope.namespace, scope.app, name, self._clock.wall_ms()), scope)

    async def run_now(self, scope: Scope, name: str) -> None:
        self._check_name(name)
        await self._write(RunNow(scope.namespace, scope.app, name, self._clock.wall_ms()), scope)

    async def history(self, scope: Scope, name: str, limit: int | None) -> Sequence[Attempt]:
        """The job's last attempts, newest first."""
        if limit is not None and limit < 1:
            raise ValidationError("limit must be a positive integer")
        job = await self.get(scope, name)
        newest_first = list(reversed(job.history))
        return newest_first[: limit or HISTORY_LIMIT_DEFAULT]

    async def dead_letters(
        self, scope: Scope, prefix: str, limit: int | None, cursor: str | None
    ) -> tuple[Sequence[DeadLetter], str | None]:
        limit_max = self._config.list_limit_max
        limit = min(LIST_LIMIT_DEFAULT, limit_max) if limit is None else limit
        if not 1 <= limit <= limit_max:
            raise ValidationError(f"limit must be between 1 and {limit_max}")
        self._check_prefix(prefix)
        checked_text("cursor", cursor or "", DEAD_LETTER_ID_CHARS_MAX)
        await self._store.barrier(self._propose_timeout_s)
        return self._machine.read(
            lambda m: m.dead_letters(scope.namespace, scope.app, prefix, cursor or None, limit)
        )

    async def redrive(self, scope: Scope, letter_id: str) -> None:
        checked_text("dead letter id", letter_id, DEAD_LETTER_ID_CHARS_MAX)
        await self._write(
            Redrive(scope.namespace, scope.app, letter_id, self._clock.wall_ms()), scope
        )

    async def forget_dead_letter(self, scope: Scope, letter_id: str) -> None:
        checked_text("dead letter id", letter_id, DEAD_LETTER_ID_CHARS_MAX)
        await self._write(ForgetDeadLetter(scope.namespace, scope.app, letter_id), scope)

    # -- apps ------------------------------------------------------------------------------

    async def register_app(self, scope: Scope, url: str, token: str = "") -> None:
        """Send the app's triggers to `url`, with `dapr-api-token: token` unless it is "". The
        URL must keep the rules of an app URL and point where deliveries may go."""
        await self._app_hosts.check(parse_app_url(url))
        check_app_token(token)
        await self._write(RegisterApp(scope.namespace, scope.app, url, token), scope)

    async def app_route(self, scope: Scope) -> AppRoute | None:
        await self._store.barrier(self._propose_timeout_s)
        return self._machine.read(lambda m: m.app_route(scope.namespace, scope.app))

    async def unregister_app(self, scope: Scope) -> bool:
        return bool((await self._write(UnregisterApp(scope.namespace, scope.app), scope)).value)

    # -- the write path --------------------------------------------------------------------

    async def write(self, command: Command) -> Result:
        """Propose any command and return its result, a refusal raised as its TockError: the
        write path of the services beside the Jobs API (app tokens, asked for by the admin)."""
        return await self._write(command, None)

    async def _write(self, command: Command, scope: Scope | None) -> Result:
        """Propose `command`, asked for by `scope`: with the app token it came with, if any, so
        that every replica refuses it once that token is revoked (store/codec.py WithAppToken)."""
        data = encode_command(command)
        if scope is not None and scope.token_id is not None:
            guarded = WithAppToken(scope.namespace, scope.app, scope.token_id, data)
            data = encode_command(guarded)
        result = await self._store.propose(data, self._propose_timeout_s)
        if not isinstance(result, Result):
            # The entry applied nothing (e.g. the Raft layer reported a failed assembly).
            raise OutcomeUnknown(f"the command was not applied: {result}")
        if result.ok:
            return result
        if result.error is ErrorKind.CONFLICT:
            raise JobConflict(result.message)
        if result.error is ErrorKind.QUOTA:
            raise QuotaExceeded(result.message)
        if result.error is ErrorKind.UNAUTHENTICATED:
            raise Unauthenticated(result.message)
        if result.error is ErrorKind.NOT_FOUND:
            if isinstance(command, Redrive):
                raise DeadLetterNotFound(result.message)
            raise JobNotFound(result.message)
        raise ValidationError(result.message)
