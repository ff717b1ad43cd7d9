"""The API token on Dapr's gRPC face: the official SDK with DAPR_API_TOKEN works against a
cluster started with a token; a call without the token, or with a wrong one, is UNAUTHENTICATED
on every job method and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from dapr.clients.grpc._jobs import Job
from dapr.proto.runtime.v1 import jobs_pb2

from cluster.local import LocalCluster
from tests.integration.grpc_helpers import RPC_TIMEOUT_S, dapr_stubs, sdk_client, unique
from tests.support.local_cluster import running_cluster

TOKEN = "grpc-s3cret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("grpc-token"), api_token=TOKEN) as running:
        yield running


def test_the_sdk_with_the_token_schedules_and_reads_a_job(cluster: LocalCluster) -> None:
    name = unique("tokened")
    with pytest.MonkeyPatch.context() as env:
        # As a user sets it for the SDK; read by the SDK (probe and calls) at every use.
        env.setenv("DAPR_API_TOKEN", TOKEN)
        with sdk_client(cluster.nodes[0]) as client:
            client.schedule_job(Job(name=name, schedule="@every 1h"))
            assert client.get_job(name).schedule == "@every 1h"
            client.delete_job(name)


@pytest.mark.parametrize("metadata", [(), (("dapr-api-token", "wrong"),)], ids=["none", "wrong"])
def test_a_call_without_the_right_token_is_unauthenticated_and_changes_nothing(
    cluster: LocalCluster, metadata: tuple[tuple[str, str], ...]
) -> None:
    name = unique("refused")
    job = jobs_pb2.Job(name=name, schedule="@every 1h")
    with dapr_stubs(cluster) as stubs:
        calls: list[Callable[[], object]] = [
            lambda: stubs[0].ScheduleJobAlpha1(
                jobs_pb2.ScheduleJobRequest(job=job), metadata=metadata, timeout=RPC_TIMEOUT_S
            ),
            lambda: stubs[1].GetJob(
                jobs_pb2.GetJobRequest(name=name), metadata=metadata, timeout=RPC_TIMEOUT_S
            ),
            lambda: stubs[2].ListJobsAlpha1(
                jobs_pb2.ListJobsRequestAlpha1(), metadata=metadata, timeout=RPC_TIMEOUT_S
            ),
        ]
        for attempt in calls:
            with pytest.raises(grpc.RpcError) as refused:
                attempt()
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # With the token, the refused create left no trace.
        with pytest.raises(grpc.RpcError) as missing:
            stubs[0].GetJob(
                jobs_pb2.GetJobRequest(name=name),
                metadata=(("dapr-api-token", TOKEN),),
                timeout=RPC_TIMEOUT_S,
            )
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
