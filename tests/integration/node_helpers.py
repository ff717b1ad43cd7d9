"""What the node integration tests share: a real 3-process cluster with a real recording app,
plain HTTP calls to any node, the owner of a job, and the time headers of a delivered trigger.

Every test acts for an app id of its own (`App`), so tests sharing one cluster and one sink
never see each other's jobs; job names are unique per test for the same reason, because the
sink records calls by name.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cluster.local import LocalCluster
from cluster.membership import MembershipConfig
from cluster.ring import Ring
from store.partition import partition_of
from tests.support.local_cluster import running_cluster
from tests.support.sink import Call, Sink

# Every node runs with the default partition count unless a test says otherwise.
PARTITIONS = 1024
HTTP_TIMEOUT_S = 15.0
# The node's membership timings (cluster/membership.py MembershipConfig): a dead node's
# partitions move after `DEAD_S`, and the new owner fires once its own lease holds.
DEAD_S = MembershipConfig().dead_s


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def call(
    url: str,
    method: str = "GET",
    body: object = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP request; error statuses are answers too. A `bytes` body is sent as it is."""
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
            return Answer(reply.status, reply.read(), dict(reply.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


class Script:
    """The sink's answers per job name: `fail(name, times, status)` answers `status` to the
    first `times` calls of `name` and 200 after; a name never scripted always gets 200."""

    def __init__(self) -> None:
        self._rules: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def fail(self, name: str, times: int, status: int = 500) -> None:
        with self._lock:
            self._rules[name] = (times, status)

    def status_for(self, name: str, call_number: int) -> int:
        with self._lock:
            times, status = self._rules.get(name, (0, 200))
        return status if call_number <= times else 200


@dataclass
class Rig:
    """A running cluster, the app that receives its triggers and that app's scripted answers."""

    cluster: LocalCluster
    sink: Sink
    script: Script

    def url(self, node: int) -> str:
        """The base URL of node `node` (1-based, as the node ids n1, n2, ...)."""
        return self.cluster.nodes[node - 1].url

    def app(self) -> App:
        """A fresh app id, registered to send its triggers to the sink."""
        app = App(self, f"app-{uuid.uuid4().hex[:8]}")
        answer = app.call(1, "PUT", f"/v1.0/apps/{app.id}", {"url": self.sink.url})
        assert answer.status == 204, answer
        return app


@dataclass
class App:
    """Requests to any node of a rig on behalf of one app id."""

    rig: Rig
    id: str
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"dapr-app-id": self.id}

    def name(self, stem: str) -> str:
        """A job name no other test uses (the sink tells calls apart by name only)."""
        return f"{stem}-{self.id}"

    def call(self, node: int, method: str, path: str, body: object = None) -> Answer:
        return call(self.rig.url(node) + path, method, body, self.headers)

    def create(self, name: str, body: object, node: int = 1) -> None:
        answer = self.call(node, "POST", f"/v1.0/jobs/{name}", body)
        assert answer.status == 204, answer

    def get(self, name: str, node: int = 1) -> Answer:
        return self.call(node, "GET", f"/v1.0/jobs/{name}")

    def names(self, node: int) -> list[str]:
        answer = self.call(node, "GET", "/v1.0/jobs")
        assert answer.status == 200, answer
        return [job["name"] for job in answer.json["jobs"]]

    def owner(self, name: str, node: int = 1) -> str:
        """The node that fires `name` in the current epoch, as node `node` sees the cluster."""
        status = cluster_status(self.rig.cluster, node)
        live = [m["id"] for m in status["members"] if m["alive"]]
        ring = Ring(live, PARTITIONS)
        # The node's own partition counts must match the ring rebuilt here, or the answer
        # below would be a guess.
        assert {m["id"]: m["partitions"] for m in status["members"] if m["alive"]} == {
            member: len(ring.partitions_of(member)) for member in live
        }, status
        owner = ring.owner(partition_of("default", self.id, name, PARTITIONS))
        assert owner is not None, status
        return owner


def cluster_status(cluster: LocalCluster, node: int) -> dict[str, Any]:
    """GET /admin/cluster of node `node` (1-based), with the cluster's admin token."""
    url = cluster.nodes[node - 1].url
    answer = call(url + "/admin/cluster", headers=cluster.admin_headers())
    assert answer.status == 200, answer
    status: dict[str, Any] = answer.json
    return status


@contextmanager
def running_rig(
    data_dir: Path,
    node_args: tuple[str, ...] = (),
    open_api: bool = True,
    command_prefix: Callable[[str], list[str]] | None = None,
) -> Iterator[Rig]:
    """A ready 3-node cluster and a started sink; both are always stopped."""
    script = Script()
    sink = Sink(status_for=script.status_for).start()
    try:
        with running_cluster(
            data_dir, node_args=node_args, open_api=open_api, command_prefix=command_prefix
        ) as cluster:
            yield Rig(cluster, sink, script)
    finally:
        sink.stop()


def rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC3339 time such as 2026-01-02T03:04:05.678Z."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def scheduled_ms(call_: Call) -> int:
    return rfc3339_ms(call_.headers["tock-scheduled-time"])


def steps(values: list[int]) -> list[int]:
    """The differences between successive values: the spacing of times."""
    return [b - a for a, b in itertools.pairwise(values)]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `check` every 0.1 s until it holds; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def settle(sink: Sink, name: str, count: int, quiet_s: float, timeout_s: float) -> list[Call]:
    """The calls of `name` once at least `count` came and then none for `quiet_s` (all bounded
    by `timeout_s`): for checking that nothing arrives beyond the expected count."""
    deadline = time.monotonic() + timeout_s
    seen = len(sink.wait_for(name, count, timeout_s))
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = len(sink.calls_for(name))
        if now == seen:
            break
        seen = now
    return sink.calls_for(name)
