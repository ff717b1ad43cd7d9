"""Fixtures of the Raft fault tests: trial count, a printed seed, and clusters that always stop.

`make_cluster` makes clusters of tests/integration/raft_node.py processes, each hosting the real
RaftStore (batching, chunking, forked msgpack dumps, the hardened transport) with its kv machine.
`cluster` is a tock cluster on 127.0.0.1; `netns_cluster` one whose nodes each live in a network
namespace of their own (tests/chaos/netns_cluster.py), to cut off and heal, and `network` just
the namespaces; these two need root and /usr/sbin/ip, and are skipped without them.

TOCK_CHAOS_TRIALS sets the number of trials of each fault test (default 2, so the whole chaos
directory stays within a few minutes in the suite; trials.py); a long run sets it to 10-20.
TOCK_CHAOS_SEED replays a run: every test prints the seed it used and its fault schedule,
which pytest shows when the test fails (or always, with -s).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from tests.chaos import netns, trials
from tests.chaos.netns_cluster import netns_cluster as running_netns_cluster
from tests.integration.raft_cluster import RaftCluster
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink


@pytest.fixture
def chaos_trials() -> int:
    return trials.chaos_trials()


@pytest.fixture
def chaos_random(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("TOCK_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"{request.node.name}: TOCK_CHAOS_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., RaftCluster]]:
    """Started clusters of raft_node processes, SIGKILLed at the end of the test."""
    clusters: list[RaftCluster] = []

    def make(extra_args: list[str] | None = None) -> RaftCluster:
        cluster = RaftCluster(tmp_path / f"cluster{len(clusters)}", extra_args=extra_args)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.kill_all()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A ready 3-node tock cluster of real processes, stopped (logs shown) after the test."""
    with running_cluster(tmp_path) as running:
        yield running


@pytest.fixture
def network() -> Iterator[netns.Network]:
    """Three network namespaces n1..n3 on one bridge (tests/chaos/netns.py), removed after."""
    if reason := netns.unavailable():
        pytest.skip(reason)
    with netns.network(("n1", "n2", "n3")) as net:
        yield net


@pytest.fixture
def netns_cluster(tmp_path: Path) -> Iterator[tuple[netns.Network, LocalCluster]]:
    """A ready 3-node tock cluster, each node in a namespace of its own, bridged: its network
    (to cut and heal nodes) and the cluster; stopped and removed after the test."""
    if reason := netns.unavailable():
        pytest.skip(reason)
    with running_netns_cluster(tmp_path) as running:
        yield running


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real HTTP app on 127.0.0.1 that records every trigger it receives."""
    app = Sink().start()
    yield app
    app.stop()
