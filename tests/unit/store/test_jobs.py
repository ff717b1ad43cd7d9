"""A job's validation (each rule with its own message), the HTTP edge, and its trigger sequence."""

from __future__ import annotations

import json

import pytest

from store.errors import ScheduleError, ValidationError
from store.failure_policy import (
    FAILURE_POLICY_DEFAULT,
    FAILURE_POLICY_DROP,
    FailureKind,
    FailurePolicy,
)
from store.jobs import (
    DATA_TYPE_JSON,
    Job,
    JobLimits,
    JobSpec,
    MisfirePolicy,
    advance,
    derive_job,
    job_to_json,
    record_failure,
    spec_from_request,
    spec_to_json,
    validate_name,
    validate_rules,
)
from store.partition import partition_of
from store.request_fields import format_proto_duration

NOW_MS = 1_700_000_000_000
LIMITS = JobLimits()


def derive(spec: JobSpec, now_ms: int = NOW_MS) -> Job:
    return derive_job(spec, "ns", "app", "uid-1", now_ms, "UTC", 1024)


# ---- names ----


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Name is empty"),
        (".", "job name must not be '.'"),
        ("..", "job name must not be '..'"),
        ("a/b", "job name must not contain '/', '\\', '#' or '?': found '/'"),
        ("a\\b", "found '\\\\'"),
        ("a#b", "found '#'"),
        ("a?b", "found '?'"),
        ("a\x00b", "job name must not contain control characters: found U+0000"),
        ("a\x7fb", "found U+007F"),
        ("a\x85b", "found U+0085"),
        ("x" * 257, "job name is too long: 257 characters, at most 256"),
    ],
)
def test_bad_names_are_refused_each_with_its_message(name: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_name(name)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "name", ["job", "my||job@name", "a.b", "...", "x" * 256, "ünï cödé", "a b"]
)
def test_good_names_pass(name: str) -> None:
    validate_name(name)


def test_name_length_bound_is_configurable_and_optional() -> None:
    validate_name("x" * 300, chars_max=None)
    with pytest.raises(ValidationError, match="at most 10"):
        validate_name("x" * 11, chars_max=10)


