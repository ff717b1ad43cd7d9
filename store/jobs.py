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

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from store.bounds import (
    DATA_BYTES_HARD_MAX,
    DURATION_MS_MAX,
    RETRY_INTERVAL_MS_MIN,
    SCOPE_CHARS_MAX,
    TIME_RANGE_TEXT,
    UINT32_MAX,
    time_in_range,
)
from store.errors import ScheduleError, ValidationError
from store.partition import partition_of
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
# The retry interval of a constant policy submitted without one: the default policy's.
RETRY_INTERVAL_MS_DEFAULT = 1000
# A stored reason why a job was quarantined, cut to this length.
ERROR_CHARS_MAX = 512
# A number given as a decimal string: more digits than uint32 has is refused before int().
_UINT32_DIGITS_MAX = len(str(UINT32_MAX))
# A retry interval text: far more than any real duration, and far fewer digits than int() takes.
_INTERVAL_CHARS_MAX = 64

_NAME_FORBIDDEN = re.compile(r"[/\\#?]")
# C0 and C1 control characters and DEL: the Unicode category Cc.
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROTO_DURATION = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")


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


class FailureKind(StrEnum):
    DROP = "drop"
    CONSTANT = "constant"


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What happens when delivering one occurrence fails: retry after an interval, or not."""

    kind: FailureKind
    interval_ms: int = 0
    # None retries forever, as Dapr's constant policy without maxRetries does.
    max_retries: int | None = None

    def allows_retry(self, failed_attempts: int) -> bool:
        """True when an occurrence that has failed `failed_attempts` times gets another attempt."""
        assert failed_attempts >= 1
        if self.kind is FailureKind.DROP:
            return False
        return self.max_retries is None or failed_attempts <= self.max_retries

    @classmethod
    def from_json(cls, value: object) -> FailurePolicy:
        """Parse `{"drop": {}}` or `{"constant": {"interval": "1s", "maxRetries": 3}}`."""
        if not isinstance(value, dict) or len(value) != 1:
            raise ValidationError(
                'failurePolicy must be {"drop": {}} or {"constant": {"interval": ..., '
                '"maxRetries": ...}}'
            )
        ((kind, body),) = value.items()
        if not isinstance(body, dict):
            raise ValidationError(f"failurePolicy.{kind} must be an object")
        if kind == FailureKind.DROP:
            return FAILURE_POLICY_DROP
        if kind != FailureKind.CONSTANT:
            raise ValidationError(
                f"failurePolicy has unknown kind {kind!r}: expected drop or constant"
            )
        interval = body.get("interval")
        retries = _one_of(body, "maxRetries", "max_retries", "failurePolicy.constant")
        policy = cls(
            FailureKind.CONSTANT,
            interval_ms=RETRY_INTERVAL_MS_DEFAULT if interval is None else _interval_ms(interval),
            max_retries=None if retries is None else _uint32(retries, "maxRetries"),
        )
        policy.validate()
        return policy

    def validate(self) -> None:
        """The bounds a policy keeps for the job's whole life: checked at the edge and in apply."""
        if self.kind is FailureKind.DROP:
            return
        if not RETRY_INTERVAL_MS_MIN <= self.interval_ms <= DURATION_MS_MAX:
            raise ValidationError(
                f"failurePolicy.constant.interval must be between {RETRY_INTERVAL_MS_MIN}ms and "
                f"{DURATION_MS_MAX // 3_600_000}h: got {format_proto_duration(self.interval_ms)}"
            )
        if self.max_retries is not None and not 0 <= self.max_retries <= UINT32_MAX:
            raise ValidationError(f"failurePolicy.constant.maxRetries must be at most {UINT32_MAX}")

    def to_json(self) -> dict[str, object]:
        """The JSON shape `from_json` accepts, with the interval as a protobuf Duration."""
        if self.kind is FailureKind.DROP:
            return {"drop": {}}
        constant: dict[str, object] = {"interval": format_proto_duration(self.interval_ms)}
        if self.max_retries is not None:
            constant["maxRetries"] = self.max_retries
        return {"constant": constant}


