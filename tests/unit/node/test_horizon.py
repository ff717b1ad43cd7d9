"""node/engine/horizon.py: which jobs hold a timer, when the horizon moves, what a refill finds.

The engine's side (that a job beyond the horizon fires on time, never early) is tested on a real
store in test_engine.py and, with clock jumps and crashes, by the simulation (tests/sim), whose
nodes run a 2 s horizon.
"""

from __future__ import annotations

from node.engine.horizon import Horizon
from store import job_row
from store.jobs import Job, JobSpec, derive_job
from store.schedule import format_rfc3339_ms

NOW_MS = 1_700_000_000_000
LENGTH_MS = 60_000
ROWS_PER_TURN = 64


def row(name: str, due_in_ms: int, *, paused: bool = False) -> bytes:
    spec = JobSpec(name=name, schedule=None, due_time=format_rfc3339_ms(NOW_MS + due_in_ms))
    job = derive_job(spec, "ns", "app", f"uid-{name}", NOW_MS, "UTC", 64)
    return job_row.pack(job._replace(paused=paused))


def names(jobs: list[Job]) -> set[str]:
    return {job.name for job in jobs}


def test_jobs_hold_a_timer_up_to_the_end_of_the_horizon() -> None:
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    assert horizon.end_ms == NOW_MS + LENGTH_MS
    assert horizon.holds(NOW_MS - 1) and horizon.holds(NOW_MS + LENGTH_MS)
    assert not horizon.holds(NOW_MS + LENGTH_MS + 1)


def test_a_refill_is_due_when_half_the_horizon_has_passed() -> None:
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    half = NOW_MS + LENGTH_MS // 2
    assert horizon.next_ms(NOW_MS) == half
    assert not horizon.refill_due(half - 1)
    assert horizon.refill_due(half)


def test_a_refill_finds_the_jobs_that_came_into_the_moved_horizon() -> None:
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    rows = [
        row("already-in", LENGTH_MS // 2),
        row("came-in", LENGTH_MS + 1),
        row("at-the-new-end", LENGTH_MS + LENGTH_MS // 2),
        row("still-beyond", LENGTH_MS + LENGTH_MS // 2 + 1),
        row("paused", LENGTH_MS + 10, paused=True),
    ]
    now_ms = NOW_MS + LENGTH_MS // 2
    horizon.begin_refill(now_ms, rows)
    assert horizon.end_ms == now_ms + LENGTH_MS
    assert horizon.refilling and horizon.next_ms(now_ms) == now_ms
    assert not horizon.refill_due(now_ms + LENGTH_MS)  # one refill at a time
    assert names(horizon.step()) == {"came-in", "at-the-new-end"}
    assert not horizon.refilling
    assert horizon.next_ms(now_ms) == now_ms + LENGTH_MS // 2


def test_a_refill_is_spread_over_turns_of_the_loop() -> None:
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    template = row("far", LENGTH_MS + 5)
    rows = [template] * (2 * ROWS_PER_TURN + 1)
    horizon.begin_refill(NOW_MS + LENGTH_MS // 2, rows)
    found = []
    for _ in range(3):
        assert horizon.refilling
        found.append(len(horizon.step()))
    assert found == [ROWS_PER_TURN, ROWS_PER_TURN, 1]
    assert not horizon.refilling


def test_an_empty_node_ends_its_refill_in_one_step() -> None:
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    horizon.begin_refill(NOW_MS + LENGTH_MS, [])
    assert horizon.step() == [] and not horizon.refilling


def test_the_end_never_moves_back() -> None:
    """A clock stepped back does not shrink the horizon: timers already armed stay valid."""
    horizon = Horizon(NOW_MS, LENGTH_MS, ROWS_PER_TURN)
    horizon.begin_refill(NOW_MS - 10 * LENGTH_MS, [])
    assert horizon.end_ms == NOW_MS + LENGTH_MS
