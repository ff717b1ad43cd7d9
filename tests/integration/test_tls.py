"""TLS on a real 3-process cluster whose certificates come from a CA made in its data dir (as
`tock up --tls` makes them), with real TLS clients: the Jobs API over HTTPS (aiohttp, curl, the
`tock` command line), the gRPC API over a secure channel (grpcio and the official Dapr SDK), a
trigger delivered to an `https://` app and one forwarded between nodes to a watch stream, and the
plain protocols refused on the TLS ports.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, jobs_pb2

from cluster.certificates import CertificateAuthority
from cluster.local import LocalCluster
from node.client.client import TockClient
from store.errors import JobNotFound, Unavailable
from tests.integration.grpc_helpers import RPC_TIMEOUT_S, as_app, json_of, value_any
from tests.integration.test_node_cli import REPO, Lines, tock
from tests.integration.test_watch_stream_cluster import names_owned_by
from tests.support.local_cluster import port_block, running_cluster
from tests.support.sink import Sink

SCENARIO_S = 60.0
DELIVERY_S = 15.0
UP_READY_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    data_dir = tmp_path_factory.mktemp("tls")
    # The cluster makes its CA at this path when it starts; its nodes trust it for apps too.
    app_ca = data_dir / "tls" / "ca.pem"
    with running_cluster(data_dir, node_args=("--app-ca-file", str(app_ca)), tls=True) as cluster:
        assert cluster.ca_file == app_ca
        yield cluster


@pytest.fixture(scope="module")
def ca_file(cluster: LocalCluster) -> Path:
    assert cluster.ca_file is not None
    return cluster.ca_file


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def server_context(files_dir: Path, authority: CertificateAuthority, name: str) -> ssl.SSLContext:
    """An HTTPS server's context with a certificate for 127.0.0.1 that `authority` signed."""
    files = authority.issue(files_dir, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


# -- the Jobs API over HTTPS -------------------------------------------------------------------


def test_the_jobs_api_round_trips_over_https_with_aiohttp(
    cluster: LocalCluster, ca_file: Path
) -> None:
    name = unique("https")

    async def go() -> None:
        async with (
            TockClient(cluster.nodes[0].url, "tls-app", ca_file=ca_file) as one,
            TockClient(cluster.nodes[2].url, "tls-app", ca_file=ca_file) as three,
        ):
            await one.create(name, schedule="@every 1h", data={"a": 1})
            job = await three.get(name)
            assert (job["schedule"], job["data"]) == ("@every 1h", {"a": 1})
            assert [listed["name"] for listed in await three.list_all(name)] == [name]
            await three.delete(name)
            with pytest.raises(JobNotFound):
                await one.get(name)
        # A client that does not trust the cluster's CA refuses the node's certificate.
        async with TockClient(cluster.nodes[0].url, "tls-app") as untrusting:
            with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(name)

    asyncio.run(asyncio.wait_for(go(), SCENARIO_S))


def test_the_jobs_api_round_trips_over_https_with_curl(
    cluster: LocalCluster, ca_file: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not on PATH: the curl round trip needs the curl command")
    base = cluster.nodes[1].url
    path = f"/v1.0/jobs/{unique('curl')}"

    def curl_call(method: str, body: object = None, trusted: bool = True) -> tuple[int, str, str]:
        """(curl's exit status, the HTTP status, the body) of one request."""
        args = [curl, "-sS", "--max-time", "15", "-X", method, "-w", "\n%{http_code}"]
        args += ["-H", "dapr-app-id: curl-app"]
        if trusted:
            args += ["--cacert", str(ca_file)]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data", json.dumps(body)]
        done = subprocess.run(
            [*args, base + path], capture_output=True, text=True, timeout=30, check=False
        )
        answer, _, status = done.stdout.rpartition("\n")
        return done.returncode, status, answer

    assert curl_call("POST", {"schedule": "@every 1h", "data": "x"})[:2] == (0, "204")
    exit_status, status, answer = curl_call("GET")
    assert (exit_status, status, json.loads(answer)["data"]) == (0, "200", "x")
    # curl's own store does not hold the cluster's CA: "SSL certificate problem" (60).
    assert curl_call("GET", trusted=False)[0] == 60
    assert curl_call("DELETE")[:2] == (0, "204")
    assert curl_call("GET")[1] == "404"


def test_the_command_line_takes_the_ca_file(cluster: LocalCluster, ca_file: Path) -> None:
    node = cluster.nodes[0].url
    token = ("--admin-token-file", str(cluster.admin_token_file))
    status = tock("status", "--node", node, "--ca-file", str(ca_file), *token)
    assert status.returncode == 0, status
    assert status.stdout.splitlines()[0] == "node       n1", status.stdout
    name = unique("cli")
    created = tock(
        "job", "create", name, "--due-time", "1h", "--node", node, "--ca-file", str(ca_file)
    )
    assert (created.returncode, created.stdout.strip()) == (0, f"created {name}"), created
    untrusting = tock("status", "--node", node, *token)
    assert untrusting.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusting.stderr, untrusting.stderr


def test_a_node_refuses_plain_http_on_its_tls_port(cluster: LocalCluster, ca_file: Path) -> None:
    node = cluster.nodes[0]
    host, _, port = node.http.rpartition(":")
    name = unique("plain")
    request = (
        f"POST /v1.0/jobs/{name} HTTP/1.1\r\nHost: {node.http}\r\ncontent-type: "
        'application/json\r\ncontent-length: 17\r\n\r\n{"dueTime": "1h"}'
    )
    received = b""
    with socket.create_connection((host, int(port)), timeout=5) as plain:
        plain.sendall(request.encode())
        try:
            while chunk := plain.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    # At most a TLS alert, never an HTTP answer; the connection is closed.
    assert not received.startswith(b"HTTP/"), received[:100]
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        urllib.request.urlopen(f"http://{node.http}/v1.0/healthz", timeout=5)

    async def nothing_was_created() -> None:
        async with TockClient(node.url, ca_file=ca_file) as client:
            assert await client.ready()
            with pytest.raises(JobNotFound):
                await client.get(name)

    asyncio.run(asyncio.wait_for(nothing_was_created(), SCENARIO_S))


# -- the gRPC API over TLS ---------------------------------------------------------------------


def test_the_grpc_api_over_a_secure_channel(cluster: LocalCluster, ca_file: Path) -> None:
    name = unique("grpc-tls")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
    with grpc.secure_channel(cluster.nodes[0].grpc, credentials) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
        job = jobs_pb2.Job(name=name, schedule="@every 1h", data=value_any({"k": 1}))
        stub.ScheduleJob(
            jobs_pb2.ScheduleJobRequest(job=job), metadata=as_app("grpc-tls"), timeout=RPC_TIMEOUT_S
        )
        got = stub.GetJob(
            jobs_pb2.GetJobRequest(name=name), metadata=as_app("grpc-tls"), timeout=RPC_TIMEOUT_S
        )
        assert (got.job.schedule, json_of(got.job.data)) == ("@every 1h", {"k": 1})
    # A plain channel to the TLS port never gets an answer.
    with grpc.insecure_channel(cluster.nodes[0].grpc) as plain:
        plain_stub = dapr_pb2_grpc.DaprStub(plain)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            plain_stub.GetJob(jobs_pb2.GetJobRequest(name=name), timeout=5)
        error: grpc.RpcError = refused.value
        assert error.code() is grpc.StatusCode.UNAVAILABLE


SDK_SCRIPT = """
import json, sys
from dapr.clients import DaprClient
from dapr.clients.grpc._jobs import Job
from google.protobuf import any_pb2, wrappers_pb2

name = sys.argv[1]
data = any_pb2.Any()
data.Pack(wrappers_pb2.StringValue(value="over tls"))
with DaprClient() as client:
    client.schedule_job(Job(name=name, schedule="@every 1h", data=data))
    job = client.get_job(name)
    print(json.dumps({"name": job.name, "schedule": job.schedule}))
"""


def test_the_official_sdk_over_tls(cluster: LocalCluster, ca_file: Path) -> None:
    """The SDK speaks TLS to an `https://` endpoint and trusts what grpcio and OpenSSL trust:
    the CA is given to it through their environment variables, in a process of its own (grpcio
    reads its roots once per process)."""
    node = cluster.nodes[2]
    name = unique("sdk-tls")
    env = {
        **os.environ,
        "DAPR_GRPC_ENDPOINT": f"https://{node.grpc}",
        "DAPR_HTTP_ENDPOINT": f"https://{node.http}",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca_file),
        "SSL_CERT_FILE": str(ca_file),
        "DAPR_HEALTH_TIMEOUT": "20",
    }
    done = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT, name],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": name, "schedule": "@every 1h"}


