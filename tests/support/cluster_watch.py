"""Watching a real cluster from a test: its nodes' /admin/cluster views, who owns what, and
the jobs API, all through plain blocking HTTP (the cluster tests are synchronous).

`ElectionLog` records every status poll and checks Raft's election safety as a client sees it:
no two nodes are leader in one term. `owners(view)` rebuilds a view's partition table with the
ring every node uses, so a test can name the owner a delivery should have come from.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from cluster.local import LocalCluster
from cluster.ring import Ring
from store.partition import partition_of

T = TypeVar("T")
View = dict[str, Any]
PARTITIONS = 1024
POLL_S = 0.1
HTTP_TIMEOUT_S = 5.0


def call(
    url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None
) -> Any:
    """One JSON request; the decoded answer (None for an empty one). Raises HTTPError."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
        text = reply.read()
    return json.loads(text) if text else None


def create_job(node_url: str, name: str, **fields: object) -> None:
    call(f"{node_url}/v1.0/jobs/{name}", "POST", fields)


def register_app(node_url: str, app_url: str) -> None:
    call(f"{node_url}/v1.0/apps/default", "PUT", {"url": app_url})


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(POLL_S)


class ElectionLog:
    """Every node's answers to /admin/cluster, and which node was leader in which term."""

    def __init__(self) -> None:
        self.leaders_by_term: dict[int, set[str]] = defaultdict(set)
        self.polls = 0

    def views(self, cluster: LocalCluster, nodes: list[str] | None = None) -> dict[str, View]:
        """The views of the given (default: running) nodes that answer, recorded."""
        wanted = nodes or [node.node_id for node in cluster.nodes if node.running()]
        views: dict[str, View] = {}
        for node_id in wanted:
            try:
                views[node_id] = cluster.cluster_status(node_id)
            except (OSError, urllib.error.URLError, ValueError):
                continue
            self.record(views[node_id])
        return views

    def record(self, view: View) -> None:
        self.polls += 1
        if view["role"] == "leader":
            self.leaders_by_term[view["term"]].add(view["node"])
        if view["leader"] is not None:
            self.leaders_by_term[view["term"]].add(view["leader"])

    def assert_one_leader_per_term(self) -> None:
        split = {term: ids for term, ids in self.leaders_by_term.items() if len(ids) > 1}
        assert not split, f"two leaders in one term: {split}"

    def agreed(
        self,
        cluster: LocalCluster,
        nodes: list[str],
        timeout_s: float,
        what: str = "",
        also: Callable[[View], bool] = lambda view: True,
    ) -> dict[str, View]:
        """Wait until `nodes` are ready, agree on one epoch and member table, all of them are
        live in it and it satisfies `also`; return their views."""

        def probe() -> dict[str, View] | None:
            views = self.views(cluster, nodes)
            if len(views) != len(nodes) or not all(v["ready"] for v in views.values()):
                return None
            if len({json.dumps([v["epoch"], v["members"]]) for v in views.values()}) != 1:
                return None
            view = next(iter(views.values()))
            return views if set(nodes) <= live(view) and also(view) else None

        return wait_until(probe, timeout_s, what or f"{nodes} agree on one epoch, all live")


def live(view: View) -> set[str]:
    return {member["id"] for member in view["members"] if member["alive"]}


def owners(view: View) -> tuple[str, ...]:
    """The owner of every partition in the view's epoch, as every node computes it."""
    return Ring(live(view), PARTITIONS).owners


def owner_of(view: View, name: str) -> str:
    """The node that owns job `name` (namespace and app "default") in the view's epoch."""
    return owners(view)[partition_of("default", "default", name, PARTITIONS)]
