"""Application-level batching, on the event loop: many proposals, few Raft entries.

Commands proposed within `batch_window_ms` travel as one entry (at most `batch_commands_max`
commands and `batch_bytes_max` bytes); a full batch leaves at once. At most
`entries_in_flight_max` entries of this node wait for their apply; the rest queue here, which
is what makes batches grow under load. A command too large for one entry travels as chunks
in consecutive entries of its own (see chunks.py). Barriers ride on the next entry that
leaves, or on a no-op entry when no command is waiting.

Each caller gets its own result: the entry's apply returns one result per command, in order.

The flush is this batcher's loop and runs supervised (task `batcher`): a flush that raises is
logged and counted by its Guard instead of reaching a proposer or the event loop, and the
flush runs again once the Guard's backoff is over; the commands wait in the queue meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysyncobj import FAIL_REASON

from store.errors import CodecError, OutcomeUnknown, TockError, Unavailable, ValidationError
from store.raft.bridge import EntryCallback, failure_error
from store.raft.config import RaftTuning
from store.raft.entry import (
    batch_bytes,
    encode_barrier,
    encode_batch,
    encode_chunks,
    wire_bytes,
)
from store.raft.state import EntryApplied
from store.supervision import Guard, HealthBoard

log = logging.getLogger(__name__)

TASK = "batcher"

Submit = Callable[[bytes, EntryCallback], None]


@dataclass(eq=False)
class Proposal:
    command: bytes
    future: asyncio.Future[object]
    # The command's size inside a pysyncobj entry (see entry.wire_bytes).
    wire: int
    # Set for a command that travels as chunks: the chunk entries not yet submitted.
    chunks: deque[bytes] | None = None
    submitted: bool = False


@dataclass(eq=False)
class _Flight:
    """One entry submitted and not yet applied, with everyone waiting for it."""

    proposals: list[Proposal]
    barriers: list[asyncio.Future[None]]
    chunked: bool = False
    last_chunk: bool = False


@dataclass
class BatcherCounters:
    entries: int = 0
    commands: int = 0
    entry_bytes_largest: int = 0


@dataclass(eq=False)
class Batcher:
    loop: asyncio.AbstractEventLoop
    submit: Submit
    proposer: bytes
    config: RaftTuning
    counters: BatcherCounters = field(default_factory=BatcherCounters)
    guard: Guard = field(default_factory=lambda: HealthBoard().guard(TASK, log))
    _queue: deque[Proposal] = field(default_factory=deque)
    # Wire bytes of the queued commands that fit one entry: when a batch is full.
    _queued_bytes: int = 0
    # Bytes of every queued command, chunked ones included: the bound on the queue's memory.
    _pending_bytes: int = 0
    _barriers: list[asyncio.Future[None]] = field(default_factory=list)
    _flights: set[_Flight] = field(default_factory=set)
    _sequence: int = 0
    _timer: asyncio.Handle | None = None
    _closed: bool = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def enqueue(self, command: bytes) -> Proposal:
        """Accept one command for the next entry; its future resolves with its result."""
        if self._closed:
            raise Unavailable("the Raft store is stopped")
        if len(command) > self.config.command_bytes_max:
            raise ValidationError(
                f"command of {len(command)} bytes exceeds {self.config.command_bytes_max}"
            )
        if len(self._queue) >= self.config.pending_commands_max:
            raise Unavailable(f"{len(self._queue)} commands already queued on this node")
        if self._pending_bytes + len(command) > self.config.pending_bytes_max:
            raise Unavailable(
                f"{self._pending_bytes} bytes of commands already queued on this node"
            )
        proposal = Proposal(command, self.loop.create_future(), wire_bytes(command))
        self._pending_bytes += len(command)
        if batch_bytes(proposal.wire, 1) > self.config.batch_bytes_max:
            self._sequence += 1
            entries = encode_chunks(
                self.proposer, self._sequence, command, self.config.batch_bytes_max
            )
            proposal.chunks = deque(entries)
        else:
            self._queued_bytes += proposal.wire
        self._queue.append(proposal)
        self._schedule()
        return proposal

    def withdraw(self, proposal: Proposal) -> bool:
        """Take back a proposal that has not left yet; False if it may already be in the log."""
        if proposal.submitted:
            return False
        self._remove_queued(proposal)
        return True

    def _remove_queued(self, proposal: Proposal) -> None:
        self._queue.remove(proposal)
        self._pending_bytes -= len(proposal.command)
        if proposal.chunks is None:
            self._queued_bytes -= proposal.wire

    def add_barrier(self) -> asyncio.Future[None]:
        if self._closed:
            raise Unavailable("the Raft store is stopped")
        barrier: asyncio.Future[None] = self.loop.create_future()
        self._barriers.append(barrier)
        self._schedule()
        return barrier

    def close(self) -> None:
        """Fail everyone waiting: queued work never left, in-flight work may have been applied."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for proposal in self._queue:
            _fail(proposal.future, Unavailable("the Raft store stopped before proposing it"))
        for barrier in self._barriers:
            _fail(barrier, Unavailable("the Raft store stopped"))
        for flight in self._flights:
            for proposal in flight.proposals:
                _fail(proposal.future, OutcomeUnknown("the Raft store stopped before its apply"))
            for barrier in flight.barriers:
                _fail(barrier, Unavailable("the Raft store stopped"))
        self._queue.clear()
        self._pending_bytes = self._queued_bytes = 0
        self._barriers.clear()
        self._flights.clear()

    def _schedule(self) -> None:
        full = (
            len(self._queue) >= self.config.batch_commands_max
            or self._queued_bytes >= self.config.batch_bytes_max
        )
        if full:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.config.batch_window_ms / 1000, self.flush)

    def flush(self) -> None:
        """Submit entries while there is work and room in flight; after a crash of this work,
        once its backoff is over."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        guard = self.guard
        if guard.wait_s() > 0 or not guard.run(self._submit_while_room, False):
            self._timer = self.loop.call_later(guard.wait_s(), self.flush)

    def _submit_while_room(self) -> bool:
        while not self._closed and len(self._flights) < self.config.entries_in_flight_max:
            self._drop_abandoned()
            if self._queue and self._queue[0].chunks is not None:
                self._submit_chunk(self._queue[0])
            elif self._queue:
                self._submit_batch()
            elif self._barriers:
                self._submit(encode_barrier(), _Flight([], []))
            else:
                break
        return True

    def _drop_abandoned(self) -> None:
        # Nobody waits for these any more (cancelled, or a chunked command that lost a chunk):
        # what has not left never will. A chunked command cut short cannot complete.
        while self._queue and self._queue[0].future.done():
            self._remove_queued(self._queue[0])

    def _submit_batch(self) -> None:
        proposals: list[Proposal] = []
        size = 0
        while self._queue and self._queue[0].chunks is None:
            head = self._queue[0]
            grown = batch_bytes(size + head.wire, len(proposals) + 1)
            if len(proposals) == self.config.batch_commands_max or (
                proposals and grown > self.config.batch_bytes_max
            ):
                break
            self._queue.popleft()
            self._queued_bytes -= head.wire
            self._pending_bytes -= len(head.command)
            if not head.future.done():
                proposals.append(head)
                size += head.wire
        if proposals:
            entry = encode_batch([p.command for p in proposals])
            self._submit(entry, _Flight(proposals, []))

    def _submit_chunk(self, proposal: Proposal) -> None:
        assert proposal.chunks, "a chunked proposal leaves the queue with its last chunk"
        entry = proposal.chunks.popleft()
        last = not proposal.chunks
        if last:
            self._queue.popleft()
            self._pending_bytes -= len(proposal.command)
        self._submit(entry, _Flight([proposal], [], chunked=True, last_chunk=last))

    def _submit(self, entry: bytes, flight: _Flight) -> None:
        flight.barriers, self._barriers = self._barriers, []
        for proposal in flight.proposals:
            proposal.submitted = True
        self._flights.add(flight)
        self.counters.entries += 1
        if flight.last_chunk or not flight.chunked:
            self.counters.commands += len(flight.proposals)
        wire = wire_bytes(entry)
        assert wire <= self.config.batch_bytes_max, "an entry outgrew its budget"
        self.counters.entry_bytes_largest = max(self.counters.entry_bytes_largest, wire)

        def on_done(outcome: EntryApplied | None, reason: int) -> None:
            self._landed(flight, outcome, reason)

        self.submit(entry, on_done)

    def _landed(self, flight: _Flight, outcome: EntryApplied | None, reason: int) -> None:
        if flight not in self._flights:
            return  # close() already failed its waiters
        self._flights.discard(flight)
        for barrier in flight.barriers:
            if reason == FAIL_REASON.SUCCESS:
                _succeed(barrier, None)
            else:
                _fail(barrier, Unavailable(f"barrier not confirmed: {failure_error(reason)}"))
        if flight.chunked:
            self._chunk_landed(flight, outcome, reason)
        else:
            self._batch_landed(flight.proposals, outcome, reason)
        if self._queue or self._barriers:
            self.flush()

    def _batch_landed(
        self, proposals: list[Proposal], outcome: EntryApplied | None, reason: int
    ) -> None:
        if reason != FAIL_REASON.SUCCESS:
            for proposal in proposals:
                _fail(proposal.future, failure_error(reason))
            return
        assert outcome is not None, "a successful apply returns its outcome"
        if outcome.failure is not None or len(outcome.events) != len(proposals):
            for proposal in proposals:
                _fail(proposal.future, _not_applied(outcome))
            return
        for proposal, event in zip(proposals, outcome.events, strict=True):
            _succeed(proposal.future, event.result)

    def _chunk_landed(self, flight: _Flight, outcome: EntryApplied | None, reason: int) -> None:
        proposal = flight.proposals[0]
        assert proposal.chunks is not None
        if reason != FAIL_REASON.SUCCESS:
            # Once a chunk is lost, the command completes only if its last chunk is already
            # on its way; otherwise withdrawing the rest makes "not applied" certain.
            unsent_last = bool(proposal.chunks)
            _fail(proposal.future, _chunk_lost(reason) if unsent_last else failure_error(reason))
        elif outcome is None or outcome.failure is not None:
            _fail(proposal.future, _not_applied(outcome))
        elif flight.last_chunk:
            if len(outcome.events) == 1:
                _succeed(proposal.future, outcome.events[0].result)
            else:
                _fail(proposal.future, _not_applied(outcome))


def _chunk_lost(reason: int) -> TockError:
    return Unavailable(f"not applied: a chunk was lost ({failure_error(reason)})")


def _not_applied(outcome: EntryApplied | None) -> TockError:
    failure = outcome.failure if outcome is not None else "no outcome"
    if outcome is not None and outcome.failure is None:
        return CodecError(f"entry {outcome.index} applied {len(outcome.events)} commands")
    return Unavailable(f"not applied: {failure}")


def _succeed(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: TockError) -> None:
    if not future.done():
        future.set_exception(error)