# -- triggers over TLS -------------------------------------------------------------------------


def test_a_trigger_reaches_an_https_app_whose_certificate_the_app_ca_file_trusts(
    cluster: LocalCluster, ca_file: Path, tmp_path: Path
) -> None:
    trusted = Sink(tls=server_context(tmp_path, CertificateAuthority(ca_file.parent), "app"))
    other_ca = CertificateAuthority(tmp_path / "other-ca")
    stranger = Sink(tls=server_context(tmp_path, other_ca, "stranger"))
    trusted.start()
    stranger.start()
    name = unique("https-app")
    try:

        async def go() -> None:
            for app, sink in (("trusted-app", trusted), ("stranger-app", stranger)):
                async with TockClient(cluster.nodes[1].url, app, ca_file=ca_file) as client:
                    await client.register_app(sink.url)
                    await client.create(name, due_time="1s")

        asyncio.run(asyncio.wait_for(go(), SCENARIO_S))
        (call,) = trusted.wait_for(name, 1, DELIVERY_S)
        assert trusted.url.startswith("https://127.0.0.1:")
        assert call.headers["dapr-app-id"] == "trusted-app"
        # The stranger's job came due at the same time: its certificate did not check, so no
        # request reached it, then or on a retry.
        time.sleep(3)
        assert stranger.calls == []
    finally:
        trusted.stop()
        stranger.stop()


