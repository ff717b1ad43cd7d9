"""How many trials a fault test runs (TOCK_CHAOS_TRIALS), and the time limit that follows.

The suite's 120 s per-test limit suits the default count; a long run raises the count, so each
fault test sets its limit from its own worst case per trial instead.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest

from tests.integration.raft_cluster import RaftCluster
from tests.integration.raft_writer import PipelinedWriter, WriteLog

TRIALS_DEFAULT = 2
# Starting a cluster, a leader's election and the final checks, beyond the trials themselves.
SETUP_S_MAX = 60.0
# A whole-cluster fault trial: writes in flight, and the load before watching for a dump.
WRITES_IN_FLIGHT = 100
LOAD_BEFORE_WATCHING_S = 0.3
LEADER_WAIT_S = 60.0


def chaos_trials() -> int:
    return int(os.environ.get("TOCK_CHAOS_TRIALS", str(TRIALS_DEFAULT)))


def time_limit(trial_s_max: float, trials_min: int = 0) -> pytest.MarkDecorator:
    """A pytest-timeout mark for a test running max(trials_min, chaos_trials()) trials."""
    trials = max(trials_min, chaos_trials())
    return pytest.mark.timeout(SETUP_S_MAX + trial_s_max * trials)


def write_until_fault(
    cluster: RaftCluster,
    log: WriteLog,
    trial: int,
    rng: random.Random,
    fault: Callable[[RaftCluster], None],
    what: str,
) -> None:
    """One trial of a whole-cluster fault under write load: the fault hits every node the moment
    one renames a dump into place (compaction; even trials) or at a random instant (odd ones)."""
    cluster.wait_leader(LEADER_WAIT_S)
    writer = PipelinedWriter(cluster, WRITES_IN_FLIGHT, log)
    writer.start()
    if trial % 2 == 0:
        time.sleep(LOAD_BEFORE_WATCHING_S)
        dumped = cluster.wait_dump_renamed()
        print(f"trial {trial}: {what} as {dumped.name} renamed its dump into place")
    else:
        delay_s = rng.uniform(0.3, 2.0)
        print(f"trial {trial}: {what} at a random instant, {delay_s:.2f} s into the load")
        time.sleep(delay_s)
    fault(cluster)
    writer.stop()
