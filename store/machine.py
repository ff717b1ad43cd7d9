"""JobMachine: the whole replicated state of a tock cluster, changed only by `apply`.

`apply(command) -> Result` is deterministic: no clock, no randomness, no I/O. Time, job uids and
the default zone arrive inside the command, stamped by the node that proposed it, so every
replica that applies the same commands in the same order holds the same state (`digest()`
compares them). apply is total and atomic: for any command, whatever its bytes, it either applies
the command fully or returns an error result and changes nothing, identically on every replica.
Each handler checks everything before it changes anything; an ack batch is the one command whose
items stand alone (a bad item is ignored, and a job whose next time cannot be computed is
quarantined, see Job.error), so one job can never keep another's ack from applying.

Threads: the machine is not thread-safe. apply, the reads and to_bytes/load_bytes must run one
at a time (the Raft layer runs them on its tick thread, or holds one lock). A Job is immutable,
so a Job handed to another thread, in a read or in `Result.changes`, stays consistent there.

Memory: every job is kept as one packed row (store/job_row.py) under its uid and its name, and
built again as a Job by each read: a Job's objects cost four times the row's bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from store.app_tokens import AppToken, AppTokens, TooManyTokens
from store.app_url import check_app_url
from store.codec import (
    Ack,
    AckEntry,
    Command,
    Delete,
    DeletePrefix,
    EntryKind,
    ForgetDeadLetter,
    Heartbeat,
    ImportJobs,
    IssueAppToken,
    MachineState,
    Member,
    Outcome,
    Pause,
    Put,
    Quarantine,
    Redrive,
    RegisterApp,
    Release,
    Resume,
    RevokeAppToken,
    RunNow,
    SetMembers,
    UnregisterApp,
    WatchersChanged,
    WithAppToken,
    decode_command,
    decode_snapshot,
    encode_snapshot,
)
from store.collector import collector_paused
from store.dead_letters import DeadLetter, DeadLetterBook
from store.errors import CodecError, ValidationError
from store.job_columns import JobRows
from store.job_row import pack as pack_job
from store.job_row import partition as row_partition
from store.job_row import unpack as unpack_job
from store.jobs import (
    Job,
    derive_job,
    quarantined,
    resumed,
    validate_bounds,
    validate_name,
    validate_scope,
)
from store.machine_index import NameIndex
from store.partition import Assignment, AssignmentFactory, partition_of
from store.settlement import Settled, settle

log = logging.getLogger(__name__)

# An app token is a header value: printable ASCII, bounded.
APP_TOKEN_CHARS_MAX = 512
# A node's count of one app's watch streams, as recorded: a bound on what a command may claim.
WATCHERS_PER_NODE_MAX = 1_000_000
# How many epochs before the current one keep their ring, so that an ack of a delivery begun in
# one of them still counts. An epoch comes with each change of the live set (a cluster that
# restarts makes one per node rejoining), and a delivery lasts at most its timeout: an ack older
# than this many epochs is refused as stale (the occurrence is delivered again: at least once).
PAST_EPOCHS_KEPT = 8
# A cluster's members, as a SetMembers may list them: far more than a Raft group can hold.
MEMBERS_MAX = 256
# The longest node id, address or zone-data version a heartbeat may carry.
HEARTBEAT_TEXT_CHARS_MAX = 256
# What a listed job's JSON costs besides its data (name, schedule strings, status), for bounding
# a list page in bytes; generous, since the strings are bounded in length.
LIST_JOB_OVERHEAD_BYTES = 1024

JobKey = tuple[str, str, str]
AppKey = tuple[str, str]


class ErrorKind(StrEnum):
    # The command breaks a rule (a 400): bad job, bad url, malformed bytes.
    INVALID = "invalid"
    # The job exists and overwrite was not asked for (a 409).
    CONFLICT = "conflict"
    # The command was made for an epoch that is not the current one.
    STALE = "stale"
    # The app would exceed its quota of jobs or data bytes (a 429).
    QUOTA = "quota"
    # The job or dead letter the command names does not exist (a 404).
    NOT_FOUND = "not_found"
    # The app token the command was asked for with no longer stands (a 401).
    UNAUTHENTICATED = "unauthenticated"


class JobChange(NamedTuple):
    """A job whose state changed in one apply: its new version, or None once deleted; and the
    uid of the stored version the apply ended (deleted, or overwritten by a job with another
    uid), None if it ended none. An owner's timers are keyed by uid: this says which to drop."""

    key: JobKey
    job: Job | None
    ended: str | None = None


class AppRoute(NamedTuple):
    """Where an app's triggers go, and the token they carry ("" for none)."""

    url: str
    token: str


class HeartbeatSeen(NamedTuple):
    """What applying a heartbeat returns: whose, and its sender's wall stamp. Each node compares
    the stamp with its own clock as it applies the heartbeat (cluster/clock_offset.py)."""

    node: str
    now_ms: int


class AckCounts(NamedTuple):
    applied: int
    ignored: int


