"""Fixtures of the Raft fault tests: trial count, a printed seed, and clusters that always stop.

The clusters are processes of tests/integration/raft_node.py, each hosting the real RaftStore
(batching, chunking, forked msgpack dumps, the hardened transport) with its kv machine.

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
from tests.chaos import trials
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
def sink() -> Iterator[Sink]:
    """A real HTTP app on 127.0.0.1 that records every trigger it receives."""
    app = Sink().start()
    yield app
    app.stop()
