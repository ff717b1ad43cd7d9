"""Add a 4th node to a running cluster and remove it again, while jobs fire and are created.

Method: 24 jobs repeat every second (12 times each) across all partitions, and a background
thread creates a one-shot job every 200 ms through the original nodes. `add_node` joins n4
(added through POST /admin/members, started with every member as a peer); once every node
agrees on an epoch with n4 live and owning partitions, n4 must deliver the jobs the ring gives
it. `remove_node` takes it out (DELETE /admin/members/n4, then a clean stop) and the three
agree on an epoch without it. At the end every create succeeded, every one-shot job fired
once, and every repeating job fired exactly 12 distinct occurrences, each once: a membership
change is not a fault, so it may neither lose nor duplicate an occurrence.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections import Counter

from cluster.local import LocalCluster
from tests.support.cluster_watch import (
    PARTITIONS,
    ElectionLog,
    create_job,
    live,
    owner_of,
    register_app,
)
from tests.support.sink import Sink

NODES = ["n1", "n2", "n3"]
REPEATING_JOBS = 24
REPEATS = 12
CREATE_EVERY_S = 0.2
AGREE_TIMEOUT_S = 30.0
HOLD_S = 3.0
FIRE_TIMEOUT_S = 30.0
SETTLE_S = 2.0


class Creator:
    """Creates `live-{k}` one-shot jobs every CREATE_EVERY_S through the original nodes."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.urls = [cluster.node(node).url for node in NODES]
        self.created: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Creator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(CREATE_EVERY_S):
            name = f"live-{k}"
            try:
                create_job(self.urls[k % len(self.urls)], name, dueTime="1s")
                self.created.append(name)
            except (urllib.error.URLError, OSError) as error:
                self.errors.append(f"{name}: {error}")
            k += 1


def test_a_fourth_node_joins_and_leaves_under_load(cluster: LocalCluster, sink: Sink) -> None:
    log = ElectionLog()
    leader = cluster.wait_ready(AGREE_TIMEOUT_S)
    register_app(cluster.node(leader).url, sink.url)
    repeating = [f"every-{k}" for k in range(REPEATING_JOBS)]
    for name in repeating:
        create_job(cluster.node(leader).url, name, schedule="@every 1s", repeats=REPEATS)
    with Creator(cluster) as creator:
        time.sleep(HOLD_S)
        added_at_ms = time.time() * 1000
        n4 = cluster.add_node()
        joined = log.agreed(cluster, [*NODES, n4.node_id], AGREE_TIMEOUT_S, "n4 joins")
        view = joined[n4.node_id]
        counts = {member["id"]: member["partitions"] for member in view["members"]}
        assert counts[n4.node_id] > 0 and sum(counts.values()) == PARTITIONS
        time.sleep(HOLD_S)
        cluster.remove_node(n4.node_id)
        removed_at_ms = time.time() * 1000
        left = log.agreed(
            cluster,
            NODES,
            AGREE_TIMEOUT_S,
            "n4 leaves",
            also=lambda v: all(member["id"] != n4.node_id for member in v["members"]),
        )
        assert sum(m["partitions"] for m in left[leader]["members"]) == PARTITIONS
        time.sleep(HOLD_S)
    assert creator.errors == [] and len(creator.created) > 20

    from_n4 = [call for call in sink.calls if call.headers.get("tock-node") == n4.node_id]
    assert from_n4, "n4 delivered nothing while it was a member"
    assert all(added_at_ms < call.received_ms < removed_at_ms for call in from_n4)
    assert all(owner_of(view, call.name) == n4.node_id for call in from_n4)
    assert n4.node_id not in live(left[leader])

    for name in creator.created:
        sink.wait_for(name, 1, FIRE_TIMEOUT_S)
    for name in repeating:
        sink.wait_for(name, REPEATS, FIRE_TIMEOUT_S)
    time.sleep(SETTLE_S)
    fired = Counter(call.name for call in sink.calls)
    assert {name: fired[name] for name in creator.created} == dict.fromkeys(creator.created, 1)
    for name in repeating:
        calls = sink.calls_for(name)
        occurrences = Counter(call.headers["tock-trigger-id"] for call in calls)
        assert len(occurrences) == REPEATS, (name, sorted(occurrences))
        twice = [
            (call.headers["tock-trigger-id"], call.headers.get("tock-node"), call.received_ms)
            for call in calls
            if occurrences[call.headers["tock-trigger-id"]] > 1
        ]
        assert not twice, f"{name} delivered twice (added {added_at_ms:.0f}): {twice}"
    log.assert_one_leader_per_term()
