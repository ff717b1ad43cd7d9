"""The `tock` command line as a user runs it, each command a real subprocess: `tock job
create|get|list|delete|pause|resume|run|history`, `tock deadletter list|redrive|delete`,
`tock export` and `tock import` and `tock status` against a real 3-process cluster, and `tock up`
itself, from its first printed line (its nodes, then where the admin token is) to SIGTERM leaving
no node process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import IO

import pytest

from node.backup import export_line, job_of_line
from node.config import NodeConfig
from tests.integration.node_helpers import App, Rig, call, running_rig, settle, wait_until
from tests.support.local_cluster import port_block
from tests.support.sink import Sink

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 30.0
UP_READY_S = 60.0
UP_STOP_S = 30.0
# The large import: enough jobs for its progress to show (a line every 10,000 jobs).
LARGE_IMPORT_JOBS = 20_000
LARGE_IMPORT_S_MAX = 90.0


def tock(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    # Only the credentials a test gives on the command line: none from the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("TOCK_ADMIN_TOKEN", "DAPR_API_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("cli")) as rig:
        yield rig


@pytest.fixture
def app(rig: Rig) -> App:
    return rig.app()


def job_cli(app: App, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`tock job ARGS` against node `node`, acting for `app`."""
    command, *rest = args
    return tock("job", command, *rest, "--node", app.rig.url(node), "--app-id", app.id)


def backup_cli(
    app: App, *args: str, timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """`tock export|import ARGS` with the cluster's admin token, which both need."""
    token_file = str(app.rig.cluster.admin_token_file)
    return tock(*args, "--admin-token-file", token_file, timeout_s=timeout_s)


def test_create_get_list_and_delete_round_trip_across_nodes(app: App) -> None:
    name = app.name("cli")
    created = job_cli(
        app,
        1,
        "create",
        name,
        "--schedule",
        "@every 1h",
        "--data",
        '{"a": [1, 2]}',
        "--failure-policy",
        "constant:2s:3",
    )
    assert (created.returncode, created.stdout.strip()) == (0, f"created {name}"), created
    got = job_cli(app, 3, "get", name)
    assert got.returncode == 0, got
    job = json.loads(got.stdout)
    assert (job["name"], job["schedule"], job["data"]) == (name, "@every 1h", {"a": [1, 2]})
    assert job["failurePolicy"] == {"constant": {"interval": "2s", "maxRetries": 3}}
    listed = job_cli(app, 2, "list", "--prefix", name[:5])
    assert [j["name"] for j in json.loads(listed.stdout)] == [name]
    deleted = job_cli(app, 2, "delete", name)
    assert (deleted.returncode, deleted.stdout.strip()) == (0, f"deleted {name}"), deleted
    missing = job_cli(app, 1, "get", name)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_a_job_created_from_the_command_line_fires(rig: Rig, app: App) -> None:
    name = app.name("fires")
    assert job_cli(app, 2, "create", name, "--due-time", "1s", "--data", '"hi"').returncode == 0
    calls = settle(rig.sink, name, 1, quiet_s=1.0, timeout_s=10)
    assert [c.body for c in calls] == [b'"hi"']


def test_errors_exit_1_with_the_message_and_change_nothing(app: App) -> None:
    name = app.name("err")
    bad = job_cli(app, 1, "create", name, "--schedule", "every day")
    assert bad.returncode == 1 and bad.stderr.startswith("error: "), bad
    assert json.loads(job_cli(app, 3, "list").stdout) == []
    assert job_cli(app, 1, "create", name, "--schedule", "@daily").returncode == 0
    conflict = job_cli(app, 2, "create", name, "--schedule", "@hourly")
    assert conflict.returncode == 1 and name in conflict.stderr, conflict
    overwrite = job_cli(app, 3, "create", name, "--schedule", "@hourly", "--overwrite")
    assert overwrite.returncode == 0, overwrite
    assert json.loads(job_cli(app, 1, "get", name).stdout)["schedule"] == "@hourly"
    usage = job_cli(app, 1, "create", name, "--failure-policy", "sometimes")
    assert usage.returncode == 2 and "drop, constant:INTERVAL" in usage.stderr, usage


def test_job_operations_from_the_command_line_across_nodes(app: App) -> None:
    name = app.name("ops")
    created = job_cli(
        app, 1, "create", name, "--schedule", "@every 1h", "--jitter", "1s",
        "--delivery-timeout", "2s", "--failure-policy", "exponential:1s:1m:2:3",
    )  # fmt: skip
    assert created.returncode == 0, created
    job = json.loads(job_cli(app, 2, "get", name).stdout)
    assert (job["jitter"], job["deliveryTimeout"]) == ("1s", "2s")
    assert job["failurePolicy"] == {
        "exponential": {
            "initialInterval": "1s",
            "maxInterval": "60s",
            "multiplier": 2.0,
            "maxRetries": 3,
        }
    }
    for node, command, done in ((2, "pause", "paused"), (2, "pause", "paused")):
        answer = job_cli(app, node, command, name)
        assert (answer.returncode, answer.stdout) == (0, f"{done} {name}\n"), answer
    assert json.loads(job_cli(app, 3, "get", name).stdout)["status"]["paused"] is True
    assert job_cli(app, 3, "resume", name).stdout == f"resumed {name}\n"
    status = json.loads(job_cli(app, 1, "get", name).stdout)["status"]
    assert status["paused"] is False and status["nextTrigger"] == job["status"]["nextTrigger"]
    assert job_cli(app, 1, "run", name).stdout == f"running {name}\n"
    history = job_cli(app, 2, "history", name, "--limit", "5")
    assert history.returncode == 0, history
    attempts = json.loads(history.stdout)
    assert isinstance(attempts, list) and len(attempts) <= 5
    for command in ("pause", "resume", "run", "history"):
        missing = job_cli(app, 3, command, app.name("ghost"))
        assert missing.returncode == 1 and "job not found" in missing.stderr, missing


def test_dead_letter_commands_answer_for_the_app(app: App) -> None:
    def letter_cli(node: int, *args: str) -> subprocess.CompletedProcess[str]:
        command, *rest = args
        return tock("deadletter", command, *rest, "--node", app.rig.url(node), "--app-id", app.id)

    listed = letter_cli(1, "list", "--prefix", "x")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, []), listed
    unknown = f"1:{uuid.uuid4().hex}"
    redrive = letter_cli(2, "redrive", unknown)
    assert redrive.returncode == 1 and "dead letter not found" in redrive.stderr, redrive
    forget = letter_cli(3, "delete", unknown)
    assert (forget.returncode, forget.stdout) == (0, f"deleted {unknown}\n"), forget
    bad = letter_cli(3, "delete", "x" * 65)
    assert bad.returncode == 1 and bad.stderr.startswith("error: "), bad


