"""Triggers to gRPC apps, and payloads across protocols, on a real 3-process cluster.

The app is the official SDK's `dapr.ext.grpc.App`, registered as `grpc://127.0.0.1:PORT`, as an
app run with `--app-protocol grpc` is reached by daprd. The seed's backup example runs end to
end: a job scheduled through the SDK, `@every 1s` ten times, reaches the app's
`@app.job_event("prod-db-backup")` handler ten times with its payload. Data crosses protocols as
Dapr carries it: HTTP JSON reaches a gRPC app as a google.protobuf.Value, and an Any scheduled
over gRPC reaches an HTTP app as its JSON, or as its raw bytes when it is not a Value.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from dapr.clients.grpc._jobs import Job
from dapr.clients.grpc._request import JobEvent
from dapr.ext.grpc import App
from dapr.proto.runtime.v1 import dapr_pb2_grpc, jobs_pb2
from google.protobuf import any_pb2, json_format, struct_pb2, wrappers_pb2

from cluster.local import LocalCluster
from tests.integration.grpc_helpers import (
    RPC_TIMEOUT_S,
    as_app,
    dapr_stubs,
    sdk_client,
    unique,
    value_any,
)
from tests.integration.node_helpers import call
from tests.support.local_cluster import port_block, running_cluster
from tests.support.sink import Sink

BACKUP_JOB = "prod-db-backup"
BACKUP_DATA = {
    "task": "db-backup",
    "metadata": {"db_name": "prod-db", "backup_location": "/backup-dir"},
}
FROM_HTTP_JOB = "from-http"
# Ten triggers a second apart, plus room for a loaded machine.
BACKUP_WAIT_S = 30.0
TRIGGER_WAIT_S = 15.0
# After the last of a job's repeats, how long to watch for one too many.
QUIET_S = 1.5
APP_START_S = 10.0


class JobEvents:
    """What the app's job handlers received, by job name, with a bounded wait."""

    def __init__(self) -> None:
        self._data: dict[str, list[bytes]] = {}
        self._changed = threading.Condition()

    def record(self, event: JobEvent) -> None:
        with self._changed:
            self._data.setdefault(event.name, []).append(event.data)
            self._changed.notify_all()

    def wait_for(self, name: str, count: int, timeout_s: float) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                got = list(self._data.get(name, []))
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._changed.wait(left)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("grpc-app")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def grpc_app(cluster: LocalCluster) -> Iterator[JobEvents]:
    """The SDK's gRPC app, registered as the callback of app `default`."""
    events = JobEvents()
    app = App()
    for name in (BACKUP_JOB, FROM_HTTP_JOB):
        app.job_event(name)(events.record)
    port = port_block(1)
    server = threading.Thread(target=app.run, args=(port, "127.0.0.1"), daemon=True)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=APP_START_S)
        url = f"grpc://127.0.0.1:{port}"
        answer = call(f"{cluster.nodes[0].url}/v1.0/apps/default", "PUT", {"url": url})
        assert answer.status in (200, 204), answer.body
        yield events
    finally:
        app.stop()
        server.join(APP_START_S)


@pytest.fixture(scope="module")
def http_app(cluster: LocalCluster) -> Iterator[tuple[str, Sink]]:
    """A recording HTTP app, registered as the callback of an app id of its own."""
    sink = Sink().start()
    app_id = unique("http-app")
    try:
        answer = call(f"{cluster.nodes[1].url}/v1.0/apps/{app_id}", "PUT", {"url": sink.url})
        assert answer.status in (200, 204), answer.body
        yield app_id, sink
    finally:
        sink.stop()


@pytest.fixture
def stubs(cluster: LocalCluster) -> Iterator[list[dapr_pb2_grpc.DaprStub]]:
    with dapr_stubs(cluster) as stubs:
        yield stubs


def test_the_backup_example_runs_ten_times(cluster: LocalCluster, grpc_app: JobEvents) -> None:
    # As the SDKs' examples build it: the JSON bytes in an Any with no type.
    data = any_pb2.Any(value=json.dumps(BACKUP_DATA).encode())
    with sdk_client(cluster.nodes[1]) as client:
        client.schedule_job(Job(name=BACKUP_JOB, schedule="@every 1s", repeats=10, data=data))
    received = grpc_app.wait_for(BACKUP_JOB, 10, BACKUP_WAIT_S)
    assert [json.loads(payload) for payload in received] == [BACKUP_DATA] * 10
    # Ten repeats, then the job ends: no eleventh trigger, and the job is gone.
    time.sleep(QUIET_S)
    assert len(grpc_app.wait_for(BACKUP_JOB, 11, 0)) == 10
    gone = call(f"{cluster.nodes[2].url}/v1.0/jobs/{BACKUP_JOB}")
    assert gone.status == 404, gone.body


def test_http_json_reaches_a_grpc_app_as_a_value(
    cluster: LocalCluster, grpc_app: JobEvents
) -> None:
    data = {"greeting": "hello", "count": 2, "tags": ["a", None]}
    body = {"dueTime": "1s", "data": data}
    answer = call(f"{cluster.nodes[2].url}/v1.0/jobs/{FROM_HTTP_JOB}", "POST", body)
    assert answer.status == 204, answer.body
    (payload,) = grpc_app.wait_for(FROM_HTTP_JOB, 1, TRIGGER_WAIT_S)
    value = struct_pb2.Value.FromString(payload)
    assert json_format.MessageToDict(value) == data


def test_grpc_data_reaches_an_http_app_as_dapr_sends_it(
    http_app: tuple[str, Sink], stubs: list[dapr_pb2_grpc.DaprStub]
) -> None:
    app_id, sink = http_app
    text = wrappers_pb2.StringValue(value="raw bytes")
    raw = any_pb2.Any()
    raw.Pack(text)
    payloads = {
        unique("value"): (value_any({"x": [1, 2.5], "y": "z"}), b'{"x":[1,2.5],"y":"z"}'),
        unique("raw"): (raw, text.SerializeToString()),
        unique("none"): (None, b""),
    }
    for name, (data, _) in payloads.items():
        job = jobs_pb2.Job(name=name, due_time="1s", data=data)
        stubs[0].ScheduleJob(
            jobs_pb2.ScheduleJobRequest(job=job), metadata=as_app(app_id), timeout=RPC_TIMEOUT_S
        )
    for name, (_, expected) in payloads.items():
        (delivered,) = sink.wait_for(name, 1, TRIGGER_WAIT_S)
        headers = {key.lower(): value for key, value in delivered.headers.items()}
        assert (delivered.body, headers["content-type"]) == (expected, "application/json")
        assert headers["dapr-app-id"] == app_id
