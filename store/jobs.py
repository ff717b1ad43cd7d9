"""A job: the spec as submitted, the fields derived from it, and every rule that makes it valid.

Two entry points validate. `spec_from_request` is the HTTP edge: it turns a request body into a
`JobSpec`, checks types and the configured limits, and yields 400-style messages. `derive_job`
runs both at the edge (before proposing) and inside `JobMachine.apply` (after commit): it checks
every rule that does not depend on configuration and computes the times, from `now_ms` and the
zone stamped in the command, so every replica derives the same job.

A stored job always has a current occurrence (`next_ms`); a job whose sequence has ended is
deleted, never kept in a finished state. `advance` and `record_failure` move a job along its
sequence: occurrence k+1 is `schedule.next_after(occurrence k)`, never computed from the delivery
time, so ticks missed while the cluster was down are replayed one by one, as Dapr does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from store.bounds import (
    DATA_BYTES_HARD_MAX,
    DELIVERY_TIMEOUT_MS_MAX,
    DELIVERY_TIMEOUT_MS_MIN,
    JITTER_MS_MAX,
    SCOPE_CHARS_MAX,
    TIME_MS_MAX,
    TIME_RANGE_TEXT,
    UINT32_MAX,
    time_in_range,
)
from store.errors import ScheduleError, ValidationError
from store.failure_policy import FAILURE_POLICY_DEFAULT, FailurePolicy
from store.history import Attempt
from store.partition import partition_of
from store.request_fields import uint32
from store.schedule import (
    format_rfc3339_ms,
    parse_due_time,
    parse_go_duration,
    parse_schedule,
    parse_ttl,
)

NAME_CHARS_MAX = 256
# What apply accepts whatever the edge is configured to: a longer name is no job of ours.
NAME_CHARS_HARD_MAX = 4096
DATA_BYTES_MAX = 1 << 20
TEXT_CHARS_MAX = 256
DATA_TYPE_JSON = "application/json"
# A stored reason why a job was quarantined, cut to this length.
ERROR_CHARS_MAX = 512

_NAME_FORBIDDEN = re.compile(r"[/\\#?]")
# C0 and C1 control characters and DEL: the Unicode category Cc.
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobLimits:
    """The configurable bounds the HTTP edge applies to a submitted job."""

    name_chars_max: int = NAME_CHARS_MAX
    data_bytes_max: int = DATA_BYTES_MAX
    # schedule, dueTime and ttl strings: bounded so a hostile request cannot make parsing slow.
    text_chars_max: int = TEXT_CHARS_MAX

    def validate(self) -> None:
        for field in ("name_chars_max", "data_bytes_max", "text_chars_max"):
            if getattr(self, field) <= 0:
                raise ValidationError(f"{field} must be positive")
        if self.name_chars_max > NAME_CHARS_HARD_MAX:
            raise ValidationError(f"name_chars_max must be at most {NAME_CHARS_HARD_MAX}")
        if self.data_bytes_max > DATA_BYTES_HARD_MAX:
            raise ValidationError(f"data_bytes_max must be at most {DATA_BYTES_HARD_MAX}")


class MisfirePolicy(StrEnum):
    """What to do with occurrences missed while nobody could fire them (beyond Dapr's rule)."""

    ALL = "all"
    LATEST = "latest"
    SKIP = "skip"


class JobSpec(NamedTuple):
    """The job as submitted: the original strings, returned as they came by GET.

    A NamedTuple rather than a frozen dataclass: it is immutable, has no per-instance dict, and
    builds five times faster, which is what restoring a million jobs from a snapshot costs.
    """

    name: str
    schedule: str | None = None
    due_time: str | None = None
    repeats: int | None = None
    ttl: str | None = None
    # The compact JSON text of the submitted data value (or an Any's bytes); b"" when none.
    data: bytes = b""
    data_type: str = ""
    # None when none was submitted: FAILURE_POLICY_DEFAULT applies, and GET shows none.
    failure_policy: FailurePolicy | None = None
    misfire_policy: MisfirePolicy = MisfirePolicy.ALL
    # Each occurrence is delayed by a pseudo-random amount below this duration (never early).
    jitter: str | None = None
    # How long an attempt waits for the app's answer; None: the node's own timeout.
    delivery_timeout: str | None = None


class Job(NamedTuple):
    """A stored job: its spec, identity and where it is in its trigger sequence.

    Immutable: the machine replaces a job on every change instead of mutating it, so a Job handed
    to another thread (the trigger engine) is a consistent version that never changes under it.
    As a NamedTuple it has no per-instance dict (the memory of __slots__) and builds in 0.2 µs,
    against 1 µs for a frozen dataclass: that matters for a million jobs and ~10k acks a second.
    """

    namespace: str
    app: str
    name: str
    # New on every put, overwrite included: acks for an older version of the job are ignored.
    uid: str
    partition: int
    spec: JobSpec
    # The zone of the node that accepted the job, for schedules without CRON_TZ=.
    zone: str
    created_ms: int
    due_ms: int | None
    expiry_ms: int | None
    # Occurrences delivered or exhausted so far (skipped ones do not count): GET's `count`,
    # named otherwise because a NamedTuple field may not shadow tuple.count.
    trigger_count: int
    # The scheduled time of the last occurrence delivered or exhausted.
    last_ms: int | None
    # The scheduled time of the current occurrence: the one being delivered or waited for.
    next_ms: int
    # Failed attempts of the current occurrence.
    attempts: int
    # When the next attempt of the current occurrence is due; None means at next_ms.
    retry_ms: int | None
    # Why the job was quarantined (None: it is not). A job that made a computation fail is kept,
    # shown with its reason, and never fired again, so it cannot stop any other job; an
    # overwrite replaces it with a fresh job and a delete removes it.
    error: str | None = None
    # Paused: its occurrences are skipped and not counted until it is resumed.
    paused: bool = False
    # A run asked for by `POST /jobs/{name}/run` and not attempted yet: when it was asked for.
    # It goes out as soon as the job has nothing else in flight, outside the schedule.
    manual_ms: int | None = None
    # The last attempts (store/history.py), newest last.
    history: tuple[Attempt, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.app, self.name)

    @property
    def trigger_id(self) -> str:
        """The idempotency key of the current occurrence, the same on every attempt."""
        return f"{self.next_ms}:{self.uid}"

    @property
    def fire_ms(self) -> int:
        """When the job's next attempt is due: a manual run at once, a retry at its time, the
        current occurrence at its scheduled time plus its jitter (never before it)."""
        if self.manual_ms is not None:
            return self.manual_ms
        if self.retry_ms is not None:
            return self.retry_ms
        jitter_ms = duration_text_ms(self.spec.jitter)
        if not jitter_ms:
            return self.next_ms
        return min(self.next_ms + jitter_offset_ms(self.uid, self.next_ms, jitter_ms), TIME_MS_MAX)

    @property
    def fires(self) -> bool:
        """Whether the engine should arm the job at all: not quarantined, and not paused unless
        a manual run waits."""
        return self.error is None and (not self.paused or self.manual_ms is not None)

    @property
    def manual_trigger_id(self) -> str:
        """The idempotency key of the pending manual run."""
        assert self.manual_ms is not None
        return f"{self.manual_ms}:{self.uid}"

    @property
    def delivery_timeout_ms(self) -> int | None:
        return duration_text_ms(self.spec.delivery_timeout)

    @property
    def failure_policy(self) -> FailurePolicy:
        return self.spec.failure_policy or FAILURE_POLICY_DEFAULT


def validate_name(name: str, chars_max: int | None = NAME_CHARS_MAX) -> None:
    """Reject a job name that cannot be a URL path segment or a key; each rule has its message.

    `chars_max` None skips the length rule: the length bound is configuration, applied at the
    edge, and must not make replicas with different settings disagree.
    """
    if not name:
        raise ValidationError("Name is empty")
    if name in (".", ".."):
        raise ValidationError(f"job name must not be {name!r}")
    forbidden = _NAME_FORBIDDEN.search(name)
    if forbidden:
        raise ValidationError(
            f"job name must not contain '/', '\\', '#' or '?': found {forbidden.group()!r}"
        )
    control = _NAME_CONTROL.search(name)
    if control:
        raise ValidationError(
            f"job name must not contain control characters: found U+{ord(control.group()):04X}"
        )
    if chars_max is not None and len(name) > chars_max:
        raise ValidationError(f"job name is too long: {len(name)} characters, at most {chars_max}")


def validate_rules(spec: JobSpec) -> None:
    """The rules on how schedule, dueTime, repeats and ttl combine; messages as Dapr's."""
    if spec.schedule is None and spec.due_time is None:
        raise ValidationError("job must have either a due time or a schedule")
    if spec.repeats is not None and spec.repeats <= 0:
        raise ValidationError("defined repeats must be greater than 0")
    if spec.repeats is not None and spec.schedule is None:
        raise ValidationError("job must have a schedule to repeat")
    if spec.ttl is not None and spec.schedule is None:
        raise ValidationError("job must have a schedule to have a ttl")


def validate_scope(namespace: str, app: str) -> None:
    """A namespace and app id as the machine stores them: non-empty text within the bound."""
    for what, text in (("namespace", namespace), ("app id", app)):
        if not text:
            raise ValidationError(f"{what} is empty")
        if len(text) > SCOPE_CHARS_MAX:
            raise ValidationError(f"{what} is longer than {SCOPE_CHARS_MAX} characters")


def validate_bounds(spec: JobSpec) -> None:
    """The hard bounds of a spec that configuration cannot move (store/bounds.py)."""
    if spec.repeats is not None and spec.repeats > UINT32_MAX:
        raise ValidationError(f"repeats must be at most {UINT32_MAX}")
    if len(spec.data) > DATA_BYTES_HARD_MAX:
        raise ValidationError(f"data is larger than {DATA_BYTES_HARD_MAX} bytes")
    if spec.failure_policy is not None:
        spec.failure_policy.validate()
    _check_duration(spec.jitter, "jitter", 0, JITTER_MS_MAX)
    _check_duration(
        spec.delivery_timeout, "deliveryTimeout", DELIVERY_TIMEOUT_MS_MIN, DELIVERY_TIMEOUT_MS_MAX
    )


def _check_duration(text: str | None, field: str, low_ms: int, high_ms: int) -> None:
    if text is None:
        return
    try:
        value_ms = duration_text_ms(text)
    except ScheduleError as error:
        raise ValidationError(f"{field}: {error}") from None
    if not low_ms <= value_ms <= high_ms:
        raise ValidationError(f"{field} must be between {low_ms}ms and {high_ms}ms: got {text}")


def derive_job(
    spec: JobSpec,
    namespace: str,
    app: str,
    uid: str,
    now_ms: int,
    zone: str,
    partitions: int,
) -> Job:
    """Validate `spec` (every rule but configured limits) and compute its first occurrence.

    Pure: the same arguments give the same job on every replica. A job whose first occurrence
    would already be past its ttl is rejected rather than accepted and silently dropped (Dapr
    accepts it and deletes it unfired); a 400 tells the user their ttl is wrong.
    """
    validate_scope(namespace, app)
    if not uid:
        raise ValidationError("job uid is empty")
    if not time_in_range(now_ms):
        raise ValidationError(f"the proposing node's clock is outside {TIME_RANGE_TEXT}")
    validate_name(spec.name, chars_max=NAME_CHARS_HARD_MAX)
    validate_rules(spec)
    validate_bounds(spec)
    schedule = None if spec.schedule is None else parse_schedule(spec.schedule, zone)
    due_ms = None if spec.due_time is None else parse_due_time(spec.due_time, now_ms)
    expiry_ms = (
        None if spec.ttl is None else parse_ttl(spec.ttl, now_ms if due_ms is None else due_ms)
    )
    if due_ms is not None and expiry_ms is not None and expiry_ms < due_ms:
        raise ValidationError("ttl must be greater than due time")
    if due_ms is not None:
        first_ms = due_ms
    else:
        assert schedule is not None, "validate_rules demands a schedule or a due time"
        first_ms = schedule.next_after(now_ms)
    if expiry_ms is not None and first_ms > expiry_ms:
        raise ValidationError("job would never trigger: its first trigger time is after its ttl")
    return Job(
        namespace=namespace,
        app=app,
        name=spec.name,
        uid=uid,
        partition=partition_of(namespace, app, spec.name, partitions),
        spec=spec,
        zone=zone,
        created_ms=now_ms,
        due_ms=due_ms,
        expiry_ms=expiry_ms,
        trigger_count=0,
        last_ms=None,
        next_ms=first_ms,
        attempts=0,
        retry_ms=None,
    )


def advance(job: Job, counted: bool) -> Job | None:
    """The job once its current occurrence is done, or None when its sequence has ended.

    `counted` is True for an occurrence delivered or exhausted (Dapr counts both) and False for
    one skipped by a misfire policy.
    """
    count = job.trigger_count + 1 if counted else job.trigger_count
    following_ms = _following_ms(job, count)
    if following_ms is None:
        return None
    assert following_ms > job.next_ms, "occurrences only move forward"
    return job._replace(
        trigger_count=count,
        last_ms=job.next_ms if counted else job.last_ms,
        next_ms=following_ms,
        attempts=0,
        retry_ms=None,
    )


def record_failure(job: Job, now_ms: int) -> Job | None:
    """The job after a failed attempt at its current occurrence: a retry, or the next occurrence.

    A retry that would fall after the end of the time range exhausts the occurrence instead, and
    the count of attempts stops at UINT32_MAX for a policy that retries forever.
    """
    attempts = min(job.attempts + 1, UINT32_MAX)
    policy = job.failure_policy
    if policy.allows_retry(attempts):
        retry_ms = now_ms + policy.retry_interval_ms(attempts)
        if time_in_range(retry_ms):
            return job._replace(attempts=attempts, retry_ms=retry_ms)
    return advance(job, counted=True)


def retries_left(job: Job) -> bool:
    """Whether a failed attempt at the current occurrence would be followed by another."""
    return job.failure_policy.allows_retry(min(job.attempts + 1, UINT32_MAX))


def resumed(job: Job, now_ms: int) -> Job | None:
    """The paused job resumed at `now_ms`: it fires again from its first occurrence after now;
    the ones in between are skipped and not counted. None when none is left (its sequence ended
    while it was paused)."""
    current = job._replace(paused=False, attempts=0, retry_ms=None)
    if current.next_ms > now_ms:
        return current
    spec = job.spec
    if spec.schedule is None:
        return None
    try:
        schedule = parse_schedule(spec.schedule, job.zone)
        following_ms = schedule.first_after(job.next_ms, now_ms)
    except ScheduleError:
        return None
    if job.expiry_ms is not None and following_ms > job.expiry_ms:
        return None
    return current._replace(next_ms=following_ms)


def jitter_offset_ms(uid: str, scheduled_ms: int, jitter_ms: int) -> int:
    """The delay of one occurrence, in [0, jitter_ms): the same on every node, from the job and
    the occurrence alone (never from a node's random source)."""
    assert jitter_ms > 0
    digest = hashlib.blake2b(f"{uid}:{scheduled_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % jitter_ms


@functools.lru_cache(maxsize=4096)
def duration_text_ms(text: str | None) -> int:
    """A jitter or delivery timeout as submitted (a Go duration), in ms; 0 for none."""
    return 0 if text is None else parse_go_duration(text)


def _following_ms(job: Job, count: int) -> int | None:
    spec = job.spec
    if spec.schedule is None:
        return None
    if spec.repeats is not None and count >= spec.repeats:
        return None
    try:
        # parse_schedule is cached: this is a lookup, not a parse, on every acked trigger.
        following_ms = parse_schedule(spec.schedule, job.zone).next_after(job.next_ms)
    except ScheduleError:
        # A schedule with no time left (a date that never comes again) ends the sequence.
        return None
    if job.expiry_ms is not None and following_ms > job.expiry_ms:
        return None
    return following_ms


def spec_from_request(name: str, body: object, limits: JobLimits) -> tuple[JobSpec, bool]:
    """The HTTP edge: a job spec and the overwrite flag from the URL name and a JSON body.

    Keys may be camelCase or snake_case; unknown keys are ignored, as protojson drops them.
    """
    validate_name(name, limits.name_chars_max)
    fields = _fields_of(body)
    data, data_type = _data(fields.get("data"), limits)
    spec = JobSpec(
        name=name,
        schedule=_text(fields.get("schedule"), "schedule", limits),
        due_time=_text(fields.get("due_time"), "dueTime", limits),
        repeats=None if fields.get("repeats") is None else uint32(fields["repeats"], "repeats"),
        ttl=_text(fields.get("ttl"), "ttl", limits),
        data=data,
        data_type=data_type,
        failure_policy=_failure_policy(fields.get("failure_policy")),
        misfire_policy=_misfire_policy(fields.get("misfire_policy")),
        jitter=_text(fields.get("jitter"), "jitter", limits),
        delivery_timeout=_text(fields.get("delivery_timeout"), "deliveryTimeout", limits),
    )
    validate_rules(spec)
    validate_bounds(spec)
    return spec, _overwrite(fields.get("overwrite"))


def spec_to_json(spec: JobSpec) -> dict[str, object]:
    """The job as submitted, in the JSON shape of Dapr's GET."""
    out: dict[str, object] = {"name": spec.name}
    if spec.schedule is not None:
        out["schedule"] = spec.schedule
    if spec.due_time is not None:
        out["dueTime"] = spec.due_time
    if spec.repeats is not None:
        out["repeats"] = spec.repeats
    if spec.ttl is not None:
        out["ttl"] = spec.ttl
    if spec.data and spec.data_type == DATA_TYPE_JSON:
        out["data"] = json.loads(spec.data)
    elif spec.data or spec.data_type:
        # Data that came over gRPC as an Any of another type: its bytes and type, as protojson
        # would show an Any it cannot unpack.
        out["data"] = {"@type": spec.data_type, "value": base64.b64encode(spec.data).decode()}
    if spec.failure_policy is not None:
        out["failurePolicy"] = spec.failure_policy.to_json()
    if spec.misfire_policy is not MisfirePolicy.ALL:
        out["misfirePolicy"] = str(spec.misfire_policy)
    if spec.jitter is not None:
        out["jitter"] = spec.jitter
    if spec.delivery_timeout is not None:
        out["deliveryTimeout"] = spec.delivery_timeout
    return out


def job_to_json(job: Job) -> dict[str, object]:
    """`spec_to_json` plus the status GET reports: count, the last and next trigger times, and
    `error` when the job is quarantined."""
    out = spec_to_json(job.spec)
    status: dict[str, object] = {
        "count": job.trigger_count,
        "lastTrigger": _time_or_none(job.last_ms),
        "nextTrigger": _time_or_none(job.next_ms),
    }
    if job.error is not None:
        status["error"] = job.error
    status["paused"] = job.paused
    out["status"] = status
    return out


def quarantined(job: Job, reason: str) -> Job:
    """The job kept with the reason it can no longer fire (see Job.error)."""
    return job._replace(error=reason[:ERROR_CHARS_MAX] or "quarantined")


def _time_or_none(ms: int | None) -> str | None:
    # Every time an accepted job holds is in range; a job stored before the bounds existed may
    # not be, and must still be listed rather than fail the whole answer.
    return None if ms is None or not time_in_range(ms) else format_rfc3339_ms(ms)


_MISFIRE_POLICIES = {str(policy): policy for policy in MisfirePolicy}

# The request keys, camelCase and snake_case, and the snake_case name each maps to.
_REQUEST_KEYS = {
    "schedule": "schedule",
    "dueTime": "due_time",
    "due_time": "due_time",
    "repeats": "repeats",
    "ttl": "ttl",
    "data": "data",
    "overwrite": "overwrite",
    "failurePolicy": "failure_policy",
    "failure_policy": "failure_policy",
    "misfirePolicy": "misfire_policy",
    "misfire_policy": "misfire_policy",
    "jitter": "jitter",
    "deliveryTimeout": "delivery_timeout",
    "delivery_timeout": "delivery_timeout",
}


def _fields_of(body: object) -> dict[str, object]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    if body.get("name") is not None:
        raise ValidationError("Set the job name in the url only")
    fields: dict[str, object] = {}
    for key, value in body.items():
        canonical = _REQUEST_KEYS.get(key)
        if canonical is None:
            continue
        if canonical in fields:
            raise ValidationError(f"field {key!r} is given twice, in camelCase and snake_case")
        fields[canonical] = value
    return fields


def _text(value: object, field: str, limits: JobLimits) -> str | None:
    # An empty string is an unset proto3 field, as Dapr reads it.
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    if len(value) > limits.text_chars_max:
        raise ValidationError(
            f"{field} is too long: {len(value)} characters, at most {limits.text_chars_max}"
        )
    return value


def _data(value: object, limits: JobLimits) -> tuple[bytes, str]:
    if value is None:
        return b"", ""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        data = text.encode()
    except (TypeError, ValueError, RecursionError):
        # UnicodeEncodeError (a ValueError) is a lone surrogate, which JSON text may escape
        # ("\ud800") but no UTF-8 payload can carry.
        raise ValidationError("data must be a JSON value of valid Unicode text") from None
    if len(data) > limits.data_bytes_max:
        raise ValidationError(
            f"data is too large: {len(data)} bytes, at most {limits.data_bytes_max}"
        )
    return data, DATA_TYPE_JSON


def _failure_policy(value: object) -> FailurePolicy | None:
    return None if value is None else FailurePolicy.from_json(value)


def _misfire_policy(value: object) -> MisfirePolicy:
    if value is None:
        return MisfirePolicy.ALL
    policy = _MISFIRE_POLICIES.get(value) if isinstance(value, str) else None
    if policy is None:
        choices = ", ".join(_MISFIRE_POLICIES)
        raise ValidationError(f"misfirePolicy must be one of {choices}: got {value!r}")
    return policy


def _overwrite(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError("overwrite must be true or false")
    return value