def test_export_to_a_file_and_stdout_then_import_it_back(app: App, tmp_path: Path) -> None:
    names = sorted(app.name(stem) for stem in ("b", "a", "c"))
    for name in names:
        app.create(name, {"schedule": "@every 1h", "data": {"name": name}})
    assert job_cli(app, 1, "pause", names[1]).returncode == 0
    before = {name: app.get(name, node=2).json for name in names}
    path = tmp_path / "jobs.ndjson"
    exported = backup_cli(app, "export", str(path), "--node", app.rig.url(1), "--app", app.id)
    assert (exported.returncode, exported.stdout) == (0, f"exported 3 jobs to {path}\n"), exported
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["name"] for line in lines] == names
    to_stdout = backup_cli(
        app, "export", "--node", app.rig.url(3), "--app", app.id, "--prefix", names[1]
    )
    assert to_stdout.stdout.encode() == lines[1] + b"\n", to_stdout

    assert call(f"{app.rig.url(1)}/v1.0/jobs?prefix=", "DELETE", headers=app.headers).status == 200
    imported = backup_cli(app, "import", str(path), "--node", app.rig.url(2))
    assert (imported.returncode, imported.stdout) == (0, "imported 3, skipped 0\n"), imported
    assert imported.stderr == ""
    assert {name: app.get(name, node=3).json for name in names} == before
    again = backup_cli(app, "import", str(path), "--node", app.rig.url(3))
    assert again.stdout == "imported 0, skipped 3\n", again
    overwrite = backup_cli(app, "import", str(path), "--overwrite", "--node", app.rig.url(1))
    assert overwrite.stdout == "imported 3, skipped 0\n", overwrite

    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(lines[0] + b"\n{}\n")
    refused = backup_cli(app, "import", str(bad), "--node", app.rig.url(1))
    assert refused.returncode == 1 and "import line 2" in refused.stderr, refused


def test_a_large_import_shows_its_progress(app: App, tmp_path: Path) -> None:
    template = app.name("template")
    app.create(template, {"schedule": "@every 24h"})
    line = backup_cli(app, "export", "--node", app.rig.url(1), "--app", app.id).stdout.encode()
    job = job_of_line(line, 1)
    path = tmp_path / "large.ndjson"
    with path.open("wb") as file:
        for k in range(LARGE_IMPORT_JOBS):
            name = f"bulk-{k:05d}"
            copy = job._replace(name=name, spec=job.spec._replace(name=name), uid=f"{k}")
            file.write(export_line(copy))
    # Larger than any request body the node reads whole: the import must stream it.
    body_bytes_max = next(f.default for f in fields(NodeConfig) if f.name == "body_bytes_max")
    assert isinstance(body_bytes_max, int) and path.stat().st_size > body_bytes_max
    try:
        answer = backup_cli(
            app, "import", str(path), "--node", app.rig.url(2), timeout_s=LARGE_IMPORT_S_MAX
        )
        assert answer.stdout == f"imported {LARGE_IMPORT_JOBS}, skipped 0\n", answer
        progress = answer.stderr.splitlines()
        assert len(progress) == 2, answer.stderr
        for shown, jobs in zip(progress, (10_000, 20_000), strict=True):
            assert shown.startswith("import: ") and " jobs sent (" in shown, shown
            assert int(shown.split()[1]) >= jobs, shown
        assert progress[-1].endswith("MiB, 100%)"), progress
        count = call(
            f"{app.rig.url(3)}/admin/cluster", headers=app.rig.cluster.admin_headers()
        ).json["jobs"]
        assert count >= LARGE_IMPORT_JOBS + 1, count
    finally:
        deleted = call(f"{app.rig.url(1)}/v1.0/jobs?prefix=bulk-", "DELETE", headers=app.headers)
        assert deleted.status == 200, deleted


