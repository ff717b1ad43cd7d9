"""Dapr's proto `Job` and tock's JobSpec, both ways: what the gRPC face reads and answers.

A proto job becomes the same request body the HTTP API takes and goes through the same
`spec_from_request`, so both faces share every rule, limit and message; only data that is not JSON
(an Any of some other type) is set on the spec afterwards, checked against the same size limit.
"""

from __future__ import annotations

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf import duration_pb2

from node.grpc.payload import RawData, any_of, json_or_raw
from store.errors import ValidationError
from store.failure_policy import FailureKind, FailurePolicy
from store.jobs import JobLimits, JobSpec, spec_from_request

_NANOS_PER_MS = 1_000_000


def spec_from_proto(job: jobs_pb2.Job, limits: JobLimits) -> JobSpec:
    """The spec of a job submitted over gRPC, validated as an HTTP request body would be."""
    body: dict[str, object] = {}
    if job.HasField("schedule"):
        body["schedule"] = job.schedule
    if job.HasField("due_time"):
        body["dueTime"] = job.due_time
    if job.HasField("ttl"):
        body["ttl"] = job.ttl
    if job.HasField("repeats"):
        body["repeats"] = job.repeats
    if job.HasField("failure_policy"):
        body["failurePolicy"] = _policy_json(job.failure_policy)
    payload = json_or_raw(job.data) if job.HasField("data") else None
    if not isinstance(payload, RawData):
        body["data"] = payload
    spec, _ = spec_from_request(job.name, body, limits)
    if isinstance(payload, RawData):
        if len(payload.data) > limits.data_bytes_max:
            raise ValidationError(
                f"data is too large: {len(payload.data)} bytes, at most {limits.data_bytes_max}"
            )
        spec = spec._replace(data=payload.data, data_type=payload.type_url)
    return spec


def proto_of(spec: JobSpec) -> jobs_pb2.Job:
    """The job as submitted, in Dapr's proto shape (GetJob and ListJobs answer with it)."""
    policy = spec.failure_policy
    return jobs_pb2.Job(
        name=spec.name,
        schedule=spec.schedule,
        repeats=spec.repeats,
        due_time=spec.due_time,
        ttl=spec.ttl,
        data=any_of(spec.data, spec.data_type),
        failure_policy=None if policy is None else _policy_proto(policy),
    )


def _policy_json(policy: common_pb2.JobFailurePolicy) -> dict[str, object] | None:
    """The JSON form FailurePolicy.from_json reads; None for a policy with neither kind set,
    which leaves the default in force."""
    kind = policy.WhichOneof("policy")
    if kind == "drop":
        return {"drop": {}}
    if kind is None:
        return None
    constant: dict[str, object] = {}
    if policy.constant.HasField("interval"):
        constant["interval"] = _interval_text(policy.constant.interval)
    if policy.constant.HasField("max_retries"):
        constant["maxRetries"] = policy.constant.max_retries
    return {"constant": constant}


def _interval_text(interval: duration_pb2.Duration) -> str:
    if interval.seconds < 0 or interval.nanos < 0:
        raise ValidationError("failure_policy.constant.interval must not be negative")
    # A protobuf Duration string as the HTTP API takes it; tock keeps intervals in whole ms.
    millis = interval.nanos // _NANOS_PER_MS
    return f"{interval.seconds}.{millis:03d}s"


def _policy_proto(policy: FailurePolicy) -> common_pb2.JobFailurePolicy:
    if policy.kind is FailureKind.DROP:
        return common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
    seconds, millis = divmod(policy.interval_ms, 1000)
    constant = common_pb2.JobFailurePolicyConstant(
        interval=duration_pb2.Duration(seconds=seconds, nanos=millis * _NANOS_PER_MS),
        max_retries=policy.max_retries,
    )
    return common_pb2.JobFailurePolicy(constant=constant)