@dataclass(frozen=True, slots=True)
class Result:
    """What one apply did. `value` by command: Put the new Job; Delete and DeletePrefix the
    number of jobs deleted; UnregisterApp whether the app was registered; Ack AckCounts;
    RevokeAppToken whether the app had that token."""

    ok: bool = True
    error: ErrorKind | None = None
    message: str = ""
    value: object = None
    # What the trigger engine re-arms from: every job created, advanced or deleted.
    changes: tuple[JobChange, ...] = ()
    members_changed: bool = False
    apps_changed: bool = False
    # The watch-stream registry changed: which nodes hold watchers of which apps.
    watchers_changed: bool = False
    # A member released the partitions it lost in this epoch: their new owners may fire them.
    released: str | None = None
    # Dead letters whose redrive was asked for: their owners deliver them again.
    redrives: tuple[DeadLetter, ...] = ()
    # Dead letters dropped to keep an app within its bound (oldest first).
    dead_letters_dropped: int = 0


def _failed(error: ErrorKind, message: str, value: object = None) -> Result:
    return Result(ok=False, error=error, message=message, value=value)


class _AppJobs:
    """One app's jobs: their uids by name, sorted for lookups and lists, and the bytes of their
    data (what the data quota counts).

    The index holds the very uid strings the machine's rows are keyed by: the trigger engine
    keys an owned job's timer by that string too (stored_uid), so a timer costs no key of its
    own, and an advance (every ack) rewrites the row by uid without touching the index."""

    __slots__ = ("by_name", "data_bytes")

    def __init__(self, names: list[str], uids: list[str], data_bytes: int) -> None:
        self.by_name: NameIndex[str] = NameIndex(names, uids)
        self.data_bytes = data_bytes


