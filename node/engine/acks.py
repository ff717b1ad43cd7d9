"""The ack batcher: the outcomes of the last few ms, committed through Raft as one Ack command.

One command per trigger would cap the trigger rate at Raft's entry rate; one Ack for every
outcome collected within `ack_window_ms` (at most `acks_per_command_max` entries) does not.
The entries of one job travel together and in order in one command, because the machine applies
a chain of SKIPPED entries for one job one after the other, each to the occurrence the previous
one advanced to.

Every batch ends in exactly one call of `settle(pendings, verdict)` on the loop, whatever
happens to its proposal: the engine holds each job until its ack settles, so a lost settle
would silence the job for good.

The flush is this batcher's loop and runs supervised (task `acks`): a flush that raises is
logged and counted by its Guard, and runs again once the Guard's backoff is over; the buffered
acks wait for it (their jobs stay held, so nothing fires twice meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from node.engine.attempts import TimerKey
from node.engine.metrics import EngineMetrics
from store.clock import Clock
from store.codec import Ack, AckEntry, encode_command
from store.errors import TockError, Unavailable, ValidationError
from store.log import PROPOSE_TIMEOUT_S_DEFAULT
from store.machine import AckCounts, ErrorKind, Result
from store.supervision import Guard, HealthBoard

log = logging.getLogger(__name__)

TASK = "acks"

Propose = Callable[[bytes, float], Awaitable[object]]


class PendingAck(NamedTuple):
    """The outcome(s) of one fired job (or redrive), for the epoch in which its delivery
    started."""

    key: TimerKey
    epoch: int
    entries: tuple[AckEntry, ...]


class AckVerdict(StrEnum):
    # The Ack applied in its epoch (each entry may still have been ignored as a late echo).
    COMMITTED = "committed"
    # The Ack was rejected whole: the epoch moved on before it applied.
    STALE = "stale"
    # Certainly not applied: no leader known, or not proposed in time. Safe to send again.
    UNAVAILABLE = "unavailable"
    # Perhaps applied, perhaps not: leadership lost or no apply in time, or a broken result.
    UNKNOWN = "unknown"


Settle = Callable[[list[PendingAck], AckVerdict], None]


@dataclass(frozen=True, kw_only=True)
class AckConfig:
    acks_per_command_max: int = 256
    # How long the first outcome of a batch waits for others to join it.
    ack_window_ms: float = 2.0
    # How long an Ack (and the engine's Release and Quarantine) waits to apply. A node sets it
    # from its one propose timeout (NodeConfig.propose_timeout_s), like every proposal it makes.
    propose_timeout_s: float = PROPOSE_TIMEOUT_S_DEFAULT
    # Sent in every Ack, so that every replica keeps the same: the attempts each job's history
    # keeps, and the dead letters kept per app (the oldest beyond it are dropped).
    history_max: int = 20
    dead_letters_max: int = 1000

    def validate(self) -> None:
        if self.acks_per_command_max <= 0:
            raise ValidationError("acks_per_command_max must be positive")
        if self.history_max < 0 or self.dead_letters_max < 0:
            raise ValidationError("history_max and dead_letters_max must not be negative")
        if self.ack_window_ms < 0 or self.propose_timeout_s <= 0:
            raise ValidationError("ack_window_ms must be >= 0 and propose_timeout_s positive")


class AckBatcher:
    """Collects PendingAcks per epoch and proposes them in bounded batches; loop-only."""

    def __init__(
        self,
        *,
        node_id: str,
        propose: Propose,
        clock: Clock,
        config: AckConfig,
        settle: Settle,
        metrics: EngineMetrics,
        guard: Guard | None = None,
    ) -> None:
        config.validate()
        self._node_id = node_id
        self._propose = propose
        self._clock = clock
        self._config = config
        self._settle = settle
        self._metrics = metrics
        self._guard = guard or HealthBoard(clock).guard(TASK, log)
        # Epoch -> the pending acks for it and their number of entries.
        self._buffers: dict[int, tuple[list[PendingAck], int]] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._proposals: set[asyncio.Task[None]] = set()

    def add(self, pending: PendingAck) -> None:
        """Queue one job's entries; they go out within the window, or at once in a full batch."""
        size = len(pending.entries)
        assert 0 < size <= self._config.acks_per_command_max, "a job's entries fit one command"
        buffered, count = self._buffers.get(pending.epoch, ([], 0))
        if count + size > self._config.acks_per_command_max:
            self._flush_epoch(pending.epoch)
            buffered, count = [], 0
        buffered.append(pending)
        self._buffers[pending.epoch] = (buffered, count + size)
        if count + size >= self._config.acks_per_command_max:
            self._flush_epoch(pending.epoch)
        elif self._flush_timer is None:
            window_s = self._config.ack_window_ms / 1000
            self._flush_timer = self._clock.call_later(window_s, self.flush)

    def flush(self) -> None:
        """Propose everything buffered now; after a crash of this work, once its backoff is
        over."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        guard = self._guard
        if guard.wait_s() > 0 or not guard.run(self._flush_all, False):
            self._flush_timer = self._clock.call_later(guard.wait_s(), self.flush)

    def _flush_all(self) -> bool:
        for epoch in list(self._buffers):
            self._flush_epoch(epoch)
        return True

    async def drain(self, timeout_s: float) -> None:
        """Flush and wait (at most `timeout_s`) for every proposal to settle: graceful stop."""
        self.flush()
        if self._proposals:
            await asyncio.wait(set(self._proposals), timeout=timeout_s)

    def _flush_epoch(self, epoch: int) -> None:
        pendings, _count = self._buffers.pop(epoch)
        task = asyncio.create_task(self._commit(epoch, pendings))
        self._proposals.add(task)
        task.add_done_callback(self._proposals.discard)

    async def _commit(self, epoch: int, pendings: list[PendingAck]) -> None:
        entries = tuple(entry for pending in pendings for entry in pending.entries)
        command = Ack(
            epoch=epoch,
            node=self._node_id,
            now_ms=self._clock.wall_ms(),
            entries=entries,
            history_max=self._config.history_max,
            dead_letters_max=self._config.dead_letters_max,
        )
        self._metrics.ack_commands_proposed += 1
        self._metrics.acks_proposed += len(entries)
        verdict = AckVerdict.UNKNOWN
        try:
            result = await self._propose(encode_command(command), self._config.propose_timeout_s)
            verdict = self._verdict_of(result)
        except Unavailable as error:
            verdict = AckVerdict.UNAVAILABLE
            log.warning(
                "ack of %d entries for epoch %d not proposed: %s", len(entries), epoch, error
            )
        except TockError as error:
            log.warning(
                "ack of %d entries for epoch %d not committed: %s", len(entries), epoch, error
            )
        finally:
            # In `finally`, so that even a cancelled or broken proposal ends its jobs' holds.
            self._settle(pendings, verdict)

    def _verdict_of(self, result: object) -> AckVerdict:
        if isinstance(result, Result) and result.ok:
            counts = result.value
            assert isinstance(counts, AckCounts)
            self._metrics.acks_ignored += counts.ignored
            return AckVerdict.COMMITTED
        if isinstance(result, Result) and result.error is ErrorKind.STALE:
            return AckVerdict.STALE
        log.error("an ack was not applied: %r", result)
        return AckVerdict.UNKNOWN
