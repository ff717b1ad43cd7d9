"""The Supervisor on a real event loop with short timings: a crash is logged with its traceback
and restarted after the backoff, cancellation is a clean stop, a crash loop makes the node
unhealthy (said once in the log) until the task runs cleanly again."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

import pytest

from node.supervisor import Supervisor
from store.clock import FakeClock
from store.supervision import HealthBoard, SupervisionConfig

CONFIG = SupervisionConfig(
    backoff_base_s=0.01, backoff_max_s=0.04, clean_run_s=0.3, crashes_max=3, crash_window_s=5.0
)
WAIT_S = 5.0


def run(body: Callable[[Supervisor], Awaitable[None]]) -> None:
    async def scenario() -> None:
        await body(Supervisor(HealthBoard(config=CONFIG)))

    asyncio.run(asyncio.wait_for(scenario(), 20))


def restarts(supervisor: Supervisor, name: str) -> int:
    return next((r.restarts for r in supervisor.board.reports() if r.name == name), 0)


async def wait_until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class Flaky:
    """A loop that crashes `crashes` times (at its first iteration), then counts iterations."""

    def __init__(self, crashes: int) -> None:
        self.crashes_left = crashes
        self.starts = 0
        self.iterations = 0

    async def loop(self) -> None:
        self.starts += 1
        while True:
            if self.crashes_left:
                self.crashes_left -= 1
                raise ValueError("flaky")
            self.iterations += 1
            await asyncio.sleep(0.001)


def test_a_crashed_task_is_logged_with_its_traceback_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(supervisor: Supervisor) -> None:
        flaky = Flaky(crashes=2)
        task = supervisor.spawn("engine", flaky.loop)
        await wait_until(lambda: flaky.iterations > 10)
        assert flaky.starts == 3 and restarts(supervisor, "engine") == 2
        assert supervisor.running("engine") and supervisor.unhealthy_reason() is None
        task.cancel()
        await supervisor.join(task)

    with caplog.at_level(logging.ERROR, logger="node.supervisor"):
        run(body)
    crashes = [r for r in caplog.records if "task engine crashed" in r.getMessage()]
    assert len(crashes) == 2
    assert all(r.name == "node.supervisor" and r.exc_info for r in crashes)
    assert "ValueError: flaky" in caplog.text and "Traceback" in caplog.text


def test_the_backoff_grows_between_restarts() -> None:
    async def body(supervisor: Supervisor) -> None:
        starts: list[float] = []

        async def crash() -> None:
            starts.append(asyncio.get_running_loop().time())
            raise ValueError("again")

        task = supervisor.spawn("announcer", crash)
        await wait_until(lambda: len(starts) >= 5)
        task.cancel()
        await supervisor.join(task)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # The loop may run a timer up to its clock's resolution early: allow a little.
        expected = [0.01, 0.02, 0.04, 0.04]
        assert all(gap >= 0.9 * want for gap, want in zip(gaps, expected, strict=False)), gaps

    run(body)


def test_cancellation_is_a_clean_stop_not_a_crash() -> None:
    async def body(supervisor: Supervisor) -> None:
        flaky = Flaky(crashes=0)
        task = supervisor.spawn("membership", flaky.loop)
        await wait_until(lambda: flaky.iterations > 0)
        task.cancel()
        await supervisor.join(task)
        assert task.cancelled() and not supervisor.running("membership")
        assert restarts(supervisor, "membership") == 0 and flaky.starts == 1

    run(body)


def test_a_task_that_returns_has_ended_and_a_required_one_makes_the_node_unhealthy() -> None:
    async def body(supervisor: Supervisor) -> None:
        stop = asyncio.Event()

        async def loop() -> None:
            await stop.wait()

        task = supervisor.spawn("engine", loop, required=True)
        await asyncio.sleep(0)
        assert supervisor.unhealthy_reason() is None
        stop.set()
        await asyncio.gather(task)
        assert restarts(supervisor, "engine") == 0
        assert supervisor.unhealthy_reason() == "task engine is not running"
        # Stopped on purpose (joined), the engine is no longer expected to run.
        await supervisor.join(task)
        assert supervisor.unhealthy_reason() is None

    run(body)


def test_a_crash_loop_makes_the_node_unhealthy_once_and_it_recovers_after_a_clean_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(supervisor: Supervisor) -> None:
        flaky = Flaky(crashes=CONFIG.crashes_max + 1)
        task = supervisor.spawn("engine", flaky.loop, required=True)
        await wait_until(lambda: supervisor.unhealthy_reason() is not None)
        assert supervisor.unhealthy_reason() == "task engine is crash looping"
        # It runs cleanly now: healthy again once it has done so for clean_run_s.
        await wait_until(lambda: supervisor.unhealthy_reason() is None)
        assert flaky.iterations > 0
        task.cancel()
        await supervisor.join(task)

    with caplog.at_level(logging.INFO, logger="node.supervisor"):
        run(body)
    changes = [r.getMessage() for r in caplog.records if "node " in r.getMessage()]
    assert len(changes) == 2, changes
    assert changes[0].startswith("node unhealthy") and "ValueError('flaky')" in changes[0]
    assert changes[1].startswith("node healthy again")


def test_joining_a_task_in_its_backoff_does_not_wait_for_the_restart() -> None:
    slow = SupervisionConfig(backoff_base_s=10.0, backoff_max_s=10.0, crash_window_s=60.0)

    async def scenario() -> None:
        supervisor = Supervisor(HealthBoard(config=slow))
        flaky = Flaky(crashes=1)
        task = supervisor.spawn("engine", flaky.loop)
        await wait_until(lambda: restarts(supervisor, "engine") == 1)
        async with asyncio.timeout(1.0):
            await supervisor.join(task)
        assert flaky.starts == 1

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_the_backoff_is_waited_out_on_the_boards_clock() -> None:
    # Backoffs of an hour on a fake clock: the restarts come at once, and the clock shows them.
    hours = SupervisionConfig(
        backoff_base_s=3600, backoff_max_s=7200, clean_run_s=1, crashes_max=3, crash_window_s=86400
    )
    clock = FakeClock(monotonic=0.0)

    async def scenario() -> tuple[int, float]:
        supervisor = Supervisor(HealthBoard(clock, hours))
        flaky = Flaky(crashes=2)
        task = supervisor.spawn("engine", flaky.loop)
        await wait_until(lambda: flaky.iterations > 0)
        task.cancel()
        await supervisor.join(task)
        return flaky.starts, clock.monotonic()

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT_S)) == (3, 3600 + 7200)
