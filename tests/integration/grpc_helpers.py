"""What the gRPC integration tests share: the official SDK's client and the generated Dapr stub
at the nodes of a cluster, and JSON as Dapr's SDKs carry it (an Any holding a Value)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.protobuf import any_pb2, json_format, struct_pb2

from cluster.local import LocalCluster, NodeProcess

RPC_TIMEOUT_S = 15.0


@contextmanager
def sdk_client(node: NodeProcess) -> Iterator[DaprClient]:
    """The SDK's client at `node`, found as an app finds its sidecar: DAPR_HTTP_PORT (its
    readiness probe) and DAPR_GRPC_PORT."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAPR_HTTP_PORT", node.http.rpartition(":")[2])
        env.setenv("DAPR_GRPC_PORT", node.grpc.rpartition(":")[2])
        with DaprClient() as client:
            yield client


@contextmanager
def dapr_stubs(cluster: LocalCluster) -> Iterator[list[dapr_pb2_grpc.DaprStub]]:
    """The generated stub the SDK ships, at every node."""
    channels = [grpc.insecure_channel(node.grpc) for node in cluster.nodes]
    try:
        yield [dapr_pb2_grpc.DaprStub(channel) for channel in channels]  # type: ignore[no-untyped-call]
    finally:
        for channel in channels:
            channel.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def value_any(data: object) -> any_pb2.Any:
    """`data` as Dapr's SDKs send JSON: an Any holding a google.protobuf.Value."""
    packed = any_pb2.Any()
    packed.Pack(json_format.Parse(json.dumps(data), struct_pb2.Value()))
    return packed


def json_of(packed: any_pb2.Any) -> object:
    value = struct_pb2.Value()
    assert packed.Unpack(value), packed.type_url
    return json_format.MessageToDict(value)


def as_app(app: str) -> tuple[tuple[str, str]]:
    """Call metadata acting for `app`, as daprd's `dapr-app-id`."""
    return (("dapr-app-id", app),)