def test_a_trigger_is_forwarded_between_nodes_over_https(
    cluster: LocalCluster, ca_file: Path
) -> None:
    app = unique("watch-app")
    (name,) = names_owned_by(cluster, app, "n2", 1)

    async def go() -> None:
        async with (
            TockClient(cluster.nodes[0].url, app, ca_file=ca_file) as client,
            client.watch() as stream,
        ):
            await client.create(name, due_time="1s")
            async with asyncio.timeout(DELIVERY_S):
                batch = await anext(stream)
            assert [trigger.name for trigger in batch] == [name]
            await stream.ack((trigger.id, "SUCCESS") for trigger in batch)

    asyncio.run(asyncio.wait_for(go(), SCENARIO_S))


# -- the files ---------------------------------------------------------------------------------


def test_keys_are_readable_by_their_owner_only(cluster: LocalCluster) -> None:
    keys = sorted(cluster.data_dir.rglob("*.key"))
    assert [key.relative_to(cluster.data_dir).as_posix() for key in keys] == [
        "n1/tls/node.key",
        "n2/tls/node.key",
        "n3/tls/node.key",
        "tls/ca.key",
    ]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700, key.parent


def test_tock_up_tls_serves_https_and_prints_the_ca(tmp_path: Path) -> None:
    # One node: one port of each kind, three in a row.
    http = port_block(3)
    raft, grpc_port = http + 1, http + 2
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "node.cli", "up", "--tls", "--nodes", "1"),
            *("--data-dir", str(tmp_path), "--http-port", str(http)),
            *("--raft-port", str(raft), "--grpc-port", str(grpc_port)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        lines = Lines(process)
        assert lines.next(UP_READY_S).split()[:2] == ["n1", f"https://127.0.0.1:{http}"]
        printed: list[str] = []
        while not (printed and printed[-1].startswith("ready:")):
            printed.append(lines.next(UP_READY_S))
        assert f"CA (for --ca-file): {tmp_path / 'tls' / 'ca.pem'}" in printed, printed
        assert printed[-1] == "ready: leader n1", printed
        status = tock(
            "status",
            "--node",
            f"https://127.0.0.1:{http}",
            "--ca-file",
            f"{tmp_path}/tls/ca.pem",
            "--admin-token-file",
            f"{tmp_path}/admin-token",
        )
        assert status.returncode == 0, status
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