def test_status_prints_the_node_and_every_member(rig: Rig) -> None:
    token_file = str(rig.cluster.admin_token_file)
    answer = tock("status", "--node", rig.url(2), "--admin-token-file", token_file)
    assert answer.returncode == 0, answer
    lines = answer.stdout.splitlines()
    assert lines[0].split() == ["node", "n2"]
    leader = next(line.split()[1] for line in lines if line.startswith("leader"))
    assert leader in {"n1", "n2", "n3"}
    header = next(i for i, line in enumerate(lines) if line.startswith("MEMBER"))
    members = {line.split()[0]: line.split() for line in lines[header + 1 :]}
    assert set(members) == {"n1", "n2", "n3"}, answer.stdout
    assert all(row[3] == "yes" for row in members.values()), answer.stdout


def test_status_without_the_admin_token_exits_1(rig: Rig, tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("not-the-admin-token")
    for where in ([], ["--data-dir", str(tmp_path)]):
        answer = tock("status", "--node", rig.url(1), *where)
        assert answer.returncode == 1 and "admin token" in answer.stderr, answer


def test_status_of_an_unreachable_node_exits_1() -> None:
    port = port_block(1)
    answer = tock("status", "--node", f"http://127.0.0.1:{port}")
    assert answer.returncode == 1 and "cannot reach" in answer.stderr, answer


# -- tock up ---------------------------------------------------------------------------------


class Lines:
    """The lines a subprocess prints, read by a thread so that waits can be bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def next(self, timeout_s: float) -> str:
        try:
            return self._queue.get(timeout=timeout_s).rstrip("\n")
        except queue.Empty:
            raise AssertionError(f"no line within {timeout_s} s") from None


def test_tock_up_prints_its_nodes_registers_the_app_and_stops_every_node(tmp_path: Path) -> None:
    sink = Sink().start()
    base = port_block(45)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "node.cli", "up", "--nodes", "3", "--data-dir", str(tmp_path)),
            *("--http-port", str(base), "--raft-port", str(base + 15)),
            *("--grpc-port", str(base + 30), "--app-url", sink.url, "--time-zone", "UTC"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        # Its own process group, which its nodes join: the cleanup can reach all of them.
        start_new_session=True,
    )
    try:
        lines = Lines(process)
        # One line per node: `n1 http://HOST:PORT raft HOST:PORT grpc HOST:PORT pid PID`.
        nodes = [lines.next(UP_READY_S).split() for _ in range(3)]
        pids = []
        for k, (node_id, http, *pairs) in enumerate(nodes, start=1):
            assert (node_id, http) == (f"n{k}", f"http://127.0.0.1:{base + k - 1}"), nodes
            fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
            assert fields["raft"] == f"127.0.0.1:{base + 15 + k - 1}", nodes
            assert fields["grpc"] == f"127.0.0.1:{base + 30 + k - 1}", nodes
            pids.append(int(fields["pid"]))
        token_file = tmp_path / "admin-token"
        assert lines.next(UP_READY_S) == f"admin token: {token_file}"
        ready = lines.next(UP_READY_S)
        assert ready in {f"ready: leader n{k}" for k in (1, 2, 3)}, ready
        for credential in ("admin-token", "secret"):
            assert stat.S_IMODE((tmp_path / credential).stat().st_mode) == 0o600, credential

        node2 = f"http://127.0.0.1:{base + 1}"
        # The admin routes need the generated token; the client commands find it in the dir.
        assert call(node2 + "/admin/cluster").status == 401
        admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert call(node2 + "/admin/cluster", headers=admin).status == 200
        status = tock("status", "--node", node2, "--data-dir", str(tmp_path))
        assert status.returncode == 0 and status.stdout.startswith("node       n2"), status
        assert call(node2 + "/v1.0/apps/default").json == {"url": sink.url, "hasToken": False}
        answer = call(node2 + "/v1.0/jobs/hello", "POST", {"dueTime": "1s"})
        assert answer.status == 204, answer
        assert len(sink.wait_for("hello", 1, timeout_s=10)) == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(UP_STOP_S) == 0
        wait_until(lambda: not any(_alive(pid) for pid in pids), 10, f"node pids {pids} gone")
    finally:
        # Even when an assertion failed: ask tock up to stop its nodes, then make sure that
        # nothing of its process group outlives the test (a leaked node would hold its ports).
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(UP_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        assert process.stdout is not None
        process.stdout.close()
        sink.stop()


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
