"""An asyncio event loop on virtual time, and the processes that live on it.

`VirtualLoop.time()` is a number the loop moves itself: its selector never waits, and when no
callback is ready the clock jumps to the next scheduled one. A simulated minute takes as long as
the callbacks in it take to run, and two runs of the same callbacks see the same times.

A simulated node is a `Process`: every task and callback created while its context is current
belongs to it (a context variable carries the owner into tasks and call_later alike). `kill`
ends a process the way a crash does: its timers never fire, its tasks are cancelled, and the
timers and tasks it creates afterwards are void. Its immediate callbacks (call_soon) still run:
they are how a cancelled task and the futures it waits on unwind, so that no coroutine is left
to be finalised at some later garbage collection; no process can live on through them alone,
since nothing of it waits any more.
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

_OWNER: contextvars.ContextVar[Process | None] = contextvars.ContextVar("owner", default=None)


class Deadlock(RuntimeError):
    """Nothing ready and nothing scheduled while something is awaited: the run would hang."""


class Process:
    """One incarnation of a simulated node: the tasks and callbacks it owns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dead = False
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._handles: weakref.WeakSet[asyncio.TimerHandle] = weakref.WeakSet()
        self.context = contextvars.copy_context()
        self.context.run(_OWNER.set, self)

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """Call `function` as this process: what it creates belongs to the process."""
        return self.context.run(function, *args)

    def kill(self) -> None:
        self.dead = True
        for handle in list(self._handles):
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()


def _owner_of(context: contextvars.Context | None) -> Process | None:
    return _OWNER.get() if context is None else context.get(_OWNER)


class _NeverWaits(selectors.BaseSelector):
    """The loop's selector: no file is ever ready; waiting means moving the clock."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("nothing is scheduled and nothing is ready")
        self._loop.advance(timeout)
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise NotImplementedError("a simulation has no files")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise NotImplementedError("a simulation has no files")

    def get_map(self) -> dict[Any, selectors.SelectorKey]:
        return {}


class VirtualLoop(asyncio.BaseEventLoop):
    """A loop whose clock starts at `start_s` and moves only when nothing else can happen."""

    def __init__(self, start_s: float = 1000.0) -> None:
        super().__init__()
        self._now = start_s
        self._selector = _NeverWaits(self)
        # Virtual seconds are free; the loop's debug timing of slow callbacks is not about them.
        self.slow_callback_duration = float("inf")
        self.callbacks_run = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "virtual time never goes back"
        self._now += seconds

    # The selector loop's hooks: a simulation has neither files nor other threads.
    def _process_events(self, event_list: list[Any]) -> None:
        self.callbacks_run += 1

    def _write_to_self(self) -> None:
        pass

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        owner = _owner_of(context)
        if owner is not None:
            owner._tasks.add(task)
            if owner.dead:
                task.cancel()
        return task

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        owner = _owner_of(context)
        if owner is not None:
            owner._handles.add(handle)
            if owner.dead:
                handle.cancel()
        return handle


def run(main: Coroutine[Any, Any, T], start_s: float = 1000.0) -> T:
    """Run `main` to completion on a fresh VirtualLoop; the wall clock is not read."""
    with asyncio.Runner(loop_factory=lambda: VirtualLoop(start_s)) as runner:
        return runner.run(main)


def wall_seconds() -> float:
    """Real seconds, for reporting how fast simulations run; never read by a simulation."""
    return time.perf_counter()
