"""Keeps the cluster's record of this node's watch streams equal to the streams it holds.

Every owner of a job must know which nodes hold watchers of the job's app, so the count per
(app, node) is replicated: a WatchersChanged command whenever this node's count for an app
differs from the committed one. The announcer reconciles rather than reports events: it compares
the two and proposes the differences, when a watcher comes or goes and every `reconcile_s` as
well. So a proposal lost to a leader change, a record dropped while this node was thought dead
(the machine forgets the watchers of nodes that leave the live set), or one left over from
before a restart is put right within a period, with no bookkeeping of what was sent.

The loop runs supervised (task `announcer`): a round that raises is logged and counted, and the
loop starts again after the backoff, with the next round reconciling whatever was left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from node.supervisor import Supervisor
from store.clock import Clock
from store.codec import WatchersChanged, encode_command
from store.errors import TockError, ValidationError
from store.fault_points import fault_point
from store.machine import AppKey
from store.raft.store import RaftStore
from store.shared_machine import SharedMachine

log = logging.getLogger(__name__)

TASK = "announcer"


@dataclass(frozen=True, kw_only=True)
class AnnouncerConfig:
    reconcile_s: float = 1.0
    # WatchersChanged commands proposed at once in one round; the rest wait for the next.
    changes_per_round_max: int = 64

    def validate(self) -> None:
        if min(self.reconcile_s, self.changes_per_round_max) <= 0:
            raise ValidationError("reconcile_s and changes_per_round_max must be positive")


class WatchAnnouncer:
    """Proposes this node's watcher counts (`local_counts()`) until the machine holds them;
    each proposal waits at most `propose_timeout_s` (the node's)."""

    def __init__(
        self,
        node_id: str,
        store: RaftStore,
        machine: SharedMachine,
        clock: Clock,
        local_counts: Callable[[], dict[AppKey, int]],
        config: AnnouncerConfig,
        supervisor: Supervisor,
        *,
        propose_timeout_s: float,
    ) -> None:
        config.validate()
        self._node_id = node_id
        self._store = store
        self._machine = machine
        self._clock = clock
        self._local_counts = local_counts
        self._config = config
        self._propose_timeout_s = propose_timeout_s
        self._supervisor = supervisor
        self._wake = asyncio.Event()
        self._round_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # The first round runs at once: it clears what a previous run of this node left.
        self._wake.set()
        self._task = self._supervisor.spawn(TASK, self._run)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def changed(self) -> None:
        """A watcher came or went here: reconcile now rather than at the next period."""
        self._wake.set()

    async def registered(self, app: AppKey, timeout_s: float) -> None:
        """Return once the machine records watchers of `app` on this node; TimeoutError if it
        does not within `timeout_s` (e.g. no quorum)."""
        async with asyncio.timeout(timeout_s):
            while self._committed().get(app, 0) == 0:
                round_done = self._round_done
                self.changed()
                await round_done.wait()

    def _committed(self) -> dict[AppKey, int]:
        node_id = self._node_id
        return self._machine.read(lambda m: m.watchers_on(node_id))

    async def _run(self) -> None:
        while True:
            fault_point(TASK)
            # The period ends the wait as a change would: either starts the next round.
            period = self._clock.call_later(self._config.reconcile_s, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                period.cancel()
            self._wake.clear()
            await self._reconcile()
            done, self._round_done = self._round_done, asyncio.Event()
            done.set()

    async def _reconcile(self) -> None:
        node_id = self._node_id
        live, committed = self._machine.read(lambda m: (node_id in m.live, m.watchers_on(node_id)))
        if not live:
            # The machine refuses the watchers of a node it does not count live; the epoch that
            # counts this node again brings the next round here.
            return
        local = self._local_counts()
        stale = [
            WatchersChanged(app[0], app[1], node_id, local.get(app, 0))
            for app in sorted(local.keys() | committed.keys())
            if local.get(app, 0) != committed.get(app, 0)
        ]
        changes = stale[: self._config.changes_per_round_max]
        results = await asyncio.gather(*map(self._propose, changes), return_exceptions=True)
        for change, result in zip(changes, results, strict=True):
            if isinstance(result, TockError):
                log.warning("watchers of %s not recorded yet: %s", change.app, result)
            elif isinstance(result, Exception):
                # One app's record that cannot be proposed (text no replica could encode, say)
                # must not end the announcer: every other app's watchers still need recording.
                log.error("watchers of %r cannot be recorded", change.app, exc_info=result)
            elif isinstance(result, BaseException):
                raise result

    async def _propose(self, change: WatchersChanged) -> None:
        await self._store.propose(encode_command(change), self._propose_timeout_s)
