"""App tokens on Dapr's gRPC face, on a cluster in token mode: the official SDK with
DAPR_API_TOKEN set to an app token works unchanged and acts for that app only; another app's
token cannot read, list, delete or overwrite its jobs, and metadata naming the other app is
PERMISSION_DENIED; a call without a token, with a wrong one or a revoked one is UNAUTHENTICATED
on every job method and changes nothing. The admin token (`authorization: Bearer`) acts as the
app the metadata names."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._jobs import Job
from dapr.proto.runtime.v1 import dapr_pb2_grpc, jobs_pb2

from cluster.local import LocalCluster
from tests.integration.grpc_helpers import RPC_TIMEOUT_S, dapr_stubs, sdk_client, unique
from tests.integration.node_helpers import call, wait_until
from tests.support.local_cluster import running_cluster

Metadata = tuple[tuple[str, str], ...]
# A revoked token stops working on every node within this (the contract's bound).
REVOKED_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("grpc-token"), open_api=False) as running:
        yield running


@pytest.fixture
def stubs(cluster: LocalCluster) -> Iterator[list[dapr_pb2_grpc.DaprStub]]:
    with dapr_stubs(cluster) as stubs:
        yield stubs


def issue(cluster: LocalCluster, app: str) -> tuple[str, str]:
    """A new app token of `app`, issued over HTTP: (its id, the token)."""
    url = f"{cluster.nodes[0].url}/admin/apps/{app}/tokens"
    answer = call(url, "POST", b"", cluster.admin_headers())
    assert answer.status == 201, answer
    return answer.json["id"], answer.json["token"]


@contextmanager
def sdk_as(cluster: LocalCluster, node: int, token: str) -> Iterator[DaprClient]:
    """The SDK's client at node `node`, with DAPR_API_TOKEN set as a user sets it."""
    with pytest.MonkeyPatch.context() as env:
        # Read by the SDK (its probe and its calls) at every use.
        env.setenv("DAPR_API_TOKEN", token)
        with sdk_client(cluster.nodes[node - 1]) as client:
            yield client


