"""How many trials a fault test runs (TOCK_CHAOS_TRIALS), and the time limit that follows.

The suite's 120 s per-test limit suits the default count; a long run raises the count, so each
fault test sets its limit from its own worst case per trial instead.
"""

from __future__ import annotations

import os

import pytest

TRIALS_DEFAULT = 2
# Starting a cluster, a leader's election and the final checks, beyond the trials themselves.
SETUP_S_MAX = 60.0


def chaos_trials() -> int:
    return int(os.environ.get("TOCK_CHAOS_TRIALS", str(TRIALS_DEFAULT)))


def time_limit(trial_s_max: float, trials_min: int = 0) -> pytest.MarkDecorator:
    """A pytest-timeout mark for a test running max(trials_min, chaos_trials()) trials."""
    trials = max(trials_min, chaos_trials())
    return pytest.mark.timeout(SETUP_S_MAX + trial_s_max * trials)
