"""A node whose disk fills up stops acknowledging, reports not ready while the others go on,
and recovers on its own once space returns.

Method: n3's Raft directory is a real 64 MiB tmpfs, mounted in a mount namespace of n3's own
(`unshare -m`, so nothing outside the test sees it); the test reaches it through
/proc/<pid>/root. A ballast file fills it until the kernel answers ENOSPC. Then: creates through
n1 still succeed (n1 and n2 are a majority), n3 answers not ready naming the full disk, and no
create through n3 is acknowledged. The ballast is removed: n3 becomes ready again by itself and
serves, from its own state, every job created while its disk was full.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from tests.integration.node_helpers import App, call, running_rig, wait_until

TMPFS_SIZE = "64m"
RECOVER_S = 60.0
FAILOVER_S = 20.0
JOBS_WHILE_FULL = 30


def own_tmpfs(raft_dir: Path) -> Callable[[str], list[str]]:
    """n3's command runs in a mount namespace of its own with a tmpfs on its Raft directory."""
    mount = f'mkdir -p "$0" && mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs "$0"'
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount + ' && exec "$@"']
    return lambda node_id: [*command, str(raft_dir)] if node_id == "n3" else []


def fill(directory: Path) -> Path:
    """Write a ballast file until the filesystem is full; the ballast's path."""
    ballast = directory / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb", buffering=0) as file:
        try:
            while True:
                file.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        try:  # fill the last partial MiB too
            while True:
                file.write(b"\0" * 4096)
        except OSError:
            pass
    return ballast


def metrics(cluster: LocalCluster, url: str) -> str:
    answer = call(url + "/metrics", headers=cluster.admin_headers())
    assert answer.status == 200, answer
    return answer.body.decode()


def create_with_retry(app: App, node: int, name: str, deadline_s: float) -> None:
    """Create through node; a 503 (a leader change under way) is tried again until deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        answer = app.call(node, "POST", f"/v1.0/jobs/{name}", {"schedule": "@daily"})
        if answer.status == 204:
            return
        assert answer.status == 503 and time.monotonic() < deadline, answer
        time.sleep(0.2)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a tmpfs in a mount namespace of the node's own",
)
def test_a_full_disk_stops_acks_on_that_node_only_and_it_recovers(tmp_path: Path) -> None:
    raft_dir = tmp_path / "n3" / "raft"
    with running_rig(tmp_path, command_prefix=own_tmpfs(raft_dir)) as rig:
        app = rig.app()
        n3 = rig.cluster.node("n3")
        assert n3.pid is not None
        seen_by_n3 = Path(f"/proc/{n3.pid}/root") / raft_dir.relative_to("/")
        before = app.name("before")
        app.create(before, {"schedule": "@daily"}, node=3)

        ballast = fill(seen_by_n3)
        names = [app.name(f"full{k}") for k in range(JOBS_WHILE_FULL)]
        for name in names:
            create_with_retry(app, 1, name, FAILOVER_S)
        wait_until(
            lambda: (
                "cannot write its Raft journal"
                in app.call(3, "GET", "/v1.0/healthz/ready").body.decode()
            ),
            RECOVER_S,
            "n3 to report its full disk",
        )
        for k in range(5):
            body = {"schedule": "@daily"}
            answer = app.call(3, "POST", f"/v1.0/jobs/{app.name(f'refused{k}')}", body)
            assert answer.status == 503, "n3 acknowledged a write it cannot make durable"
            assert b"cannot write its Raft journal" in answer.body, answer
        assert app.call(1, "GET", "/v1.0/healthz/ready").status == 204
        assert "tock_raft_disk_failing 1.0" in metrics(rig.cluster, n3.url)

        ballast.unlink()
        started = time.monotonic()
        wait_until(
            lambda: app.call(3, "GET", "/v1.0/healthz/ready").status == 204,
            RECOVER_S,
            "n3 ready again once space returned",
        )
        print(f"n3 ready {time.monotonic() - started:.1f} s after its disk had space again")
        for name in [before, *names]:
            assert app.get(name, node=3).status == 200, name
        text = metrics(rig.cluster, n3.url)
        assert "tock_raft_disk_failing 0.0" in text
        assert "tock_raft_disk_failures_total 1.0" in text