def code_of(attempt: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        attempt()
    error: grpc.RpcError = refused.value
    code: grpc.StatusCode = error.code()
    return code


def refused(method: Callable[..., object], metadata: Metadata) -> bool:
    """Whether a GetJob through `method` with `metadata` is UNAUTHENTICATED."""
    try:
        method(jobs_pb2.GetJobRequest(name="probe"), metadata=metadata, timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as error:
        return bool(error.code() is grpc.StatusCode.UNAUTHENTICATED)
    return False


def calls_of(
    stub: dapr_pb2_grpc.DaprStub, name: str, metadata: Metadata
) -> list[Callable[[], object]]:
    """Every job method, acting on `name` (or on every job of the scope)."""
    job = jobs_pb2.Job(name=name, schedule="@every 2h")
    timeout = RPC_TIMEOUT_S
    return [
        lambda: stub.ScheduleJobAlpha1(
            jobs_pb2.ScheduleJobRequest(job=job, overwrite=True), metadata=metadata, timeout=timeout
        ),
        lambda: stub.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=metadata, timeout=timeout),
        lambda: stub.DeleteJob(
            jobs_pb2.DeleteJobRequest(name=name), metadata=metadata, timeout=timeout
        ),
        lambda: stub.ListJobsAlpha1(
            jobs_pb2.ListJobsRequestAlpha1(), metadata=metadata, timeout=timeout
        ),
        lambda: stub.DeleteJobsByPrefix(
            jobs_pb2.DeleteJobsByPrefixRequest(), metadata=metadata, timeout=timeout
        ),
    ]


def test_the_sdk_with_an_app_token_acts_for_that_app_only(
    cluster: LocalCluster, stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    owner, other = unique("grpc-owner"), unique("grpc-other")
    _, owner_token = issue(cluster, owner)
    _, other_token = issue(cluster, other)
    name = unique("owned")
    with sdk_as(cluster, 1, owner_token) as client:
        client.schedule_job(Job(name=name, schedule="@every 1h"))
        assert client.get_job(name).schedule == "@every 1h"
    with sdk_as(cluster, 2, other_token) as client:
        # The other app's own scope holds no such job: it finds nothing, and deletes nothing.
        with pytest.raises(DaprGrpcError) as missing:
            client.get_job(name)
        error: grpc.RpcError = missing.value
        assert error.code() is grpc.StatusCode.NOT_FOUND
        client.delete_job(name)
    listed = stubs[2].ListJobsAlpha1(
        jobs_pb2.ListJobsRequestAlpha1(),
        metadata=(("dapr-api-token", other_token),),
        timeout=RPC_TIMEOUT_S,
    )
    assert list(listed.jobs) == []
    stubs[2].DeleteJobsByPrefix(
        jobs_pb2.DeleteJobsByPrefixRequest(),
        metadata=(("dapr-api-token", other_token),),
        timeout=RPC_TIMEOUT_S,
    )
    # Naming the owner in the metadata is refused, on every method and every node.
    for stub in stubs:
        claim = (("dapr-api-token", other_token), ("dapr-app-id", owner))
        for attempt in calls_of(stub, name, claim):
            assert code_of(attempt) is grpc.StatusCode.PERMISSION_DENIED
    # The owner's job is untouched.
    with sdk_as(cluster, 3, owner_token) as client:
        assert client.get_job(name).schedule == "@every 1h"
    # The admin token acts as the app the metadata names.
    admin = (("authorization", f"Bearer {cluster.admin_token()}"), ("dapr-app-id", owner))
    got = stubs[1].GetJob(jobs_pb2.GetJobRequest(name=name), metadata=admin, timeout=RPC_TIMEOUT_S)
    assert got.job.schedule == "@every 1h"


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("dapr-api-token", "wrong"),),
        (("dapr-api-token", "0123456789abcdef.guessed"),),
        (("dapr-app-id", "anyone"),),
        (("authorization", "Bearer not-the-admin-token"),),
    ],
    ids=["none", "wrong", "guessed", "app-id-only", "wrong-admin"],
)
def test_a_call_without_a_valid_token_is_unauthenticated_and_changes_nothing(
    cluster: LocalCluster, stubs: list[dapr_pb2_grpc.DaprStub], metadata: Metadata
) -> None:
    app = unique("grpc-guarded")
    _, token = issue(cluster, app)
    name = unique("refused")
    for stub in stubs:
        for attempt in calls_of(stub, name, metadata):
            assert code_of(attempt) is grpc.StatusCode.UNAUTHENTICATED
    # With a token, the refused create left no trace.
    with sdk_as(cluster, 1, token) as client, pytest.raises(DaprGrpcError) as missing:
        client.get_job(name)
    error: grpc.RpcError = missing.value
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_a_revoked_token_is_unauthenticated_on_every_node(
    cluster: LocalCluster, stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    app = unique("grpc-revoked")
    token_id, token = issue(cluster, app)
    with sdk_as(cluster, 2, token) as client:
        client.schedule_job(Job(name="before", schedule="@every 1h"))
    url = f"{cluster.nodes[2].url}/admin/apps/{app}/tokens/{token_id}"
    assert call(url, "DELETE", headers=cluster.admin_headers()).status == 204
    revoked_at = time.monotonic()
    metadata = (("dapr-api-token", token),)

    def refused_everywhere() -> bool:
        return all(refused(stub.GetJob, metadata) for stub in stubs)

    # The other nodes apply the revocation a moment after the node that answered it.
    wait_until(refused_everywhere, REVOKED_WITHIN_S, "the token refused on every node")
    print(f"revoked token refused on every node after {time.monotonic() - revoked_at:.3f} s")
    for stub in stubs:
        for attempt in calls_of(stub, "before", metadata):
            assert code_of(attempt) is grpc.StatusCode.UNAUTHENTICATED
