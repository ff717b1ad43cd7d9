"""The supervision policy of long-lived work: restart with backoff, detect crash loops, tell health.

Every long-lived piece of work in a node runs under one policy, whatever drives it:

- an asyncio task with a loop of its own (the trigger engine, heartbeats, the watch announcer):
  node/supervisor.py restarts it;
- work that runs as calls rather than as a task (the Raft batcher's flush on the event loop,
  the snapshot hooks pysyncobj calls on its tick thread): a `Guard` here catches what a call
  raises, and the caller holds the work back until the backoff is over.

Either way an unexpected exception is logged with its traceback, counted as a restart of that
task, and followed by a pause: `backoff_base_s`, doubled at each crash up to `backoff_max_s`,
and back to the base once the task has run `clean_run_s` without crashing. A task that crashed
more than `crashes_max` times within `crash_window_s` is crash looping, and the node that runs
it is unhealthy until the task runs `clean_run_s` cleanly again (or its crashes age out of the
window). All of it is recorded on one `HealthBoard` per node, which the node's readiness probe,
its lease and its metrics read.

Time is the node's Clock (monotonic seconds), so tests drive it with a FakeClock. The board is
locked: guards report from pysyncobj's tick thread, the readiness probe reads on the loop.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from store.clock import Clock, SystemClock
from store.errors import ValidationError
from store.fault_points import fault_point

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class SupervisionConfig:
    # The pause before the first restart; each crash that follows doubles it, up to the max.
    backoff_base_s: float = 0.1
    backoff_max_s: float = 5.0
    # A task that ran this long without crashing has recovered: its backoff starts again from
    # the base, and it no longer counts as crash looping.
    clean_run_s: float = 10.0
    # More than `crashes_max` crashes within `crash_window_s`: the task is crash looping.
    crashes_max: int = 5
    crash_window_s: float = 30.0

    def validate(self) -> None:
        if min(self.backoff_base_s, self.clean_run_s, self.crashes_max, self.crash_window_s) <= 0:
            raise ValidationError(
                "backoff_base_s, clean_run_s, crashes_max and crash_window_s must be positive"
            )
        if self.backoff_max_s < self.backoff_base_s:
            raise ValidationError("backoff_max_s must be >= backoff_base_s")
        # A task that never stops crashing must stay crash looping rather than flap: even at
        # the longest backoff, more than crashes_max of its crashes fall within one window.
        if self.crashes_max * self.backoff_max_s >= self.crash_window_s:
            raise ValidationError("crashes_max * backoff_max_s must be < crash_window_s")


@dataclass(frozen=True)
class TaskReport:
    """One task as the metrics and the readiness probe see it."""

    name: str
    restarts: int
    crash_looping: bool
    last_error: str


class TaskHealth:
    """The crash record of one supervised task. Not locked: the HealthBoard holds its lock
    around every call. Every `now` is the clock's monotonic seconds."""

    def __init__(self, name: str, config: SupervisionConfig) -> None:
        self.name = name
        self.restarts = 0
        self.last_error = ""
        self._config = config
        self._crashes: deque[float] = deque()
        self._backoff_s = 0.0
        self._running_since: float | None = None
        self._resume_at = float("-inf")

    def started(self, now: float) -> None:
        """The task runs (again); a guard says so at every call, and only the first counts."""
        if self._running_since is None:
            self._running_since = now

    def ended(self) -> None:
        self._running_since = None

    def crashed(self, now: float, error: BaseException) -> float:
        """Record a crash; return how long to wait before the task runs again."""
        self._recover_if_clean(now)
        self._running_since = None
        self.restarts += 1
        self.last_error = repr(error)
        self._crashes.append(now)
        config = self._config
        self._backoff_s = min(max(2 * self._backoff_s, config.backoff_base_s), config.backoff_max_s)
        self._resume_at = now + self._backoff_s
        return self._backoff_s

    def wait_s(self, now: float) -> float:
        """How long the task must still wait after its last crash (0: it may run)."""
        return max(self._resume_at - now, 0.0)

    def crash_looping(self, now: float) -> bool:
        self._recover_if_clean(now)
        while self._crashes and self._crashes[0] <= now - self._config.crash_window_s:
            self._crashes.popleft()
        return len(self._crashes) > self._config.crashes_max

    def _recover_if_clean(self, now: float) -> None:
        since = self._running_since
        if since is not None and now - since >= self._config.clean_run_s:
            self._backoff_s = 0.0
            self._crashes.clear()


class HealthBoard:
    """Every supervised task of one node, by name; thread-safe."""

    def __init__(self, clock: Clock | None = None, config: SupervisionConfig | None = None):
        self.config = config or SupervisionConfig()
        self.config.validate()
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskHealth] = {}

    def started(self, name: str) -> None:
        with self._lock:
            self._task(name).started(self.clock.monotonic())

    def ended(self, name: str) -> None:
        with self._lock:
            self._task(name).ended()

    def crashed(self, name: str, error: BaseException) -> float:
        """Record a crash of `name`; the pause before it runs again, in seconds."""
        with self._lock:
            return self._task(name).crashed(self.clock.monotonic(), error)

    def wait_s(self, name: str) -> float:
        with self._lock:
            return self._task(name).wait_s(self.clock.monotonic())

    def reports(self) -> list[TaskReport]:
        """Every task seen so far, by name."""
        now = self.clock.monotonic()
        with self._lock:
            return [
                TaskReport(task.name, task.restarts, task.crash_looping(now), task.last_error)
                for _, task in sorted(self._tasks.items())
            ]

    def guard(self, name: str, logger: logging.Logger) -> Guard:
        with self._lock:
            self._task(name)
        return Guard(self, name, logger)

    def _task(self, name: str) -> TaskHealth:
        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = TaskHealth(name, self.config)
        return task


class Guard:
    """Supervision of work that runs as calls rather than as a task of its own.

    `run(work, fallback)` passes the fault point `name`, then calls `work()`; what it raises is
    logged on `logger` with its traceback and the task's name, recorded on the board as a
    crash, and turned into `fallback`. The caller holds the work back while `wait_s()` is
    positive (the backoff after a crash), then runs it again: that is the restart.
    """

    def __init__(self, board: HealthBoard, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._board = board
        self._log = logger

    def run(self, work: Callable[[], T], fallback: T) -> T:
        board = self._board
        board.started(self.name)
        try:
            fault_point(self.name)
            return work()
        except Exception as error:
            pause_s = board.crashed(self.name, error)
            self._log.exception("task %s raised; it runs again in %.2f s", self.name, pause_s)
            return fallback

    def wait_s(self) -> float:
        """Seconds left of the backoff after the last crash (0: the work may run)."""
        return self._board.wait_s(self.name)
