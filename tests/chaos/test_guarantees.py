"""Every guarantee, from the recorded history of a real 3-node cluster under faults.

Method (tests/chaos/guarantee_run.py and history.py): a workload of `@every 1s` jobs with
repeats, one-shot dueTime jobs, `*/2` cron jobs with a ttl, long-lived jobs, overwrites and
deletes goes to random nodes while a seeded schedule kills a node, pauses one for longer than
`dead`, kills the leader and once kills all nodes; then the cluster heals, every finite job runs
to its end, and the history is checked: never early, at least once, nothing acknowledged lost,
repeats and ttl exact, duplicates only around faults, replicas converged.

TOCK_CHAOS_SEED replays a run's schedule; the seed and the schedule are printed (shown by pytest
when the test fails, or always with -s). scripts/chaos runs this test over and over with new
seeds for a long soak.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.guarantee_run import run_guarantees

# Cluster start, the faults with their heals, quiescence and the checks, on 2 busy cores.
RUN_S_MAX = 240


@pytest.mark.timeout(RUN_S_MAX)
def test_every_guarantee_holds_under_a_random_fault_schedule(tmp_path: Path) -> None:
    seed = int(os.environ.get("TOCK_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
    result = run_guarantees(tmp_path, seed)
    assert not result.verdict.violations
    assert result.verdict.deliveries > 0, "the workload delivered nothing: the run proved nothing"
