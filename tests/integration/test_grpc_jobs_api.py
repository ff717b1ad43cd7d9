"""Dapr's gRPC Jobs API on a real 3-process cluster, driven by the official `dapr` Python SDK.

The SDK's DaprClient is pointed at a node as a user would point it at daprd: its health probe goes
to the node's HTTP port (DAPR_HTTP_PORT) and its calls to the gRPC port. What the SDK does not
wrap (ListJobs, DeleteJobsByPrefix, the Alpha1 twins, calls with an app id) goes through the
generated stub the SDK ships, as any other Dapr client would send it.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._jobs import ConstantFailurePolicy, DropFailurePolicy, Job
from dapr.proto.runtime.v1 import dapr_pb2_grpc, jobs_pb2, state_pb2
from google.protobuf import any_pb2

from cluster.local import LocalCluster
from tests.integration.grpc_helpers import (
    RPC_TIMEOUT_S,
    as_app,
    dapr_stubs,
    json_of,
    sdk_client,
    unique,
    value_any,
)
from tests.integration.node_helpers import call
from tests.support.local_cluster import running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("grpc-api")) as cluster:
        yield cluster


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[DaprClient]:
    with sdk_client(cluster.nodes[0]) as client:
        yield client


@pytest.fixture
def stubs(cluster: LocalCluster) -> Iterator[list[dapr_pb2_grpc.DaprStub]]:
    with dapr_stubs(cluster) as stubs:
        yield stubs


# -- schedule, get, delete through the SDK ------------------------------------------------------


def test_schedule_get_delete_round_trip(
    client: DaprClient, stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    name = unique("round-trip")
    payload = {"task": "report", "sizes": [1, 2.5], "ok": True}
    client.schedule_job(
        Job(
            name=name,
            schedule="@every 1h",
            repeats=5,
            due_time="1h",
            ttl="3h",
            data=value_any(payload),
            failure_policy=ConstantFailurePolicy(max_retries=2, interval_seconds=3),
        )
    )
    got = client.get_job(name)
    assert (got.name, got.schedule, got.repeats, got.due_time, got.ttl) == (
        name,
        "@every 1h",
        5,
        "1h",
        "3h",
    )
    assert got.data is not None and json_of(got.data) == payload
    assert isinstance(got.failure_policy, ConstantFailurePolicy)
    assert (got.failure_policy.max_retries, got.failure_policy.interval_seconds) == (2, 3)
    # Every node sees the write: a read after a write, on any node.
    for node_stub in stubs:
        reply = node_stub.GetJob(jobs_pb2.GetJobRequest(name=name), timeout=RPC_TIMEOUT_S)
        assert reply.job.schedule == "@every 1h"
    client.delete_job(name)
    with pytest.raises(DaprGrpcError) as missing:
        client.get_job(name)
    # DaprGrpcError is the SDK's grpc.RpcError; read it through the typed grpc interface.
    error: grpc.RpcError = missing.value
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert name in (error.details() or "")
    # A delete of a job that does not exist succeeds, as over HTTP.
    client.delete_job(name)


def test_overwrite_and_already_exists(client: DaprClient) -> None:
    name = unique("overwrite")
    client.schedule_job(Job(name=name, schedule="@every 1h", failure_policy=DropFailurePolicy()))
    with pytest.raises(DaprGrpcError) as conflict:
        client.schedule_job(Job(name=name, schedule="@every 2h"))
    error: grpc.RpcError = conflict.value
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert client.get_job(name).schedule == "@every 1h"
    client.schedule_job(Job(name=name, schedule="@every 2h"), overwrite=True)
    got = client.get_job(name)
    assert (got.schedule, got.failure_policy) == ("@every 2h", None)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (jobs_pb2.Job(name="no-time"), "job must have either a due time or a schedule"),
        (jobs_pb2.Job(name="", schedule="@every 1s"), "Name is empty"),
        (jobs_pb2.Job(name="a/b", schedule="@every 1s"), "must not contain '/'"),
        (jobs_pb2.Job(name="cron", schedule="* * *"), "expected exactly 6 fields"),
        (jobs_pb2.Job(name="rep", due_time="1s", repeats=2), "job must have a schedule to repeat"),
        (jobs_pb2.Job(name="zero", schedule="@every 1s", repeats=0), "greater than 0"),
        (jobs_pb2.Job(name="due", due_time="soon"), "due time format not recognized"),
        (
            jobs_pb2.Job(
                name="json",
                schedule="@every 1s",
                data=any_pb2.Any(type_url="application/json", value=b"{"),
            ),
            "does not hold JSON",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_jobs_are_invalid_argument(
    stubs: list[dapr_pb2_grpc.DaprStub], job: jobs_pb2.Job, message: str
) -> None:
    request = jobs_pb2.ScheduleJobRequest(job=job)
    with pytest.raises(grpc.RpcError) as invalid:
        stubs[1].ScheduleJob(request, timeout=RPC_TIMEOUT_S)
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (invalid.value.details() or "")
    # Bad input never changes state.
    with pytest.raises(grpc.RpcError) as missing:
        stubs[1].GetJob(jobs_pb2.GetJobRequest(name=job.name or "x"), timeout=RPC_TIMEOUT_S)
    assert missing.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_a_request_without_a_job_is_invalid(stubs: list[dapr_pb2_grpc.DaprStub]) -> None:
    with pytest.raises(grpc.RpcError) as invalid:
        stubs[0].ScheduleJob(jobs_pb2.ScheduleJobRequest(), timeout=RPC_TIMEOUT_S)
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "Job is empty"


def test_other_methods_are_unimplemented(stubs: list[dapr_pb2_grpc.DaprStub]) -> None:
    with pytest.raises(grpc.RpcError) as unimplemented:
        stubs[0].GetState(state_pb2.GetStateRequest(store_name="s", key="k"), timeout=RPC_TIMEOUT_S)
    assert unimplemented.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- list and delete by prefix, and the Alpha1 twins ----------------------------------------------


def test_list_and_delete_by_prefix_per_app(stubs: list[dapr_pb2_grpc.DaprStub]) -> None:
    app, other = unique("lister"), unique("other")
    for name in ("rep-a", "rep-b", "keep"):
        job = jobs_pb2.Job(name=name, schedule="@every 1h")
        stubs[0].ScheduleJob(
            jobs_pb2.ScheduleJobRequest(job=job), metadata=as_app(app), timeout=RPC_TIMEOUT_S
        )
    stubs[0].ScheduleJobAlpha1(
        jobs_pb2.ScheduleJobRequest(job=jobs_pb2.Job(name="rep-a", due_time="1h")),
        metadata=as_app(other),
        timeout=RPC_TIMEOUT_S,
    )
    listed = stubs[1].ListJobs(
        jobs_pb2.ListJobsRequest(), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    assert sorted(job.name for job in listed.jobs) == ["keep", "rep-a", "rep-b"]
    stubs[2].DeleteJobsByPrefix(
        jobs_pb2.DeleteJobsByPrefixRequest(name_prefix="rep-"),
        metadata=as_app(app),
        timeout=RPC_TIMEOUT_S,
    )
    alpha = stubs[2].ListJobsAlpha1(
        jobs_pb2.ListJobsRequestAlpha1(), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    assert [job.name for job in alpha.jobs] == ["keep"]
    # The other app's job of the same name is untouched: names are scoped per app.
    kept = stubs[0].GetJobAlpha1(
        jobs_pb2.GetJobRequest(name="rep-a"), metadata=as_app(other), timeout=RPC_TIMEOUT_S
    )
    assert kept.job.due_time == "1h"
    # An unset prefix deletes all of the app's jobs.
    stubs[1].DeleteJobsByPrefixAlpha1(
        jobs_pb2.DeleteJobsByPrefixRequestAlpha1(), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    empty = stubs[0].ListJobs(
        jobs_pb2.ListJobsRequest(), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    assert list(empty.jobs) == []


# -- one job store, two faces -------------------------------------------------------------------


def test_a_job_created_over_http_is_visible_over_grpc(
    cluster: LocalCluster, stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    app, name = unique("http-maker"), unique("from-http")
    data = {"db": "prod", "n": 3}
    body = {"schedule": "@every 1h", "repeats": 2, "data": data, "failurePolicy": {"drop": {}}}
    answer = call(
        f"{cluster.nodes[0].url}/v1.0/jobs/{name}", "POST", body, headers={"dapr-app-id": app}
    )
    assert answer.status == 204, answer.body
    reply = stubs[2].GetJob(
        jobs_pb2.GetJobRequest(name=name), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    assert (reply.job.schedule, reply.job.repeats) == ("@every 1h", 2)
    assert reply.job.failure_policy.HasField("drop")
    assert reply.job.data.type_url == "type.googleapis.com/google.protobuf.Value"
    assert json_of(reply.job.data) == data


def test_a_job_created_over_grpc_is_visible_over_http(
    cluster: LocalCluster, stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    app, name = unique("grpc-maker"), unique("from-grpc")
    job = jobs_pb2.Job(name=name, due_time="1h", data=value_any(["a", 1]))
    stubs[1].ScheduleJob(
        jobs_pb2.ScheduleJobRequest(job=job), metadata=as_app(app), timeout=RPC_TIMEOUT_S
    )
    answer = call(f"{cluster.nodes[2].url}/v1.0/jobs/{name}", headers={"dapr-app-id": app})
    assert answer.status == 200, answer.body
    assert {key: answer.json[key] for key in ("name", "dueTime", "data")} == {
        "name": name,
        "dueTime": "1h",
        "data": ["a", 1],
    }
    assert answer.json["status"]["count"] == 0
    deleted = call(
        f"{cluster.nodes[0].url}/v1.0/jobs/{name}", "DELETE", headers={"dapr-app-id": app}
    )
    assert deleted.status == 204
    with pytest.raises(grpc.RpcError) as missing:
        stubs[1].GetJob(
            jobs_pb2.GetJobRequest(name=name), metadata=as_app(app), timeout=RPC_TIMEOUT_S
        )
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((("dapr-app-id", "a" * 257),), "dapr-app-id is too long"),
        ((("dapr-namespace", ""),), "dapr-namespace must not be empty"),
    ],
)
def test_a_bad_scope_in_the_metadata_is_invalid(
    stubs: list[dapr_pb2_grpc.DaprStub], metadata: tuple[tuple[str, str]], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as invalid:
        stubs[0].ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=RPC_TIMEOUT_S)
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(invalid.value.details())
