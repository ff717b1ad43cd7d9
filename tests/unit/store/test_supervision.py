"""The supervision policy on a fake clock: backoff doubling to its cap and back to the base after
a clean run, crash loops and recovery from them, and the Guard for work that runs as calls."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from store.clock import FakeClock
from store.errors import ValidationError
from store.fault_points import InjectedFault, arm, disarm
from store.supervision import HealthBoard, SupervisionConfig

CONFIG = SupervisionConfig(
    backoff_base_s=0.1, backoff_max_s=1.0, clean_run_s=5.0, crashes_max=3, crash_window_s=10.0
)
BOOM = RuntimeError("boom")


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    disarm()
    yield
    disarm()


def board() -> tuple[HealthBoard, FakeClock]:
    clock = FakeClock()
    return HealthBoard(clock, CONFIG), clock


def looping(health: HealthBoard) -> list[str]:
    return [report.name for report in health.reports() if report.crash_looping]


def test_backoff_doubles_up_to_its_cap_and_each_crash_counts_a_restart() -> None:
    health, clock = board()
    pauses = []
    for _ in range(6):
        health.started("engine")
        clock.advance(0.01)
        pauses.append(health.crashed("engine", BOOM))
        clock.advance(pauses[-1])
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    (report,) = health.reports()
    assert (report.name, report.restarts, report.last_error) == ("engine", 6, repr(BOOM))


def test_a_clean_run_resets_the_backoff() -> None:
    health, clock = board()
    health.started("engine")
    assert health.crashed("engine", BOOM) == 0.1
    health.started("engine")
    assert health.crashed("engine", BOOM) == 0.2
    health.started("engine")
    clock.advance(CONFIG.clean_run_s)
    assert health.crashed("engine", BOOM) == 0.1


def test_more_than_crashes_max_within_the_window_is_a_crash_loop() -> None:
    health, clock = board()
    for _ in range(CONFIG.crashes_max):
        health.started("announcer")
        clock.advance(health.crashed("announcer", BOOM))
    assert looping(health) == []
    health.started("announcer")
    health.crashed("announcer", BOOM)
    assert looping(health) == ["announcer"]
    (report,) = health.reports()
    assert report.restarts == CONFIG.crashes_max + 1


def test_a_crash_loop_ends_after_a_clean_run() -> None:
    health, clock = board()
    for _ in range(CONFIG.crashes_max + 1):
        health.started("engine")
        clock.advance(health.crashed("engine", BOOM))
    health.started("engine")
    clock.advance(CONFIG.clean_run_s - 0.1)
    assert looping(health) == ["engine"]
    clock.advance(0.1)
    assert looping(health) == []


def test_a_crash_loop_ends_when_its_crashes_leave_the_window() -> None:
    health, clock = board()
    for _ in range(CONFIG.crashes_max + 1):
        health.started("engine")
        health.crashed("engine", BOOM)
    assert looping(health) == ["engine"]
    clock.advance(CONFIG.crash_window_s)
    assert looping(health) == []


def test_a_task_crashing_forever_stays_crash_looping() -> None:
    health, clock = board()
    seen = []
    for _ in range(40):
        health.started("engine")
        clock.advance(health.crashed("engine", BOOM))
        seen.append(bool(looping(health)))
    assert seen[CONFIG.crashes_max :] == [True] * (40 - CONFIG.crashes_max)


def test_the_guard_logs_counts_and_holds_the_work_back_for_the_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health, clock = board()
    guard = health.guard("batcher", logging.getLogger("store.raft.batcher"))
    arm("batcher:2")
    with caplog.at_level(logging.ERROR):
        assert guard.run(lambda: "flushed", "crashed") == "crashed"
    (record,) = caplog.records
    assert record.name == "store.raft.batcher" and "batcher" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], InjectedFault)
    assert guard.wait_s() == pytest.approx(0.1)
    clock.advance(0.1)
    assert guard.wait_s() == 0
    assert guard.run(lambda: "flushed", "crashed") == "crashed"
    assert guard.wait_s() == pytest.approx(0.2)
    clock.advance(0.2)
    assert guard.run(lambda: "flushed", "crashed") == "flushed"
    assert [(r.name, r.restarts) for r in health.reports()] == [("batcher", 2)]


def test_the_guard_passes_base_exceptions_through() -> None:
    health, _clock = board()
    guard = health.guard("dump", logging.getLogger(__name__))

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guard.run(interrupted, "fallback")
    assert health.reports()[0].restarts == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"backoff_base_s": 0},
        {"backoff_max_s": 0.05},
        {"crashes_max": 0},
        {"clean_run_s": -1},
        # At the longest backoff, a task crashing forever would drop out of the crash loop.
        {"backoff_max_s": 10.0},
    ],
)
def test_bad_configs_are_refused(changes: dict[str, float]) -> None:
    config = SupervisionConfig(**{**CONFIG.__dict__, **changes})
    with pytest.raises(ValidationError):
        config.validate()
