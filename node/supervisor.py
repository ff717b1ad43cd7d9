"""The Supervisor: runs a node's long-lived asyncio tasks, and restarts one that crashes.

A long-lived task is a coroutine factory (the loop of the trigger engine, of the heartbeats, of
the watch announcer, of a forwarding lane) started with `spawn(name, factory)`. When the
coroutine raises, the Supervisor logs the exception with its traceback and the task's name,
counts a restart on the node's HealthBoard, waits out the backoff on the board's clock (the
node's) and calls the factory again, so the loop starts over on the state its object kept. The
policy (backoff, crash loops, recovery) is store/supervision.py's, shared with the work that
runs as calls in the store.

Ends that are not crashes: cancellation (how most tasks are stopped) passes through as it is,
and a coroutine that returns has finished on purpose (the engine's loop returns once told to
stop); either way the task is no longer running.

Health: the node is unhealthy while a task is crash looping, or while a task spawned as
`required` (the trigger engine) has ended without being stopped through `join`.
`unhealthy_reason()` says why, and logs each change of that answer once, however often it is
asked (every readiness probe and heartbeat asks).

Fault injection for tests: each supervised loop passes a named fault point at the top of every
iteration (store/fault_points.py, armed through TOCK_TEST_FAULTS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from store.supervision import HealthBoard

log = logging.getLogger(__name__)

Factory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """The supervised tasks of one node; on its event loop."""

    def __init__(self, board: HealthBoard | None = None) -> None:
        self.board = board or HealthBoard()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._required: set[str] = set()
        # Tasks waiting out a backoff: stopping one need not wait for it to restart first.
        self._backing_off: set[asyncio.Task[None]] = set()
        self._reported: str | None = None

    def spawn(self, name: str, factory: Factory, *, required: bool = False) -> asyncio.Task[None]:
        """Run `factory()` as the task `name`, restarted after each crash; return the task that
        supervises it (cancel it to stop the task; it never raises anything else)."""
        task = asyncio.create_task(self._supervise(name, factory), name=name)
        self._tasks[name] = task
        if required:
            self._required.add(name)
        return task

    async def join(self, task: asyncio.Task[None]) -> None:
        """Wait for a task that was told to stop (its loop returns once it looks) to end; one
        waiting out a backoff is cancelled rather than restarted only to return. A required
        task stopped this way is required no longer: a node that stops is not unhealthy."""
        self._required.discard(task.get_name())
        if task in self._backing_off:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def unhealthy_reason(self) -> str | None:
        """Why this node is unhealthy (a task crash looping or a required one not running), or
        None when it is healthy. Each change of the answer is logged once."""
        looping = [report for report in self.board.reports() if report.crash_looping]
        reasons = [f"task {report.name} is crash looping" for report in looping]
        reasons += [
            f"task {name} is not running"
            for name in sorted(self._required)
            if not self.running(name)
        ]
        reason = "; ".join(reasons) or None
        if reason != self._reported:
            self._reported = reason
            if reason is None:
                log.warning("node healthy again: every supervised task runs")
            else:
                last = "; ".join(f"{r.name}: {r.last_error}" for r in looping)
                log.error("node unhealthy (not ready, lease given up): %s (last: %s)", reason, last)
        return reason

    async def _supervise(self, name: str, factory: Factory) -> None:
        board = self.board
        me = asyncio.current_task()
        assert me is not None
        try:
            while True:
                board.started(name)
                try:
                    await factory()
                    return
                except Exception as error:
                    pause_s = board.crashed(name, error)
                    log.exception("task %s crashed; restarting it in %.2f s", name, pause_s)
                self._backing_off.add(me)
                try:
                    await board.clock.sleep(pause_s)
                finally:
                    self._backing_off.discard(me)
        finally:
            board.ended(name)
