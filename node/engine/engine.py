"""The trigger engine: owned jobs -> timing wheel -> delivery -> batched acks through Raft.

The engine keeps one wheel timer per job of the partitions this node owns in the current epoch,
at the job's `fire_ms`. It learns every change from the store's applied commands, in log order
(`on_applied`): a create, overwrite or delete, an ack that advanced a job, a new member list.
Its loop wakes at the wheel's next deadline, takes the due timers (never early: the wheel only
returns deadlines <= now) and delivers each as a task of its own. Outcomes go to the ack batcher,
whose committed Ack advances the job in the machine; the change comes back as an applied event
and re-arms the job. Retries need nothing here: a FAILED ack sets `retry_ms` in the machine.

One trigger per job is in flight: from firing until its ack settles, the job is held. A change
that arrives meanwhile (the ack's own advance, an overwrite, a delete) is remembered and applied
when the hold ends; with none, the job is re-read from the machine, which already holds whatever
the settled ack did. The held jobs are what `deliveries_in_flight_max` bounds: the loop takes at
most as many due timers as there are free slots, and the rest wait in the wheel.

Quarantine: an error that concerns one job (computing its missed occurrences, building its
trigger, anything unexpected while firing it) stops that job alone. It is logged with the job and
the reason, counted, and reported through the log (a Quarantine command) so that every node shows
it on GET (status.error) and no node fires it again; the engine goes on with every other job.

Fencing: a job fires only while its partition is owned here in the current epoch and `lease()`
holds. Its ack carries the epoch in which the delivery started; an ack rejected as STALE is
re-sent with the new epoch when this node still owns the job (the delivery happened: recording
it avoids a duplicate), and dropped otherwise (the new owner delivers again: at least once).

Threads: everything here runs on the event loop. Reads of the machine go through
SharedMachine.read. An applied event may come after the machine has moved further (events cross
to the loop after the apply), so a job read from the machine can briefly be newer than the
events still queued for it; the queued events then re-arm it, in order, to the same final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from node.delivery.dispatch import Delivers
from node.delivery.trigger import DeliveryOutcome, Trigger
from node.engine import acks
from node.engine.acks import AckBatcher, AckConfig, AckVerdict, PendingAck
from node.engine.metrics import RESULT_OF_OUTCOME, EngineMetrics, TriggerResult
from node.engine.misfire import skipped_occurrences
from node.engine.wheel import TimingWheel
from node.supervisor import Supervisor
from store.clock import Clock
from store.codec import AckEntry, Outcome, Quarantine, Release, encode_command
from store.errors import TockError, ValidationError
from store.fault_points import fault_point
from store.jobs import Job
from store.log import Applied, ReplicatedLog
from store.machine import AppKey, AppRoute, JobKey, JobMachine, Result
from store.shared_machine import SharedMachine

log = logging.getLogger(__name__)

# The engine's loop runs supervised under this name (node/supervisor.py), and the node is not
# ready while it does not run.
TASK = "engine"

_OUTCOMES = {DeliveryOutcome.SUCCESS: Outcome.SUCCESS, DeliveryOutcome.FAILED: Outcome.FAILED}


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    # Jobs fired and not yet settled (delivery plus ack): the back-pressure bound.
    deliveries_in_flight_max: int = 2048
    # An occurrence more than this late at fire time counts as missed (misfire policies).
    misfire_grace_ms: int = 5000
    # SKIPPED entries sent for one job in one ack; a longer run of misses takes several.
    misfire_skips_max: int = 256
    # How often the loop looks at the lease again while it has none.
    lease_poll_ms: int = 50
    # How long an ack that could not be proposed (no leader) waits before it is sent again.
    ack_retry_ms: int = 100
    # How long a trigger nobody could take (its app's watch streams had just closed) is held
    # back before it fires again.
    undeliverable_retry_ms: int = 100
    # How long stop() waits for running deliveries, then for their acks.
    stop_timeout_s: float = 5.0
    acks: AckConfig = field(default_factory=AckConfig)

    def validate(self) -> None:
        self.acks.validate()
        periods = (self.lease_poll_ms, self.ack_retry_ms, self.undeliverable_retry_ms)
        if min(self.deliveries_in_flight_max, *periods) <= 0:
            raise ValidationError(
                "deliveries_in_flight_max, lease_poll_ms, ack_retry_ms and "
                "undeliverable_retry_ms must be positive"
            )
        if self.misfire_grace_ms < 0 or self.stop_timeout_s <= 0:
            raise ValidationError("misfire_grace_ms must be >= 0 and stop_timeout_s positive")
        if not 0 < self.misfire_skips_max <= self.acks.acks_per_command_max:
            raise ValidationError("misfire_skips_max must be in 1..acks_per_command_max")


class _Hold:
    """A fired job whose outcome is not settled yet, and the latest change seen meanwhile."""

    __slots__ = ("changed", "job", "latest")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.changed = False
        self.latest: Job | None = None


class TriggerEngine:
    """Fires the due jobs of the partitions `node_id` owns; one per node, on the event loop.

    `lease()` says whether this node may fire right now (its last heartbeat committed less
    than a lease ago); without it nothing fires and the timers stay. `metrics` is read by the
    admin API. The loop and the ack batcher's flush run under `supervisor` (restarted after a
    crash); without one, the engine supervises them on its own.
    """

    def __init__(
        self,
        node_id: str,
        store: ReplicatedLog,
        machine: SharedMachine,
        deliverer: Delivers,
        clock: Clock,
        lease: Callable[[], bool],
        config: EngineConfig,
        supervisor: Supervisor | None = None,
    ) -> None:
        config.validate()
        self._node_id = node_id
        self._store = store
        self._machine = machine
        self._deliverer = deliverer
        self._clock = clock
        self._lease = lease
        self._config = config
        self.metrics = EngineMetrics()
        self._supervisor = supervisor or Supervisor()
        self._acks = AckBatcher(
            node_id=node_id,
            propose=store.propose,
            clock=clock,
            config=config.acks,
            settle=self._settle,
            metrics=self.metrics,
            guard=self._supervisor.board.guard(acks.TASK, acks.log),
        )
        self._wheel: TimingWheel[JobKey, Job] = TimingWheel(clock.wall_ms())
        self._epoch = 0
        self._owned: frozenset[int] = frozenset()
        self._apps: dict[AppKey, AppRoute] = {}
        # Apps with watch streams somewhere in the cluster: deliverable even without a URL.
        self._watched: frozenset[AppKey] = frozenset()
        self._held: dict[JobKey, _Hold] = {}
        # Due jobs of apps with no URL and no watcher, by app: they fire when the app registers
        # or a watcher connects.
        self._waiting: dict[AppKey, dict[JobKey, Job]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # While the loop sleeps: the wall ms it wakes at (inf: only when woken). While it runs:
        # -inf, so that nothing wakes it needlessly.
        self._wake_at_ms = -math.inf
        self._slots_full = False
        self._stopping = False
        # Set once stop() has given up on what had not settled: nothing is sent again after it.
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Gained partitions whose previous owner has not released them yet (it may still be
        # delivering one of their occurrences), by that owner: they fire once it has.
        self._handoff_waits: dict[str, set[int]] = {}
        # The epoch in which this node released the partitions it lost (0: none yet).
        self._released_epoch = 0
        self._release_warned_epoch = 0
        # Release and Quarantine proposals in flight: kept so that they are not collected.
        self._proposals: set[asyncio.Task[None]] = set()

    # ---- lifecycle ----

    def start(self) -> None:
        """Subscribe to the store, arm the owned jobs and start the loop; call on the loop."""
        assert self._task is None, "an engine starts once"
        self._unsubscribe = self._store.subscribe(self.on_applied)
        self._sync_apps()
        self._sync_ownership()
        self._task = self._supervisor.spawn(TASK, self._run, required=True)

    async def stop(self) -> None:
        """Stop firing, wait (bounded) for running deliveries, then commit their acks.

        The acks are sent again, as while running, until every one has settled or the stop's
        deadline passes: an ack a leader change or a new epoch bounced during the stop still
        reaches the log, so that no occurrence this node delivered goes out again after a
        restart. Idempotent: a second call finds nothing left to wait for."""
        self._stopping = True
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            await self._supervisor.join(self._task)
        timeout_s = self._config.stop_timeout_s
        if self._deliveries:
            _done, late = await asyncio.wait(set(self._deliveries), timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_s
        while True:
            await self._acks.drain(max(deadline_s - loop.time(), 0.0))
            if not self._held or loop.time() >= deadline_s:
                break
            await asyncio.sleep(self._config.ack_retry_ms / 1000)
        self._stopped = True

    @property
    def owned_partitions(self) -> frozenset[int]:
        return self._owned

    @property
    def timers(self) -> int:
        return len(self._wheel)

    # ---- applied events ----

    def on_applied(self, applied: Applied) -> None:
        """The store's subscriber: keep the timers in step with every applied command."""
        result = applied.result
        if not isinstance(result, Result):
            return
        for change in result.changes:
            hold = self._held.get(change.key)
            if hold is not None:
                hold.changed, hold.latest = True, change.job
                continue
            try:
                self._arm(change.key, change.job)
            except Exception as error:
                if change.job is None:
                    raise
                self._quarantine(change.job, error)
        if result.members_changed:
            self._sync_ownership()
        if result.released is not None:
            self._take_over_from(result.released)
        if result.apps_changed or result.watchers_changed:
            self._sync_apps()

    def _arm(self, key: JobKey, job: Job | None) -> None:
        """Keep the job's timer at its fire time, or drop it (deleted, or not ours)."""
        self._unpark(key)
        if (
            job is None
            or job.error is not None
            or job.partition not in self._owned
            or self._handing_over(job.partition)
        ):
            self._wheel.cancel(key)
            return
        self._wheel.add(key, job.fire_ms, job)
        if job.fire_ms < self._wake_at_ms:
            self._wake.set()

    def _sync_ownership(self) -> None:
        node_id = self._node_id
        waiting = {p for parts in self._handoff_waits.values() for p in parts}

        def read(m: JobMachine) -> tuple[int, frozenset[int], dict[str, set[int]]]:
            owned = m.partitions_of(node_id) if node_id in m.live else frozenset()
            waits: dict[str, set[int]] = {}
            # A partition new here (or still waiting) is taken over only once its previous
            # owner has released it; a previous owner that is not live has stopped firing.
            for partition in (owned - self._owned) | (waiting & owned):
                previous = m.previous_owner(partition)
                if previous is None or previous == node_id or previous not in m.live:
                    continue
                if not m.has_released(previous):
                    waits.setdefault(previous, set()).add(partition)
            return m.epoch, owned, waits

        epoch, owned, self._handoff_waits = self._machine.read(read)
        lost, gained = self._owned - owned, (owned - self._owned) | (waiting & owned)
        self._epoch, self._owned = epoch, owned
        for partition in sorted(lost):
            for job in self._jobs_in(partition):
                self._wheel.cancel(job.key)
        for app_key in list(self._waiting):
            for key, job in list(self._waiting[app_key].items()):
                if job.partition in lost:
                    self._unpark(key)
        for partition in sorted(gained):
            if not self._handing_over(partition):
                self._arm_partition(partition)
        self._release_lost_partitions()

    def _arm_partition(self, partition: int) -> None:
        for job in self._jobs_in(partition):
            if job.key not in self._held:
                self._arm(job.key, job)

    def _handing_over(self, partition: int) -> bool:
        return any(partition in parts for parts in self._handoff_waits.values())

    def _take_over_from(self, previous: str) -> None:
        """`previous` released what it lost this epoch: fire the partitions it handed over."""
        for partition in sorted(self._handoff_waits.pop(previous, set())):
            if partition in self._owned:
                self._arm_partition(partition)

    def _release_lost_partitions(self) -> None:
        """Once nothing is in flight for partitions this node lost in the current epoch, say so
        through the log (Release): their new owners wait for it before they fire them."""
        if self._epoch == 0 or self._released_epoch == self._epoch or self._stopping:
            return
        if any(hold.job.partition not in self._owned for hold in self._held.values()):
            return
        self._released_epoch = self._epoch
        self._spawn_proposal(self._propose_release(self._epoch))

    def _spawn_proposal(self, proposal: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(proposal)
        self._proposals.add(task)
        task.add_done_callback(self._proposals.discard)

    async def _propose_release(self, epoch: int) -> None:
        command = encode_command(Release(epoch, self._node_id))
        try:
            await self._store.propose(command, self._config.acks.propose_timeout_s)
        except TockError as error:
            # Without a leader this retries every ack_retry_ms: say it once per epoch.
            level = logging.DEBUG if self._release_warned_epoch == epoch else logging.WARNING
            self._release_warned_epoch = epoch
            log.log(level, "release of epoch %d not committed (%s); retrying", epoch, error)
            if self._released_epoch == epoch:
                self._released_epoch = 0
                loop = asyncio.get_running_loop()
                loop.call_later(self._config.ack_retry_ms / 1000, self._release_lost_partitions)

    def _jobs_in(self, partition: int) -> list[Job]:
        return self._machine.read(lambda m: m.jobs_in_partition(partition))

    def _sync_apps(self) -> None:
        self._apps, watchers = self._machine.read(lambda m: (m.app_routes(), m.watchers()))
        self._watched = frozenset(watchers)
        for app_key in [app for app in self._waiting if self._deliverable(app)]:
            for key, job in list(self._waiting[app_key].items()):
                self._arm(key, job)

    def _deliverable(self, app_key: AppKey) -> bool:
        return app_key in self._apps or app_key in self._watched

    def _park(self, job: Job) -> None:
        self._waiting.setdefault((job.namespace, job.app), {})[job.key] = job
        self.metrics.triggers_waiting_for_app += 1
        self.metrics.count(job.namespace, job.app, TriggerResult.UNDELIVERED)

    def _unpark(self, key: JobKey) -> None:
        app_key = (key[0], key[1])
        waiting = self._waiting.get(app_key)
        if waiting is not None and waiting.pop(key, None) is not None:
            self.metrics.triggers_waiting_for_app -= 1
            if not waiting:
                del self._waiting[app_key]

    # ---- the loop ----

    async def _run(self) -> None:
        while not self._stopping:
            fault_point(TASK)
            now_ms = self._clock.wall_ms()
            sleep_ms = self._fire_due(now_ms)
            if sleep_ms == 0:
                # More is due: let deliveries and events run, then come straight back.
                await asyncio.sleep(0)
            else:
                await self._sleep(now_ms, sleep_ms)

    def _fire_due(self, now_ms: int) -> float:
        """Fire what is due and free slots allow; the ms to sleep (inf: until woken)."""
        if not self._lease():
            return self._config.lease_poll_ms
        free = self._config.deliveries_in_flight_max - len(self._held)
        self._slots_full = free <= 0
        if self._slots_full:
            return math.inf
        for key, deadline_ms, job in self._wheel.expire(now_ms, free):
            assert key == job.key and deadline_ms == job.fire_ms <= now_ms, "never early"
            try:
                self._fire(job, now_ms)
            except Exception as error:
                self._quarantine(job, error)
        next_ms = self._wheel.next_deadline_ms()
        return math.inf if next_ms is None else max(next_ms - now_ms, 0)

    async def _sleep(self, now_ms: int, sleep_ms: float) -> None:
        self._wake.clear()
        self._wake_at_ms = now_ms + sleep_ms
        timeout_s = None if math.isinf(sleep_ms) else sleep_ms / 1000
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        self._wake_at_ms = -math.inf

    def _fire(self, job: Job, now_ms: int) -> None:
        """Deliver the job's current attempt, skip its missed occurrences, or park it."""
        key = job.key
        assert key not in self._held, "one trigger per job in flight"
        if job.partition not in self._owned:
            return
        app_key = (job.namespace, job.app)
        if not self._deliverable(app_key):
            self._park(job)
            return
        self._held[key] = _Hold(job)
        self.metrics.jobs_in_flight = len(self._held)
        config = self._config
        skipped = skipped_occurrences(
            job, now_ms, config.misfire_grace_ms, config.misfire_skips_max
        )
        if skipped:
            self.metrics.count(job.namespace, job.app, TriggerResult.SKIPPED, len(skipped))
            entries = tuple(AckEntry(job.uid, ms, Outcome.SKIPPED) for ms in skipped)
            self._acks.add(PendingAck(key, self._epoch, entries))
            return
        route = self._apps.get(app_key)
        task = asyncio.create_task(self._deliver(job, route, self._epoch, now_ms))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _quarantine(self, job: Job, error: Exception) -> None:
        """Stop `job` alone: log and count why, free its slot, and have the cluster record it."""
        reason = f"{type(error).__name__}: {error}"
        log.error("job %s quarantined: %s", job.key, reason, exc_info=error)
        self.metrics.jobs_quarantined += 1
        if self._held.pop(job.key, None) is not None:
            self.metrics.jobs_in_flight = len(self._held)
        self._wheel.cancel(job.key)
        command = Quarantine(job.uid, job.next_ms, self._node_id, reason)
        self._spawn_proposal(self._propose_quarantine(command))

    async def _propose_quarantine(self, command: Quarantine) -> None:
        """Until it commits, the job stays out of the wheel here; a change that re-arms it
        (a restart, an epoch) fires it again and, failing again, quarantines it again."""
        try:
            await self._store.propose(encode_command(command), self._config.acks.propose_timeout_s)
        except TockError as error:
            log.warning("quarantine of job %s not committed: %s", command.uid, error)

    async def _deliver(self, job: Job, route: AppRoute | None, epoch: int, started_ms: int) -> None:
        try:
            trigger = self._trigger_of(job, route)
        except Exception as error:
            self._quarantine(job, error)
            return
        # The lateness of the attempt against the time it was due; the wheel never fires early.
        self.metrics.latency.observe((started_ms - job.fire_ms) / 1000)
        self.metrics.deliveries_in_flight += 1
        began = self._clock.monotonic()
        try:
            outcome = await self._deliverer.deliver(route.url if route else "", trigger)
        except Exception:
            # Delivery reports the app's faults as outcomes; anything raised is our bug. It
            # must still end in an ack, or the job would stay held and never fire again.
            log.exception("delivery of %s raised", trigger.trigger_id)
            outcome = DeliveryOutcome.FAILED
        except asyncio.CancelledError:
            # Stopped past its deadline: no outcome to record; the job fires again after a
            # restart, on this node or its next owner (at least once).
            self._release([job.key])
            raise
        finally:
            self.metrics.deliveries_in_flight -= 1
        if outcome is DeliveryOutcome.UNDELIVERABLE:
            # Not an attempt: nothing is acked, and the job fires again after a pause (or
            # waits for its app, if it has neither a URL nor a watcher any more).
            self.metrics.count(job.namespace, job.app, TriggerResult.UNDELIVERED)
            await asyncio.sleep(self._config.undeliverable_retry_ms / 1000)
            self._release([job.key])
            return
        self.metrics.delivery.observe(self._clock.monotonic() - began)
        self.metrics.count(job.namespace, job.app, RESULT_OF_OUTCOME[_OUTCOMES[outcome]])
        entry = AckEntry(job.uid, job.next_ms, _OUTCOMES[outcome])
        self._acks.add(PendingAck(job.key, epoch, (entry,)))

    @staticmethod
    def _trigger_of(job: Job, route: AppRoute | None) -> Trigger:
        return Trigger(
            namespace=job.namespace,
            app=job.app,
            name=job.name,
            uid=job.uid,
            scheduled_ms=job.next_ms,
            attempt=job.attempts + 1,
            data=job.spec.data,
            # The stored type ("" for none): each protocol renders the data its own way.
            content_type=job.spec.data_type,
            app_token=route.token if route else "",
        )

    # ---- settling ----

    def _settle(self, pendings: list[PendingAck], verdict: AckVerdict) -> None:
        """The ack batcher's verdict on a batch: send it again, or release its jobs."""
        if verdict is AckVerdict.STALE:
            pendings = self._resend_owned(pendings)
        elif verdict is AckVerdict.UNAVAILABLE:
            pendings = self._retry_later(pendings)
        elif verdict is AckVerdict.UNKNOWN:
            pendings = self._resend_idempotent(pendings)
        self._release([pending.key for pending in pendings])

    def _resend_owned(self, pendings: list[PendingAck]) -> list[PendingAck]:
        """Re-send, in the machine's new epoch, the acks of jobs this node still owns there;
        return the others, to release."""
        node_id = self._node_id
        partitions = [self._held[pending.key].job.partition for pending in pendings]
        epoch, owners = self._machine.read(lambda m: (m.epoch, [m.owner(p) for p in partitions]))
        dropped: list[PendingAck] = []
        for pending, owner in zip(pendings, owners, strict=True):
            if owner == node_id and not self._stopped:
                self._acks.add(pending._replace(epoch=epoch))
                self.metrics.acks_resent += len(pending.entries)
            else:
                dropped.append(pending)
                self.metrics.acks_dropped += len(pending.entries)
        return dropped

    def _resend_idempotent(self, pendings: list[PendingAck]) -> list[PendingAck]:
        """Send again, after a pause, the acks whose outcome is unknown (leadership changed
        under them) and which are safe to apply twice; return the others, to release.

        A SUCCESS or SKIPPED entry is idempotent: if the first copy applied, the job has moved
        past that occurrence and the machine ignores the second. Re-sending it spares the app a
        duplicate that releasing would cause (the job, re-read, would fire again). A FAILED entry
        would count an attempt twice, so it is released: at worst one extra attempt. The lease
        does not matter here: it may well lapse during the election that made the outcome
        unknown, but it guards firing, and this delivery has already happened; what matters is
        whether the machine still counts the ack (`_still_counted`)."""
        safe = [
            pending
            for pending in pendings
            if self._still_counted(pending)
            and all(entry.outcome is not Outcome.FAILED for entry in pending.entries)
        ]
        released = [pending for pending in pendings if pending not in safe]
        self.metrics.acks_dropped += sum(len(pending.entries) for pending in released)
        if safe:
            self.metrics.acks_resent += sum(len(pending.entries) for pending in safe)
            loop = asyncio.get_running_loop()
            loop.call_later(self._config.ack_retry_ms / 1000, self._send_again, safe)
        return released

    def _retry_later(self, pendings: list[PendingAck]) -> list[PendingAck]:
        """Send the acks the machine still counts again after a pause (a new leader takes a
        moment); return the others, to release. Redelivering instead would flood the app while
        the store has no leader, until the lease runs out."""
        kept: list[PendingAck] = []
        released: list[PendingAck] = []
        for pending in pendings:
            (kept if self._still_counted(pending) else released).append(pending)
        if kept:
            loop = asyncio.get_running_loop()
            loop.call_later(self._config.ack_retry_ms / 1000, self._send_again, kept)
        return released

    def _still_counted(self, pending: PendingAck) -> bool:
        """Whether the machine would still apply this ack: it was fired in the current epoch, or
        in the one before, whose owners' acks count until they release (and this node does not
        release the partitions it lost while it holds one of their jobs). Sending it again then
        spares the app a duplicate even when the partition has moved on meanwhile: its new
        owner waits for the release. An older ack is refused; its job is the new owner's to
        deliver again."""
        return pending.epoch >= self._epoch - 1

    def _send_again(self, pendings: list[PendingAck]) -> None:
        if self._stopped:
            self.metrics.acks_dropped += sum(len(pending.entries) for pending in pendings)
            self._release([pending.key for pending in pendings])
            return
        for pending in pendings:
            self._acks.add(pending)

    def _release(self, keys: list[JobKey]) -> None:
        """End the holds of `keys` and re-arm each from its latest version."""
        holds = [(key, self._held.pop(key)) for key in keys]
        unseen = [key for key, hold in holds if not hold.changed]
        current = self._machine.read(lambda m: {key: m.get(*key) for key in unseen})
        for key, hold in holds:
            self._arm(key, hold.latest if hold.changed else current[key])
        self.metrics.jobs_in_flight = len(self._held)
        self._release_lost_partitions()
        if self._slots_full and holds:
            self._wake.set()
