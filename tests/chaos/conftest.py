"""Fixtures of the Raft fault tests: trial count, a printed seed, and clusters that always stop.

TOCK_CHAOS_TRIALS sets the number of trials of each fault test (default 3, for CI); a long run
sets it to 15-20. TOCK_CHAOS_SEED replays a run: every test prints the seed it used and its
fault schedule, which pytest shows when the test fails (or always, with -s).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import Cluster


@pytest.fixture
def chaos_trials() -> int:
    return int(os.environ.get("TOCK_CHAOS_TRIALS", "3"))


@pytest.fixture
def chaos_random(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("TOCK_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"{request.node.name}: TOCK_CHAOS_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(size: int = 3, extra_arguments: list[str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", size, extra_arguments or [])
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