class JobMachine:
    """`assign` computes which live member owns which partition (cluster/ring.py's Ring in a
    node): every replica must be given the same, or they would count different acks."""

    def __init__(self, partitions: int, assign: AssignmentFactory) -> None:
        assert partitions > 0
        self._partitions = partitions
        self._assign = assign
        # Every job's row (store/job_row.py) by its uid.
        self._by_uid: dict[str, bytes] = {}
        self._apps_jobs: dict[AppKey, _AppJobs] = {}
        self._app_routes: dict[AppKey, AppRoute] = {}
        # app -> {node: its count of the app's watch streams}; only live nodes, none with 0.
        self._watchers: dict[AppKey, dict[str, int]] = {}
        self._epoch = 0
        self._members: tuple[Member, ...] = ()
        self._live: tuple[str, ...] = ()
        # The live members and rings of the last epochs before this one (at most
        # PAST_EPOCHS_KEPT): who owned a partition then. A node's ack of a delivery it began in
        # one of them counts until it releases a later epoch (see _ack).
        self._past_live: dict[int, tuple[str, ...]] = {}
        self._past_rings: dict[int, Assignment] = {}
        # member -> the last epoch whose Release it committed.
        self._released: dict[str, int] = {}
        self._ring: Assignment | None = None
        self._dead_letters = DeadLetterBook()
        # node -> (last heartbeat ms, raft address, http address, zone data version, standing by)
        self._heartbeats: dict[str, tuple[int, str, str, str, bool]] = {}
        self._app_tokens = AppTokens()

    # ---- writes ----

    def apply(self, command: Command) -> Result:
        try:
            return self._dispatch(command)
        except ValidationError as error:
            # Handlers validate before they change anything, so nothing has changed here.
            return _failed(ErrorKind.INVALID, str(error))
        except Exception as error:
            # A defect, not bad input: every replica runs the same code on the same command and
            # meets the same error, so refusing the command keeps them equal. Raising would stop
            # the Raft layer from ever applying the entry (and every entry after it).
            log.exception("applying %s failed", type(command).__name__)
            return _failed(ErrorKind.INVALID, f"internal error: {type(error).__name__}: {error}")

    def apply_command(self, data: bytes) -> Result:
        """Decode and apply a command that came as bytes (the Raft layer's entry point)."""
        try:
            command = decode_command(data)
        except CodecError as error:
            return _failed(ErrorKind.INVALID, str(error))
        return self.apply(command)

    def _dispatch(self, command: Command) -> Result:
        handler = _HANDLERS.get(type(command))
        if handler is None:
            return Result()  # A Barrier: it only orders reads.
        return handler(self, command)

    def _put(self, command: Put) -> Result:
        job = derive_job(
            command.spec,
            command.namespace,
            command.app,
            command.uid,
            command.now_ms,
            command.zone,
            self._partitions,
        )
        old = self.get(*job.key)
        if old is not None and not command.overwrite:
            return _failed(ErrorKind.CONFLICT, f"job already exists: '{job.name}'")
        if job.uid in self._by_uid:
            return _failed(ErrorKind.INVALID, f"job uid {job.uid!r} is already in use")
        over_quota = self._over_quota(command, job, old)
        if over_quota:
            return _failed(ErrorKind.QUOTA, over_quota)
        if old is not None:
            self._remove(old)
        self._insert(job)
        ended = None if old is None else old.uid
        return Result(value=job, changes=(JobChange(job.key, job, ended),))

    def _over_quota(self, command: Put, job: Job, old: Job | None) -> str:
        """Why putting `job` (replacing `old`) would exceed the app's quotas; "" if it fits."""
        if command.jobs_max < 0 or command.data_bytes_max < 0:
            raise ValidationError("quotas must not be negative")
        app_jobs = self._apps_jobs.get((job.namespace, job.app))
        jobs = 0 if app_jobs is None else len(app_jobs.by_name)
        data_bytes = 0 if app_jobs is None else app_jobs.data_bytes
        if old is None:
            jobs += 1
        else:
            data_bytes -= len(old.spec.data)
        data_bytes += len(job.spec.data)
        if command.jobs_max and jobs > command.jobs_max:
            return f"app {job.app!r} may hold at most {command.jobs_max} jobs"
        if command.data_bytes_max and data_bytes > command.data_bytes_max:
            return (
                f"app {job.app!r} may hold at most {command.data_bytes_max} bytes of job data: "
                f"this job would bring it to {data_bytes}"
            )
        return ""

    def _delete(self, command: Delete) -> Result:
        job = self.get(command.namespace, command.app, command.name)
        if job is None:
            return Result(value=0)
        self._remove(job)
        return Result(value=1, changes=(JobChange(job.key, None, job.uid),))

    def _delete_prefix(self, command: DeletePrefix) -> Result:
        if command.limit < 0:
            raise ValidationError(f"delete limit {command.limit} is negative")
        app_jobs = self._apps_jobs.get((command.namespace, command.app))
        if app_jobs is None:
            return Result(value=0)
        uids = app_jobs.by_name.page(command.prefix, None, command.limit or None)
        doomed = [unpack_job(self._by_uid[uid]) for uid in uids]
        for job in doomed:
            self._remove(job)
        return Result(
            value=len(doomed), changes=tuple(JobChange(job.key, None, job.uid) for job in doomed)
        )

    def _register_app(self, command: RegisterApp) -> Result:
        validate_scope(command.namespace, command.app)
        check_app_url(command.url)
        check_app_token(command.token)
        self._app_routes[(command.namespace, command.app)] = AppRoute(command.url, command.token)
        return Result(apps_changed=True)

    def _unregister_app(self, command: UnregisterApp) -> Result:
        route = self._app_routes.pop((command.namespace, command.app), None)
        return Result(value=route is not None, apps_changed=route is not None)

    def _watchers_changed(self, command: WatchersChanged) -> Result:
        validate_scope(command.namespace, command.app)
        if not 0 <= command.count <= WATCHERS_PER_NODE_MAX:
            raise ValidationError(f"watcher count {command.count} is out of range")
        if command.node not in self._live:
            # Only a live node can be reached with triggers; a node that comes back re-announces
            # its watchers once an epoch counts it live again.
            return _failed(ErrorKind.STALE, f"watchers of {command.node!r}, not a live member")
        key = (command.namespace, command.app)
        nodes = self._watchers.setdefault(key, {})
        if command.count:
            nodes[command.node] = command.count
        else:
            nodes.pop(command.node, None)
        if not nodes:
            del self._watchers[key]
        return Result(watchers_changed=True)

    def _ack(self, command: Ack) -> Result:
        partitions = self._ackable_partitions(command)
        if partitions is None:
            message = f"ack for epoch {command.epoch}, the current epoch is {self._epoch}"
            return _failed(ErrorKind.STALE, message, AckCounts(0, len(command.entries)))
        if command.history_max < 0 or command.dead_letters_max < 0:
            raise ValidationError("history_max and dead_letters_max must not be negative")
        changes: dict[JobKey, JobChange] = {}
        applied = dropped = 0
        for entry in command.entries:
            if entry.kind is EntryKind.REDRIVE:
                applied += self._settle_redrive(entry, command, partitions)
                continue
            job = self.get_by_uid(entry.uid)
            # Only the owner's ack for the current occurrence (or the pending manual run)
            # counts: an ack for an older one, an overwritten job (new uid) or from a former
            # owner is a late echo.
            if job is None or job.error is not None:
                continue
            current = job.manual_ms if entry.kind is EntryKind.MANUAL else job.next_ms
            if current != entry.scheduled_ms:
                continue
            if job.partition not in partitions:
                continue
            try:
                settled = _settle(job, entry, command.node, command.now_ms, command.history_max)
            except Exception as error:
                # The job cannot move on (its next time cannot be computed): it stops here, on
                # every replica alike, and the batch's other acks apply as usual.
                log.exception("job %s quarantined while applying an ack", job.key)
                settled = Settled(quarantined(job, f"{type(error).__name__}: {error}"), None)
            if settled.job is None:
                self._remove(job)
            else:
                self._replace(job, settled.job)
            if settled.dead_letter is not None and command.dead_letters_max:
                dropped += self._dead_letters.add(settled.dead_letter, command.dead_letters_max)
            ended = job.uid if settled.job is None else None
            changes[job.key] = JobChange(job.key, settled.job, ended)
            applied += 1
        counts = AckCounts(applied, len(command.entries) - applied)
        return Result(value=counts, changes=tuple(changes.values()), dead_letters_dropped=dropped)

    def _ackable_partitions(self, command: Ack) -> frozenset[int] | None:
        """The partitions whose jobs `command.node` may ack with the command's epoch; None if
        the epoch is stale.

        An ack counts from the current owner, or from a node that owned the job's partition in
        the epoch the delivery began in, or in a later one, until it releases an epoch after
        that: a delivery it started before the epoch changed (or changed again: epochs can
        follow each other within a delivery) must still be recorded, or the new owner would
        deliver that occurrence again. The new owner waits for that Release (acking_former_owners,
        cluster/handoff.py), which the node proposes only once its delivery is over."""
        node = command.node
        now = frozenset() if self._ring is None else self._ring.partitions_of(node)
        if command.epoch == self._epoch:
            return now
        if command.epoch not in self._past_rings:
            return None  # older than the epochs kept, or not begun
        released = self._released.get(node, 0)
        since = [
            ring.partitions_of(node)
            for epoch, ring in self._past_rings.items()
            if command.epoch <= epoch and released <= epoch
        ]
        return now.union(*since) if since else None

    def _settle_redrive(self, entry: AckEntry, command: Ack, partitions: frozenset[int]) -> int:
        """Record a redrive's attempt on its dead letter; 1 if it counted, 0 if it was an echo."""
        letter = self._dead_letters.find(f"{entry.scheduled_ms}:{entry.uid}")
        if letter is None or letter.redrive_ms is None:
            return 0
        partition = partition_of(letter.namespace, letter.app, letter.name, self._partitions)
        if partition not in partitions:
            return 0
        outcome = {Outcome.SUCCESS: "success", Outcome.FAILED: "failed"}.get(entry.outcome)
        if outcome is None:
            return 0
        if entry.timed_out:
            outcome = "timeout"
        self._dead_letters.replace(
            letter._replace(
                redrive_ms=None,
                attempts=letter.attempts + 1,
                last_outcome=outcome,
                failed_ms=letter.failed_ms if outcome == "success" else command.now_ms,
            )
        )
        return 1

    def _operate(self, command: Pause | Resume | RunNow) -> Result:
        """Pause, resume or run a job now; each is idempotent."""
        job = self.get(command.namespace, command.app, command.name)
        if job is None:
            return _failed(ErrorKind.NOT_FOUND, f"job not found: {command.name}")
        changed: Job | None
        if isinstance(command, Pause):
            changed = job._replace(paused=True)
        elif isinstance(command, Resume):
            changed = resumed(job, command.now_ms) if job.paused else job
        else:
            pending = job.manual_ms is not None
            changed = job if pending else job._replace(manual_ms=command.now_ms)
        if changed == job:
            return Result(value=job)
        if changed is None:
            self._remove(job)
        else:
            self._replace(job, changed)
        ended = job.uid if changed is None else None
        return Result(value=changed, changes=(JobChange(job.key, changed, ended),))

    def _redrive(self, command: Redrive) -> Result:
        letter = self._dead_letters.get(command.namespace, command.app, command.id)
        if letter is None:
            return _failed(ErrorKind.NOT_FOUND, f"dead letter not found: {command.id}")
        if letter.redrive_ms is None:
            letter = letter._replace(redrive_ms=command.now_ms)
            self._dead_letters.replace(letter)
        return Result(value=letter, redrives=(letter,))

    def _forget_dead_letter(self, command: ForgetDeadLetter) -> Result:
        return Result(value=self._dead_letters.remove(command.namespace, command.app, command.id))

    def _import_jobs(self, command: ImportJobs) -> Result:
        """Jobs with their whole state, as exported; all checked before any is put in."""
        incoming: dict[JobKey, Job] = {}
        for job in command.jobs:
            validate_scope(job.namespace, job.app)
            validate_name(job.name)
            validate_bounds(job.spec)
            if job.spec.name != job.name or job.key in incoming:
                raise ValidationError(f"import of {job.key} is not one well-formed job")
            # Another cluster may have another partition count: the partition is ours to say.
            incoming[job.key] = job._replace(
                partition=partition_of(job.namespace, job.app, job.name, self._partitions)
            )
        imported: list[Job] = []
        for key, job in incoming.items():
            old = self.get(*key)
            holder = self.get_by_uid(job.uid)
            if (old is not None and not command.overwrite) or (holder not in (None, old)):
                continue
            imported.append(job)
        changes: list[JobChange] = []
        for job in imported:
            old = self.get(*job.key)
            if old is not None:
                self._remove(old)
            self._insert(job)
            ended = None if old is None or old.uid == job.uid else old.uid
            changes.append(JobChange(job.key, job, ended))
        skipped = len(incoming) - len(imported)
        return Result(value=(len(imported), skipped), changes=tuple(changes))

    def _heartbeat(self, command: Heartbeat) -> Result:
        if not command.node:
            raise ValidationError("heartbeat from a node with an empty id")
        texts = (command.node, command.raft, command.http, command.zone_data)
        if max(map(len, texts)) > HEARTBEAT_TEXT_CHARS_MAX:
            raise ValidationError(f"heartbeat text longer than {HEARTBEAT_TEXT_CHARS_MAX}")
        beat = (
            command.now_ms,
            command.raft,
            command.http,
            command.zone_data,
            command.standing_by,
        )
        self._heartbeats[command.node] = beat
        return Result(value=HeartbeatSeen(command.node, command.now_ms))

    def _quarantine(self, command: Quarantine) -> Result:
        job = self.get_by_uid(command.uid)
        if job is None or job.next_ms != command.scheduled_ms or job.error is not None:
            # The job moved on, was replaced or deleted, or is quarantined already.
            return Result(value=False)
        ring = self._ring
        if ring is None or ring.owner(job.partition) != command.node:
            return _failed(ErrorKind.STALE, f"quarantine from {command.node!r}, not the owner")
        stopped = quarantined(job, command.reason)
        self._replace(job, stopped)
        return Result(value=True, changes=(JobChange(job.key, stopped),))

    def _set_members(self, command: SetMembers) -> Result:
        if command.epoch != self._epoch + 1:
            message = f"members for epoch {command.epoch}, the next epoch is {self._epoch + 1}"
            return _failed(ErrorKind.STALE, message)
        _check_members(command.members, command.live)
        fresh = self._dropped_while_fresh(command)
        if fresh:
            message = f"members {fresh} heartbeat since the leader judged them dead"
            return _failed(ErrorKind.STALE, message)
        # Built before anything changes: a ring that cannot be built refuses the command whole.
        ring = self._assign(command.live, self._partitions) if command.live else None
        if self._ring is not None:
            self._past_live[self._epoch] = self._live
            self._past_rings[self._epoch] = self._ring
        for old in [epoch for epoch in self._past_live if epoch < command.epoch - PAST_EPOCHS_KEPT]:
            del self._past_live[old], self._past_rings[old]
        self._epoch = command.epoch
        self._members = command.members
        self._live = command.live
        self._ring = ring
        ids = {member.id for member in command.members}
        self._released = {node: epoch for node, epoch in self._released.items() if node in ids}
        # Forget the heartbeats of former members, so the table stays as small as the cluster.
        self._heartbeats = {n: beat for n, beat in self._heartbeats.items() if n in ids}
        return Result(members_changed=True, watchers_changed=self._forget_watchers_of_dead())

    def _dropped_while_fresh(self, command: SetMembers) -> list[str]:
        """Live members this command would drop although their last committed heartbeat does
        not stand by and is not the one the leader judged dead (SetMembers.judged), or, in a
        command from before the leader judged by its own clock, is not yet `dead_ms` old at the
        command's time (SetMembers.now_ms)."""
        dropped = [
            node
            for node in sorted(set(self._live) - set(command.live))
            if node in self._heartbeats and not self._heartbeats[node][4]
        ]
        if command.judged is not None:
            judged = dict(command.judged)
            if len(judged) != len(command.judged):
                raise ValidationError("members judged dead more than once")
            return [node for node in dropped if judged.get(node) != self._heartbeats[node][0]]
        if command.dead_ms <= 0:
            return []
        return [
            node for node in dropped if command.now_ms - self._heartbeats[node][0] < command.dead_ms
        ]

    def _release(self, command: Release) -> Result:
        if command.epoch != self._epoch:
            message = f"release for epoch {command.epoch}, the current epoch is {self._epoch}"
            return _failed(ErrorKind.STALE, message)
        if command.node not in {member.id for member in self._members}:
            raise ValidationError(f"release from {command.node!r}, not a member")
        if self._released.get(command.node) == command.epoch:
            return Result()
        self._released[command.node] = command.epoch
        return Result(released=command.node)

    # ---- app tokens ----

    def _issue_app_token(self, command: IssueAppToken) -> Result:
        token = AppToken(command.namespace, command.app, command.id, command.hash, command.now_ms)
        try:
            self._app_tokens.issue(token)
        except TooManyTokens as error:
            return _failed(ErrorKind.QUOTA, str(error))
        return Result()

    def _revoke_app_token(self, command: RevokeAppToken) -> Result:
        return Result(value=self._app_tokens.revoke(command.namespace, command.app, command.id))

    def _with_app_token(self, command: WithAppToken) -> Result:
        """Apply the command an app token's holder asked for, if that token still stands."""
        try:
            inner = decode_command(command.command)
        except CodecError as error:
            return _failed(ErrorKind.INVALID, str(error))
        if not isinstance(inner, APP_WRITES) or (inner.namespace, inner.app) != (
            command.namespace,
            command.app,
        ):
            kind = type(inner).__name__
            raise ValidationError(f"an app token cannot ask for a {kind} outside its app")
        token = self._app_tokens.get(command.token_id)
        if token is None or (token.namespace, token.app) != (command.namespace, command.app):
            return _failed(ErrorKind.UNAUTHENTICATED, "the app token was revoked")
        return self._dispatch(inner)

    def app_token(self, token_id: str) -> AppToken | None:
        """The token issued with id `token_id`, None if none (or revoked)."""
        return self._app_tokens.get(token_id)

    def app_tokens_of(self, namespace: str, app: str) -> list[AppToken]:
        """The app's tokens, oldest first."""
        return self._app_tokens.of_app(namespace, app)

    # ---- end of app tokens ----

    def _forget_watchers_of_dead(self) -> bool:
        """Drop the watchers of nodes no longer live: their streams are gone or unreachable."""
        live = set(self._live)
        kept: dict[AppKey, dict[str, int]] = {}
        for key, nodes in self._watchers.items():
            alive = {node: count for node, count in nodes.items() if node in live}
            if alive:
                kept[key] = alive
        changed = kept != self._watchers
        self._watchers = kept
        return changed

    # ---- the indexes ----

    def _insert(self, job: Job) -> None:
        app_jobs = self._apps_jobs.get((job.namespace, job.app))
        if app_jobs is None:
            app_jobs = self._apps_jobs[(job.namespace, job.app)] = _AppJobs([], [], 0)
        assert job.uid not in self._by_uid
        self._by_uid[job.uid] = pack_job(job)
        app_jobs.by_name.add(job.name, job.uid)
        app_jobs.data_bytes += len(job.spec.data)

    def _remove(self, job: Job) -> None:
        app_key = (job.namespace, job.app)
        app_jobs = self._apps_jobs[app_key]
        removed = app_jobs.by_name.remove(job.name)
        assert removed == job.uid
        app_jobs.data_bytes -= len(job.spec.data)
        if not app_jobs.by_name:
            del self._apps_jobs[app_key]
        del self._by_uid[job.uid]

    def _replace(self, old: Job, new: Job) -> None:
        # An advance keeps the key, uid and partition; only the row keyed by the uid changes.
        assert (old.key, old.uid, old.partition) == (new.key, new.uid, new.partition)
        self._by_uid[old.uid] = pack_job(new)

    # ---- reads ----

    def get(self, namespace: str, app: str, name: str) -> Job | None:
        app_jobs = self._apps_jobs.get((namespace, app))
        uid = None if app_jobs is None else app_jobs.by_name.get(name)
        return None if uid is None else unpack_job(self._by_uid[uid])

    def stored_uid(self, job: Job) -> str:
        """The uid string the machine holds for `job`, equal to job.uid (job.uid itself if the
        job is no longer stored). A job read from its row carries a copy of its uid; an owner
        keys the timer of every owned job within its horizon by the uid, and a copy each would
        cost a node ~25 MB per million jobs."""
        app_jobs = self._apps_jobs.get((job.namespace, job.app))
        uid = None if app_jobs is None else app_jobs.by_name.get(job.name)
        return uid if uid == job.uid and uid is not None else job.uid

    def get_by_uid(self, uid: str) -> Job | None:
        row = self._by_uid.get(uid)
        return None if row is None else unpack_job(row)

    def jobs_after(
        self, after: JobKey | None, limit: int, namespace: str = "", app: str = "", prefix: str = ""
    ) -> list[Job]:
        """Up to `limit` jobs after the key `after`, in (namespace, app, name) order: the chunks
        of an export. `namespace`, `app` and `prefix` ("" for any) narrow it."""
        assert limit > 0
        chosen: list[Job] = []
        for app_key in sorted(self._apps_jobs):
            if (namespace and app_key[0] != namespace) or (app and app_key[1] != app):
                continue
            if after is not None and app_key < after[:2]:
                continue
            cursor = after[2] if after is not None and app_key == after[:2] else None
            app_jobs = self._apps_jobs[app_key]
            uids = app_jobs.by_name.page(prefix, cursor, limit - len(chosen))
            chosen += (unpack_job(self._by_uid[uid]) for uid in uids)
            if len(chosen) == limit:
                break
        return chosen

    def list_jobs(
        self,
        namespace: str,
        app: str,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        bytes_max: int | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page of an app's jobs whose name starts with `prefix`, in name order.

        `cursor` is the last name of the previous page; the returned cursor is None on the last
        page. Jobs created or deleted between pages are seen or not depending on their names.
        With `bytes_max`, the page also ends once the JSON of its jobs (estimated as their data
        plus a fixed overhead each) would pass it; the first job is always on the page.
        """
        assert limit > 0
        app_jobs = self._apps_jobs.get((namespace, app))
        if app_jobs is None:
            return [], None
        uids = app_jobs.by_name.page(prefix, cursor, limit + 1)
        jobs: list[Job] = []
        size = 0
        for uid in uids[:limit]:
            job = unpack_job(self._by_uid[uid])
            size += len(job.spec.data) + LIST_JOB_OVERHEAD_BYTES
            if jobs and bytes_max is not None and size > bytes_max:
                break
            jobs.append(job)
        return jobs, (jobs[-1].spec.name if len(uids) > len(jobs) else None)

    def rows_in_partitions(self, partitions: Collection[int]) -> list[bytes]:
        """The rows (store/job_row.py) of the jobs in `partitions`, in no order.

        A scan of every row's partition bytes (0.1-0.2 s at a million jobs), asked for when
        partitions change owners: an index of the jobs by partition would cost every job about
        40 bytes for good. Rows are immutable: decode them after the machine's lock is let go."""
        wanted = frozenset(partitions)
        if not wanted:
            return []
        rows = self._by_uid.values()
        return list(itertools.compress(rows, map(wanted.__contains__, map(row_partition, rows))))

    def count(self) -> int:
        return len(self._by_uid)

    def count_app(self, namespace: str, app: str) -> int:
        app_jobs = self._apps_jobs.get((namespace, app))
        return 0 if app_jobs is None else len(app_jobs.by_name)

    def app_url(self, namespace: str, app: str) -> str | None:
        route = self._app_routes.get((namespace, app))
        return None if route is None else route.url

    def app_route(self, namespace: str, app: str) -> AppRoute | None:
        return self._app_routes.get((namespace, app))

    def apps(self) -> dict[AppKey, str]:
        """app -> its URL."""
        return {key: route.url for key, route in self._app_routes.items()}

    def app_routes(self) -> dict[AppKey, AppRoute]:
        """app -> its URL and token."""
        return dict(self._app_routes)

    def watchers(self) -> dict[AppKey, dict[str, int]]:
        """app -> {live node: how many watch streams of the app it holds}."""
        return {key: dict(nodes) for key, nodes in self._watchers.items()}

    def watchers_on(self, node: str) -> dict[AppKey, int]:
        """app -> how many of its watch streams `node` holds, as committed."""
        return {key: nodes[node] for key, nodes in self._watchers.items() if node in nodes}

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def members(self) -> tuple[Member, ...]:
        return self._members

    @property
    def live(self) -> tuple[str, ...]:
        return self._live

    def owner(self, partition: int) -> str | None:
        """The live member that fires the partition's jobs in the current epoch."""
        return None if self._ring is None else self._ring.owner(partition)

    def acking_former_owners(self, partition: int) -> frozenset[str]:
        """The members, other than its current owner, whose ack of the partition's jobs may
        still count: each owned it in a kept past epoch and has released no epoch since."""
        owner = self.owner(partition)
        former = ((epoch, ring.owner(partition)) for epoch, ring in self._past_rings.items())
        return frozenset(
            node
            for epoch, node in former
            if node is not None and node != owner and self._released.get(node, 0) <= epoch
        )

    def partitions_of(self, member: str) -> frozenset[int]:
        return frozenset() if self._ring is None else self._ring.partitions_of(member)

    def heartbeats(self) -> dict[str, int]:
        """node -> wall ms of its last committed heartbeat."""
        return {node: beat[0] for node, beat in self._heartbeats.items()}

    def announced(self) -> dict[str, Member]:
        """node -> the addresses it announced in its last heartbeat."""
        return {
            node: Member(node, raft, http)
            for node, (_, raft, http, _, _) in self._heartbeats.items()
        }

    def standing_by(self) -> frozenset[str]:
        """The members whose last heartbeat offered to fire nothing."""
        return frozenset(node for node, beat in self._heartbeats.items() if beat[4])

    def zone_data(self) -> dict[str, str]:
        """node -> the time-zone database version it announced ("" if it announced none)."""
        return {node: beat[3] for node, beat in self._heartbeats.items()}

    def dead_letters(
        self, namespace: str, app: str, prefix: str, after: str | None, limit: int
    ) -> tuple[list[DeadLetter], str | None]:
        """One page of the app's dead letters whose job name starts with `prefix`, oldest
        first; and the cursor of the next page."""
        return self._dead_letters.page(namespace, app, prefix, after, limit)

    def dead_letter(self, namespace: str, app: str, letter_id: str) -> DeadLetter | None:
        return self._dead_letters.get(namespace, app, letter_id)

    def redrives_in(self, partitions: frozenset[int]) -> list[DeadLetter]:
        """The dead letters waiting for a redrive whose job's partition is one of `partitions`."""
        return [
            letter
            for letter in self._dead_letters.redrives()
            if partition_of(letter.namespace, letter.app, letter.name, self._partitions)
            in partitions
        ]

    def dead_letter_count(self) -> int:
        return self._dead_letters.count()

    def app_usage(self, namespace: str, app: str) -> tuple[int, int]:
        """How many jobs the app holds and the bytes of their data: what its quotas count."""
        app_jobs = self._apps_jobs.get((namespace, app))
        return (0, 0) if app_jobs is None else (len(app_jobs.by_name), app_jobs.data_bytes)

    # ---- snapshots ----

    def export_state(self) -> MachineState:
        rows = self._by_uid
        jobs = [
            rows[uid]
            for key in sorted(self._apps_jobs)
            for uid in self._apps_jobs[key].by_name.values()
        ]
        return MachineState(
            partitions=self._partitions,
            epoch=self._epoch,
            members=self._members,
            live=self._live,
            past_live=tuple(sorted(self._past_live.items())),
            released=tuple(sorted(self._released.items())),
            apps=tuple((*key, *route) for key, route in sorted(self._app_routes.items())),
            heartbeats=tuple((node, *beat) for node, beat in sorted(self._heartbeats.items())),
            watchers=tuple(
                (*key, node, count)
                for key, nodes in sorted(self._watchers.items())
                for node, count in sorted(nodes.items())
            ),
            jobs=jobs,
            dead_letters=self._dead_letters.rows(),
            app_tokens=self._app_tokens.rows(),
        )

    def to_bytes(self) -> bytes:
        return encode_snapshot(self.export_state())

    def load_bytes(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's; CodecError (and no change) if it is bad."""
        self.adopt(self.decoded(data))

    def decoded(self, data: bytes) -> JobMachine:
        """A new machine holding the snapshot in `data` (this one's partition assignment); reads
        nothing of this machine, so it may run while others read it."""
        return JobMachine.from_bytes(data, self._assign)

    def adopt(self, restored: JobMachine) -> None:
        """Take over the whole state of `restored` (a machine decoded for this one)."""
        for slot in _STATE_SLOTS:
            setattr(self, slot, getattr(restored, slot))

    @classmethod
    def from_bytes(cls, data: bytes, assign: AssignmentFactory) -> JobMachine:
        # A restore allocates millions of long-lived objects: the cyclic collector would walk
        # them over and over (it halves decode time at 100k jobs, more at 1M) and find nothing.
        with collector_paused():
            return cls.from_state(decode_snapshot(data), assign)

    @classmethod
    def from_state(cls, state: MachineState, assign: AssignmentFactory) -> JobMachine:
        if state.partitions <= 0:
            raise CodecError(f"snapshot with {state.partitions} partitions")
        machine = cls(state.partitions, assign)
        machine._epoch = state.epoch
        machine._members = state.members
        machine._live = state.live
        machine._ring = assign(state.live, state.partitions) if state.live else None
        past = [(epoch, live) for epoch, live in state.past_live if live]
        if any(not state.epoch - PAST_EPOCHS_KEPT <= epoch < state.epoch for epoch, _ in past):
            raise CodecError(f"snapshot of epoch {state.epoch} keeps past epochs {past}")
        machine._past_live = dict(past)
        machine._past_rings = {epoch: assign(live, state.partitions) for epoch, live in past}
        machine._released = dict(state.released)
        machine._app_routes = {
            (ns, app): AppRoute(url, token) for ns, app, url, token in state.apps
        }
        machine._load_watchers(state.watchers)
        machine._heartbeats = {
            node: (ms, raft, http, zone_data, standing_by)
            for node, ms, raft, http, zone_data, standing_by in state.heartbeats
        }
        machine._load_jobs(state.jobs)
        try:
            machine._dead_letters = DeadLetterBook(state.dead_letters)
        except ValueError as error:
            raise CodecError(f"snapshot dead letters: {error}") from None
        try:
            machine._app_tokens = AppTokens.restored(state.app_tokens)
        except ValidationError as error:
            raise CodecError(f"snapshot app tokens: {error}") from None
        return machine

    def _load_watchers(self, rows: Sequence[tuple[str, str, str, int]]) -> None:
        for namespace, app, node, count in rows:
            if count <= 0 or node not in self._live:
                raise CodecError(f"snapshot watchers of {node!r} with count {count}")
            self._watchers.setdefault((namespace, app), {})[node] = count

    def _load_jobs(self, rows: Sequence[bytes]) -> None:
        """Index a snapshot's job rows, which come sorted by (namespace, app, name).

        Every check and index is a map or a zip over the rows' columns (C loops): at a million
        jobs a loop of Python statements per job costs seconds of a restart."""
        jobs = rows if isinstance(rows, JobRows) else JobRows.of(rows)
        # Each key is built as it is compared and freed at once (see JobRows).
        keys, following = (zip(jobs.namespaces, jobs.apps, jobs.names, strict=True) for _ in "ab")
        if not all(map(operator.lt, keys, itertools.islice(following, 1, None))):
            pairs = itertools.pairwise(zip(jobs.namespaces, jobs.apps, jobs.names, strict=True))
            at = next(b for a, b in pairs if not a < b)
            raise CodecError(f"snapshot jobs out of order at {at}")
        partitions = jobs.partitions
        if partitions and not 0 <= min(partitions) <= max(partitions) < self._partitions:
            raise CodecError("snapshot job with a partition out of range")
        self._by_uid = dict(zip(jobs.uids, jobs, strict=True))
        if len(self._by_uid) != len(jobs):
            raise CodecError("snapshot jobs with a repeated uid")
        start = 0
        for app_key, group in itertools.groupby(zip(jobs.namespaces, jobs.apps, strict=True)):
            end = start + sum(1 for _ in group)
            self._apps_jobs[app_key] = _AppJobs(
                jobs.names[start:end], jobs.uids[start:end], sum(jobs.data_sizes[start:end])
            )
            start = end

    def digest(self) -> str:
        """A hash of the canonical snapshot: equal digests mean equal replicas."""
        return hashlib.blake2b(self.to_bytes(), digest_size=16).hexdigest()


_STATE_SLOTS = (
    "_partitions",
    "_by_uid",
    "_apps_jobs",
    "_app_routes",
    "_watchers",
    "_epoch",
    "_members",
    "_live",
    "_ring",
    "_past_live",
    "_past_rings",
    "_released",
    "_heartbeats",
    "_dead_letters",
    "_app_tokens",
)


# Every command's handler but Barrier's, by the command's type: the closed set of codec.Command.
_HANDLERS: dict[type, Callable[[JobMachine, Any], Result]] = {
    Put: JobMachine._put,
    Delete: JobMachine._delete,
    DeletePrefix: JobMachine._delete_prefix,
    RegisterApp: JobMachine._register_app,
    UnregisterApp: JobMachine._unregister_app,
    Ack: JobMachine._ack,
    Heartbeat: JobMachine._heartbeat,
    SetMembers: JobMachine._set_members,
    WatchersChanged: JobMachine._watchers_changed,
    Release: JobMachine._release,
    Quarantine: JobMachine._quarantine,
    Pause: JobMachine._operate,
    Resume: JobMachine._operate,
    RunNow: JobMachine._operate,
    Redrive: JobMachine._redrive,
    ForgetDeadLetter: JobMachine._forget_dead_letter,
    ImportJobs: JobMachine._import_jobs,
    IssueAppToken: JobMachine._issue_app_token,
    RevokeAppToken: JobMachine._revoke_app_token,
    WithAppToken: JobMachine._with_app_token,
}
# What an app token may ask for: the writes of its own app's jobs, dead letters and route.
APP_WRITES = (
    Put,
    Delete,
    DeletePrefix,
    RegisterApp,
    UnregisterApp,
    Pause,
    Resume,
    RunNow,
    Redrive,
    ForgetDeadLetter,
)

# The settlement rules, by a name of the machine's own (so that a test can make one job fail).
_settle = settle


def check_app_token(token: str) -> None:
    """An app token goes out as a header value: printable ASCII without spaces, bounded."""
    if len(token) > APP_TOKEN_CHARS_MAX:
        raise ValidationError(
            f"app token is too long: {len(token)} characters, at most {APP_TOKEN_CHARS_MAX}"
        )
    if not all("!" <= char <= "~" for char in token):
        raise ValidationError("app token must be printable ASCII without spaces")


def _check_members(members: tuple[Member, ...], live: tuple[str, ...]) -> None:
    if len(members) > MEMBERS_MAX:
        raise ValidationError(f"at most {MEMBERS_MAX} members")
    ids = [member.id for member in members]
    if not all(ids) or len(set(ids)) != len(ids):
        raise ValidationError(f"member ids must be unique and non-empty: {ids}")
    if len(set(live)) != len(live) or not set(live) <= set(ids):
        raise ValidationError(f"live members must be distinct members: {list(live)}")