# ---- how schedule, dueTime, repeats and ttl combine ----


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (JobSpec("j"), "job must have either a due time or a schedule"),
        (JobSpec("j", schedule="@every 1s", repeats=0), "defined repeats must be greater than 0"),
        (JobSpec("j", due_time="1s", repeats=1), "job must have a schedule to repeat"),
        (JobSpec("j", due_time="1s", ttl="10s"), "job must have a schedule to have a ttl"),
    ],
)
def test_rule_violations_each_have_their_message(spec: JobSpec, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_rules(spec)
    assert str(caught.value) == message
    with pytest.raises(ValidationError) as again:
        derive(spec)
    assert str(again.value) == message


def test_ttl_before_due_time_is_refused() -> None:
    spec = JobSpec("j", schedule="@every 1s", due_time="10s", ttl="2023-01-01T00:00:00Z")
    with pytest.raises(ValidationError, match=r"^ttl must be greater than due time$"):
        derive(spec)


def test_a_job_whose_first_trigger_is_past_its_ttl_is_refused() -> None:
    with pytest.raises(ValidationError, match="would never trigger"):
        derive(JobSpec("j", schedule="@every 1h", ttl="10s"))


def test_schedule_and_time_errors_come_from_the_schedule_module() -> None:
    with pytest.raises(ScheduleError):
        derive(JobSpec("j", schedule="not a cron"))
    with pytest.raises(ScheduleError, match="due time format not recognized"):
        derive(JobSpec("j", due_time="tomorrow"))
    with pytest.raises(ScheduleError, match="ttl format not recognized"):
        derive(JobSpec("j", schedule="@every 1s", ttl="forever"))


def test_a_bad_cron_is_refused_even_when_a_due_time_comes_first() -> None:
    with pytest.raises(ScheduleError):
        derive(JobSpec("j", schedule="61 * * * * *", due_time="1s"))


@pytest.mark.parametrize(
    ("namespace", "app", "uid", "message"),
    [
        ("", "app", "u", "namespace is empty"),
        ("ns", "", "u", "app id is empty"),
        ("ns", "a", "", "job uid is empty"),
    ],
)
def test_derive_refuses_an_empty_identity(namespace: str, app: str, uid: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        derive_job(JobSpec("j", due_time="1s"), namespace, app, uid, NOW_MS, "UTC", 16)


# ---- derived times ----


def test_due_time_only_fires_once_at_due_time() -> None:
    job = derive(JobSpec("j", due_time="10s"))
    assert (job.due_ms, job.next_ms, job.expiry_ms) == (NOW_MS + 10_000, NOW_MS + 10_000, None)
    assert job.partition == partition_of("ns", "app", "j", 1024)
    assert advance(job, counted=True) is None


def test_schedule_only_first_fires_one_tick_after_creation_never_at_it() -> None:
    job = derive(JobSpec("j", schedule="@every 5s"))
    assert job.next_ms == NOW_MS + 5_000
    assert job.due_ms is None


def test_relative_ttl_counts_from_due_time_when_set() -> None:
    job = derive(JobSpec("j", schedule="@every 1s", due_time="10s", ttl="5s"))
    assert job.expiry_ms == NOW_MS + 15_000
    no_due = derive(JobSpec("j", schedule="@every 1s", ttl="5s"))
    assert no_due.expiry_ms == NOW_MS + 5_000


def test_both_first_at_due_time_then_by_schedule_from_it() -> None:
    job = derive(JobSpec("j", schedule="@every 3s", due_time="10s"))
    after = advance(job, counted=True)
    assert after is not None
    assert (after.next_ms, after.last_ms, after.trigger_count) == (
        NOW_MS + 13_000,
        NOW_MS + 10_000,
        1,
    )


def test_an_occurrence_exactly_at_expiry_still_fires() -> None:
    job = derive(JobSpec("j", schedule="@every 1s", ttl="2s"))
    times = []
    current: Job | None = job
    while current is not None:
        times.append(current.next_ms)
        current = advance(current, counted=True)
    assert times == [NOW_MS + 1_000, NOW_MS + 2_000]


def test_skipped_occurrences_are_not_counted_and_do_not_move_last() -> None:
    job = derive(JobSpec("j", schedule="@every 1s", repeats=2))
    skipped = advance(job, counted=False)
    assert skipped is not None
    assert (skipped.trigger_count, skipped.last_ms, skipped.next_ms) == (0, None, NOW_MS + 2_000)


# ---- failure policy ----


def test_default_failure_policy_allows_four_attempts_then_counts_the_occurrence() -> None:
    job = derive(JobSpec("j", schedule="@every 10s"))
    for attempt in range(1, 4):
        retried = record_failure(job, NOW_MS + attempt)
        assert retried is not None
        assert (retried.attempts, retried.retry_ms, retried.next_ms) == (
            attempt,
            NOW_MS + attempt + 1_000,
            job.next_ms,
        )
        assert retried.fire_ms == retried.retry_ms
        assert retried.trigger_id == job.trigger_id
        job = retried
    exhausted = record_failure(job, NOW_MS + 9)
    assert exhausted is not None
    assert (exhausted.attempts, exhausted.retry_ms, exhausted.trigger_count) == (0, None, 1)
    assert exhausted.next_ms == job.next_ms + 10_000


def test_drop_policy_tries_once_and_constant_without_max_retries_forever() -> None:
    dropped = derive(JobSpec("j", due_time="1s", failure_policy=FAILURE_POLICY_DROP))
    assert record_failure(dropped, NOW_MS) is None
    forever = FailurePolicy(FailureKind.CONSTANT, interval_ms=0)
    assert all(forever.allows_retry(n) for n in (1, 10, 10**9))


@pytest.mark.parametrize(
    ("body", "policy"),
    [
        ({"drop": {}}, FAILURE_POLICY_DROP),
        (
            {"constant": {"interval": "3s", "maxRetries": 5}},
            FailurePolicy(FailureKind.CONSTANT, 3000, 5),
        ),
        (
            {"constant": {"interval": "0.5s", "max_retries": 0}},
            FailurePolicy(FailureKind.CONSTANT, 500, 0),
        ),
        (
            {"constant": {"interval": "1.000000001s"}},
            FailurePolicy(FailureKind.CONSTANT, 1000, None),
        ),
        ({"constant": {"interval": "1500ms"}}, FailurePolicy(FailureKind.CONSTANT, 1500, None)),
        ({"constant": {}}, FailurePolicy(FailureKind.CONSTANT, 1000, None)),
    ],
)
def test_failure_policy_json_shapes_parse(body: object, policy: FailurePolicy) -> None:
    assert FailurePolicy.from_json(body) == policy
    assert FailurePolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "failurePolicy must be"),
        ({"drop": {}, "constant": {}}, "failurePolicy must be"),
        ("drop", "failurePolicy must be"),
        ({"linear": {}}, "failurePolicy has unknown kind 'linear'"),
        ({"constant": 3}, "failurePolicy.constant must be an object"),
        ({"constant": {"interval": 3}}, "interval must be a non-negative duration"),
        ({"constant": {"interval": "-1s"}}, "interval must be a non-negative duration"),
        ({"constant": {"interval": "soon"}}, "interval must be a non-negative duration"),
        ({"constant": {"maxRetries": -1}}, "maxRetries must be a non-negative integer"),
        ({"constant": {"maxRetries": 1, "max_retries": 1}}, "has both maxRetries and max_retries"),
    ],
)
def test_bad_failure_policies_are_refused(body: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FailurePolicy.from_json(body)


def test_failure_policy_round_trips_to_dapr_json() -> None:
    assert FAILURE_POLICY_DEFAULT.to_json() == {"constant": {"interval": "1s", "maxRetries": 3}}
    assert FAILURE_POLICY_DROP.to_json() == {"drop": {}}
    assert format_proto_duration(1500) == "1.500s"


# ---- the HTTP edge ----


def test_request_in_camel_case_and_snake_case_give_the_same_spec() -> None:
    camel = {"schedule": "@every 1s", "dueTime": "1s", "failurePolicy": {"drop": {}}, "repeats": 3}
    snake = {
        "schedule": "@every 1s",
        "due_time": "1s",
        "failure_policy": {"drop": {}},
        "repeats": 3,
    }
    assert spec_from_request("j", camel, LIMITS) == spec_from_request("j", snake, LIMITS)


def test_request_fields_land_in_the_spec() -> None:
    body = {
        "schedule": "@every 1s",
        "dueTime": "10s",
        "repeats": "4",
        "ttl": "1h",
        "data": {"b": [1, 2], "a": "é"},
        "overwrite": True,
        "misfirePolicy": "latest",
        "unknownField": 1,
    }
    spec, overwrite = spec_from_request("j", body, LIMITS)
    assert overwrite is True
    assert spec == JobSpec(
        name="j",
        schedule="@every 1s",
        due_time="10s",
        repeats=4,
        ttl="1h",
        data='{"b":[1,2],"a":"é"}'.encode(),
        data_type=DATA_TYPE_JSON,
        misfire_policy=MisfirePolicy.LATEST,
    )


def test_empty_strings_are_unset_fields_and_no_data_is_empty() -> None:
    spec, overwrite = spec_from_request(
        "j", {"schedule": "", "dueTime": "1s", "data": None}, LIMITS
    )
    assert (spec.schedule, spec.data, spec.data_type, overwrite) == (None, b"", "", False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{}], "request body must be a JSON object"),
        ({"name": "j", "dueTime": "1s"}, "Set the job name in the url only"),
        ({"dueTime": "1s", "due_time": "1s"}, "given twice"),
        ({"schedule": 5}, "schedule must be a string"),
        ({"dueTime": ["1s"]}, "dueTime must be a string"),
        ({"schedule": "x" * 300}, "schedule is too long: 300 characters, at most 256"),
        ({"schedule": "@every 1s", "repeats": -1}, "repeats must be a non-negative integer"),
        ({"schedule": "@every 1s", "repeats": True}, "repeats must be a non-negative integer"),
        ({"schedule": "@every 1s", "repeats": 1.5}, "repeats must be a non-negative integer"),
        ({"schedule": "@every 1s", "repeats": "three"}, "repeats must be a non-negative integer"),
        ({"schedule": "@every 1s", "repeats": 2**32}, "repeats must be at most 4294967295"),
        ({"schedule": "@every 1s", "repeats": 0}, "defined repeats must be greater than 0"),
        ({"dueTime": "1s", "overwrite": "yes"}, "overwrite must be true or false"),
        (
            {"dueTime": "1s", "misfirePolicy": "some"},
            "misfirePolicy must be one of all, latest, skip",
        ),
        ({"dueTime": "1s", "data": float("nan")}, "data must be a JSON value"),
        ({}, "job must have either a due time or a schedule"),
        ({"dueTime": "1s", "repeats": 2}, "job must have a schedule to repeat"),
    ],
)
def test_bad_requests_are_refused_each_with_its_message(body: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec_from_request("j", body, LIMITS)


def test_request_name_and_data_are_bounded_by_the_limits() -> None:
    limits = JobLimits(name_chars_max=4, data_bytes_max=10)
    with pytest.raises(ValidationError, match="at most 4"):
        spec_from_request("jobby", {"dueTime": "1s"}, limits)
    spec, _ = spec_from_request("j", {"dueTime": "1s", "data": "12345678"}, limits)
    assert spec.data == b'"12345678"'
    with pytest.raises(ValidationError, match="data is too large: 11 bytes, at most 10"):
        spec_from_request("j", {"dueTime": "1s", "data": "123456789"}, limits)
    with pytest.raises(ValidationError, match="data_bytes_max must be positive"):
        JobLimits(data_bytes_max=0).validate()


def test_an_empty_body_is_a_spec_with_nothing_to_fire() -> None:
    with pytest.raises(ValidationError, match="either a due time or a schedule"):
        spec_from_request("j", None, LIMITS)


def test_get_json_shows_the_job_as_submitted_plus_status() -> None:
    body = {
        "schedule": "@every 2s",
        "dueTime": "1s",
        "ttl": "1h",
        "data": {"x": 1},
        "failurePolicy": {"drop": {}},
    }
    spec, _ = spec_from_request("j", body, LIMITS)
    job = derive(spec)
    assert spec_to_json(spec) == {"name": "j", **body}
    after = advance(job, counted=True)
    assert after is not None
    assert job_to_json(after)["status"] == {
        "count": 1,
        "lastTrigger": "2023-11-14T22:13:21.000Z",
        "nextTrigger": "2023-11-14T22:13:23.000Z",
        "paused": False,
    }
    shown = spec_to_json(JobSpec("k", due_time="1s", misfire_policy=MisfirePolicy.SKIP))
    assert shown == {"name": "k", "dueTime": "1s", "misfirePolicy": "skip"}
    assert json.dumps(job_to_json(job))
