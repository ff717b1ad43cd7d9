"""A canary for tests that try to hurt a cluster: an app whose jobs fire every second from every
node, and the check that, after whatever the test did, they still do and every node is ready.

A request that kills a node's trigger engine, stalls its event loop or costs it its lease shows
up here as a node that stops delivering the canary's jobs (each delivery names its node in the
`tock-node` header), or as a gap between two of its deliveries far longer than the period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.integration.node_helpers import App, Rig, call, steps

# Jobs of the canary each node owns: enough that a node delivers several times a second.
JOBS_PER_NODE = 4
PERIOD = "@every 1s"
# How long after the hostile request every node must still be delivering.
WINDOW_S = 3.0
# The longest a node may go without delivering a canary job: three periods. A node that loses
# its lease (1 s) or whose event loop stalls that long is not healthy.
GAP_S_MAX = 3.0
# How long past the end of the window a slow node (2 shared cores) gets to catch up.
SLACK_S = 5.0
# Candidate names tried when picking the canary's jobs by owner.
CANDIDATES_MAX = 10_000


def now_ms() -> int:
    """Wall time in ms, the clock the sink stamps each call with."""
    return time.time_ns() // 1_000_000


def names_on_every_node(app: App, stem: str, per_node: int) -> dict[str, list[str]]:
    """`per_node` job names of `app` owned by each node in the current epoch, by node id."""
    node_ids = [node.node_id for node in app.rig.cluster.nodes]
    owned: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for k in range(CANDIDATES_MAX):
        if all(len(names) == per_node for names in owned.values()):
            return owned
        name = app.name(f"{stem}-{k}")
        names = owned[app.owner(name)]
        if len(names) < per_node:
            names.append(name)
    raise AssertionError(f"{CANDIDATES_MAX} names did not give {per_node} to every node")


@dataclass
class HealthyApp:
    """An app with `JOBS_PER_NODE` jobs firing every second on each node of a rig."""

    rig: Rig
    app: App
    names: frozenset[str]

    @classmethod
    def start(cls, rig: Rig, jobs_per_node: int = JOBS_PER_NODE) -> HealthyApp:
        """Create the canary's jobs and wait until every node delivers them."""
        app = rig.app()
        since = now_ms()
        owned = names_on_every_node(app, "beat", jobs_per_node)
        for names in owned.values():
            for name in names:
                app.create(name, {"schedule": PERIOD})
        healthy = cls(rig, app, frozenset(n for names in owned.values() for n in names))
        healthy.assert_still_healthy(since)
        return healthy

    def deliveries(self, since_ms: int) -> dict[str, list[int]]:
        """The arrival times (ms) of the canary's deliveries since `since_ms`, by node id; a
        delivery that does not name a node of the cluster counts for none."""
        by_node: dict[str, list[int]] = {node.node_id: [] for node in self.rig.cluster.nodes}
        for delivered in list(self.rig.sink.calls):
            node_id = delivered.headers.get("tock-node", "")
            if delivered.name in self.names and delivered.received_ms >= since_ms:
                by_node.get(node_id, []).append(delivered.received_ms)
        return by_node

    def problems(self, since_ms: int, window_s: float = WINDOW_S) -> list[str]:
        """What is wrong with the cluster since `since_ms`, the moment before a hostile request:
        a node that delivered none of the canary's jobs in the last part of the window (until
        `window_s` after `since_ms`), a node that went more than `GAP_S_MAX` without
        delivering one, and a node not ready. An empty list is a healthy cluster."""
        window_end_ms = since_ms + round(window_s * 1000)
        deadline = max(time.time(), window_end_ms / 1000) + SLACK_S

        by_node = self.deliveries(since_ms)
        while time.time() < deadline and not all(
            times and max(times) >= window_end_ms for times in by_node.values()
        ):
            time.sleep(0.1)
            by_node = self.deliveries(since_ms)
        found: list[str] = []
        for node_id, times in sorted(by_node.items()):
            if not times:
                found.append(f"{node_id} delivered no job of the healthy app after the request")
                continue
            if max(times) < window_end_ms:
                last_s = (max(times) - since_ms) / 1000
                found.append(f"{node_id} stopped delivering {last_s:.1f} s after the request")
            gap_s = max(steps([since_ms, *sorted(times)])) / 1000
            if gap_s > GAP_S_MAX:
                found.append(f"{node_id} delivered nothing for {gap_s:.1f} s in a row")
        for node in self.rig.cluster.nodes:
            ready = call(node.url + "/v1.0/healthz/ready")
            if ready.status != 204:
                found.append(f"{node.node_id} is not ready: {ready.status} {ready.body[:200]!r}")
        return found

    def assert_still_healthy(self, since_ms: int, window_s: float = WINDOW_S) -> None:
        found = self.problems(since_ms, window_s)
        assert not found, "\n".join(found)
