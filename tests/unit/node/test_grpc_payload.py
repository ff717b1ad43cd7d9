"""A job's data and spec between Dapr's protos and tock's JobSpec: what the gRPC face stores and
answers, and that both faces share the same rules and limits."""

from __future__ import annotations

import json

import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2, wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from node.grpc.jobs import proto_of, spec_from_proto
from node.grpc.payload import VALUE_TYPE_URL, any_of
from store.errors import ValidationError
from store.failure_policy import FailureKind
from store.jobs import DATA_TYPE_JSON, JobLimits, JobSpec, spec_from_request

LIMITS = JobLimits(data_bytes_max=64)

# JSON as a Value holds it: numbers are doubles, so integers stay within 2**53.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


def value_any(data: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(json_format.Parse(json.dumps(data), struct_pb2.Value()))
    return packed


def spec_with(data: any_pb2.Any | None) -> JobSpec:
    job = jobs_pb2.Job(name="j", schedule="@every 1s", data=data)
    return spec_from_proto(job, JobLimits())


@settings(deadline=None, max_examples=150)
@given(json_values)
def test_a_value_is_stored_as_the_json_http_stores(data: object) -> None:
    spec = spec_with(value_any(data))
    http_spec, _ = spec_from_request("j", {"schedule": "@every 1s", "data": data}, JobLimits())
    assert spec.data_type == http_spec.data_type
    # The same JSON value; a Value's numbers are doubles, so 1.0 comes out as 1 (as Go's would).
    assert spec.data == http_spec.data or json.loads(spec.data) == json.loads(http_spec.data)


@settings(deadline=None, max_examples=150)
@given(json_values.filter(lambda data: data is not None))
def test_json_goes_out_as_the_value_it_came_as(data: object) -> None:
    spec = spec_with(value_any(data))
    packed = any_of(spec.data, spec.data_type)
    assert packed is not None and packed.type_url == VALUE_TYPE_URL
    value = struct_pb2.Value()
    assert packed.Unpack(value)
    assert json_format.MessageToDict(value) == json_format.MessageToDict(
        json_format.Parse(json.dumps(data), struct_pb2.Value())
    )


def test_integral_numbers_are_json_integers() -> None:
    assert spec_with(value_any({"n": 3, "x": 0.5})).data == b'{"n":3,"x":0.5}'


def test_an_any_of_another_type_is_kept_as_submitted() -> None:
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value="hi"))
    spec = spec_with(packed)
    assert (spec.data, spec.data_type) == (packed.value, packed.type_url)
    assert any_of(spec.data, spec.data_type) == packed
    untyped = any_pb2.Any(value=b'{"raw": true}')
    spec = spec_with(untyped)
    assert any_of(spec.data, spec.data_type) == untyped


def test_no_data_and_an_empty_any_store_nothing() -> None:
    for data in (None, any_pb2.Any(), value_any(None)):
        spec = spec_with(data)
        assert (spec.data, spec.data_type) == (b"", "")
        assert any_of(spec.data, spec.data_type) is None


def test_an_any_typed_json_is_json() -> None:
    spec = spec_with(any_pb2.Any(type_url=DATA_TYPE_JSON, value=b'{"a": [1]}'))
    assert (spec.data, spec.data_type) == (b'{"a":[1]}', DATA_TYPE_JSON)
    with pytest.raises(ValidationError, match="does not hold JSON"):
        spec_with(any_pb2.Any(type_url=DATA_TYPE_JSON, value=b"{"))


@pytest.mark.parametrize(
    "data",
    [
        any_pb2.Any(type_url="type.googleapis.com/x.Big", value=b"x" * 65),
        value_any("y" * 70),
    ],
)
def test_data_over_the_limit_is_refused_either_way(data: any_pb2.Any) -> None:
    job = jobs_pb2.Job(name="j", schedule="@every 1s", data=data)
    with pytest.raises(ValidationError, match="data is too large"):
        spec_from_proto(job, LIMITS)


def test_a_corrupt_value_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"not a valid google\.protobuf\.Value"):
        spec_with(any_pb2.Any(type_url=VALUE_TYPE_URL, value=b"\xff\xff"))


def test_the_spec_round_trips_through_the_proto() -> None:
    policy = common_pb2.JobFailurePolicy(
        constant=common_pb2.JobFailurePolicyConstant(
            interval=duration_pb2.Duration(seconds=2, nanos=500_000_000), max_retries=4
        )
    )
    job = jobs_pb2.Job(
        name="j",
        schedule="@every 1m",
        repeats=3,
        due_time="10s",
        ttl="1h",
        data=value_any({"a": 1}),
        failure_policy=policy,
    )
    spec = spec_from_proto(job, JobLimits())
    assert spec.failure_policy is not None
    assert (spec.failure_policy.kind, spec.failure_policy.interval_ms) == (
        FailureKind.CONSTANT,
        2500,
    )
    assert spec.failure_policy.max_retries == 4
    assert proto_of(spec) == job
    assert spec_from_proto(proto_of(spec), JobLimits()) == spec


def test_policies_drop_forever_and_unset() -> None:
    drop = common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
    dropped = spec_from_proto(jobs_pb2.Job(name="j", due_time="1s", failure_policy=drop), LIMITS)
    assert dropped.failure_policy is not None
    assert dropped.failure_policy.kind is FailureKind.DROP
    assert proto_of(dropped).failure_policy == drop
    # A constant policy without max_retries retries forever; without an interval, every second
    # (retrying at once would keep a node busy for nothing).
    forever = common_pb2.JobFailurePolicy(constant=common_pb2.JobFailurePolicyConstant())
    spec = spec_from_proto(jobs_pb2.Job(name="j", due_time="1s", failure_policy=forever), LIMITS)
    assert spec.failure_policy is not None
    assert (spec.failure_policy.max_retries, spec.failure_policy.interval_ms) == (None, 1000)
    # No policy, or one with neither kind set, leaves the default in force.
    assert spec_from_proto(jobs_pb2.Job(name="j", due_time="1s"), LIMITS).failure_policy is None
    empty = jobs_pb2.Job(name="j", due_time="1s", failure_policy=common_pb2.JobFailurePolicy())
    assert spec_from_proto(empty, LIMITS).failure_policy is None


def test_a_negative_interval_is_refused() -> None:
    policy = common_pb2.JobFailurePolicy(
        constant=common_pb2.JobFailurePolicyConstant(interval=duration_pb2.Duration(seconds=-1))
    )
    with pytest.raises(ValidationError, match="must not be negative"):
        spec_from_proto(jobs_pb2.Job(name="j", due_time="1s", failure_policy=policy), LIMITS)