FAILURE_POLICY_DEFAULT = FailurePolicy(FailureKind.CONSTANT, interval_ms=1000, max_retries=3)
FAILURE_POLICY_DROP = FailurePolicy(FailureKind.DROP)


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

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.app, self.name)

    @property
    def trigger_id(self) -> str:
        """The idempotency key of the current occurrence, the same on every attempt."""
        return f"{self.next_ms}:{self.uid}"

    @property
    def fire_ms(self) -> int:
        """When the next attempt of the current occurrence is due."""
        return self.next_ms if self.retry_ms is None else self.retry_ms

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
    retry_ms = now_ms + policy.interval_ms
    if policy.allows_retry(attempts) and time_in_range(retry_ms):
        return job._replace(attempts=attempts, retry_ms=retry_ms)
    return advance(job, counted=True)


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
        repeats=None if fields.get("repeats") is None else _uint32(fields["repeats"], "repeats"),
        ttl=_text(fields.get("ttl"), "ttl", limits),
        data=data,
        data_type=data_type,
        failure_policy=_failure_policy(fields.get("failure_policy")),
        misfire_policy=_misfire_policy(fields.get("misfire_policy")),
    )
    validate_rules(spec)
    return spec, _overwrite(fields.get("overwrite"))


def spec_to_json(spec: JobSpec) -> dict[str, object]:
    """The job as submitted, in the JSON shape of Dapr's GET (data only when it is JSON)."""
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
    if spec.failure_policy is not None:
        out["failurePolicy"] = spec.failure_policy.to_json()
    if spec.misfire_policy is not MisfirePolicy.ALL:
        out["misfirePolicy"] = str(spec.misfire_policy)
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
    out["status"] = status
    return out


def quarantined(job: Job, reason: str) -> Job:
    """The job kept with the reason it can no longer fire (see Job.error)."""
    return job._replace(error=reason[:ERROR_CHARS_MAX] or "quarantined")


def _time_or_none(ms: int | None) -> str | None:
    # Every time an accepted job holds is in range; a job stored before the bounds existed may
    # not be, and must still be listed rather than fail the whole answer.
    return None if ms is None or not time_in_range(ms) else format_rfc3339_ms(ms)


def format_proto_duration(ms: int) -> str:
    """A protobuf Duration in its JSON form: "1s", "0.500s"."""
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}s" if millis == 0 else f"{seconds}.{millis:03d}s"


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


def _one_of(body: dict[str, object], camel: str, snake: str, where: str) -> object:
    if camel in body and snake in body:
        raise ValidationError(f"{where} has both {camel} and {snake}")
    return body.get(camel, body.get(snake))


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


def _uint32(value: object, field: str) -> int:
    # protojson accepts a uint32 as a JSON number or a decimal string.
    number: object = value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        if len(value.lstrip("0")) > _UINT32_DIGITS_MAX:
            raise ValidationError(f"{field} must be at most {UINT32_MAX}")
        number = int(value)
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValidationError(f"{field} must be a non-negative integer")
    if number > UINT32_MAX:
        raise ValidationError(f"{field} must be at most {UINT32_MAX}")
    return number


def _interval_ms(value: object) -> int:
    """A protobuf Duration string ("1s", "0.5s"), or a Go duration ("500ms") for convenience."""
    message = (
        'failurePolicy.constant.interval must be a non-negative duration such as "1s" or '
        f'"0.5s": got {value!r}'
    )
    if not isinstance(value, str) or len(value) > _INTERVAL_CHARS_MAX:
        raise ValidationError(message)
    match = _PROTO_DURATION.fullmatch(value)
    if match:
        fraction = (match.group(2) or "").ljust(3, "0")[:3]
        return int(match.group(1)) * 1000 + int(fraction)
    try:
        interval_ms = parse_go_duration(value)
    except ScheduleError:
        raise ValidationError(message) from None
    if interval_ms < 0:
        raise ValidationError(message)
    return interval_ms


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
