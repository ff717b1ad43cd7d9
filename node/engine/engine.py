"""The trigger engine: owned jobs -> timing wheel -> delivery -> batched acks through Raft.

The engine keeps one wheel timer per job of the partitions this node owns in the current epoch,
at the job's `fire_ms`, for the jobs due within the timer horizon (node/engine/horizon.py: the
rest are found by a scan of the owned rows as the horizon moves). It learns every change from
the store's applied commands, in log order (`on_applied`): a create, overwrite or delete, an ack
that advanced a job, a new member list.
Its loop wakes at the wheel's next deadline, takes the due timers (never early: the wheel only
returns deadlines <= now) and delivers each as a task of its own. Outcomes go to the ack batcher,
whose committed Ack advances the job in the machine; the change comes back as an applied event
and re-arms the job. Retries need nothing here: a FAILED ack sets `retry_ms` in the machine.

One trigger per job is in flight: from firing until its ack settles, the job is held. A change
that arrives meanwhile (the ack's own advance, an overwrite, a delete) is remembered and applied
when the hold ends; with none, the job is re-read from the machine, which already holds whatever
the settled ack did. The held jobs are what `deliveries_in_flight_max` bounds: the loop takes at
most as many due timers as there are free slots, and the rest wait in the wheel. It takes at most
`fires_per_turn` in one turn, and decodes at most `rows_per_turn` rows of moved partitions or of
the horizon's refill: the loop also sends the heartbeats that keep this node's lease.

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
import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cluster.handoff import Holdings, after_release, next_holdings, release_due
from node.delivery.dispatch import Delivers
from node.delivery.sending import SENDING, Fenced, Sending
from node.delivery.trigger import DeliveryOutcome, DeliveryReport
from node.engine import acks, attempts, verdicts
from node.engine.acks import AckBatcher, AckConfig, AckVerdict, PendingAck
from node.engine.attempts import Fireable, TimerKey, WheelKey
from node.engine.horizon import Horizon
from node.engine.metrics import RESULT_OF_OUTCOME, EngineMetrics, TriggerResult
from node.engine.misfire import skipped_occurrences
from node.engine.parking import Parking
from node.engine.wheel import TimingWheel
from node.supervisor import Supervisor
from store import job_row
from store.clock import Clock
from store.codec import AckEntry, Outcome, Quarantine, Release, encode_command
from store.dead_letters import DeadLetter
from store.errors import TockError, ValidationError
from store.fault_points import fault_point
from store.jobs import Job
from store.log import Applied, ReplicatedLog, Restored
from store.machine import AppRoute, JobKey, JobMachine, Result
from store.partition import partition_of
from store.shared_machine import SharedMachine

log = logging.getLogger(__name__)

# The engine's loop runs supervised under this name (node/supervisor.py), and the node is not
# ready while it does not run.
TASK = "engine"

# A horizon refilled more often than every half second would have the loop scanning rows
# more than firing.
TIMER_HORIZON_MS_MIN = 1000

_OUTCOMES = {DeliveryOutcome.SUCCESS: Outcome.SUCCESS, DeliveryOutcome.FAILED: Outcome.FAILED}


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    # Jobs fired and not yet settled (delivery plus ack): the back-pressure bound.
    deliveries_in_flight_max: int = 2048
    # Deliveries started per turn of the loop. Thousands started at once fill the loop's next
    # turns with their first steps, and the heartbeat that renews the lease waits behind them:
    # a burst of 1,700 due together let every node's lease lapse (and its deliveries go out
    # again from the next owner).
    fires_per_turn: int = 128
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
    # Only the owned jobs due within this long of now hold a timer (about 240 bytes each on
    # their owner); the rest are found by a scan of the owned rows every half horizon.
    timer_horizon_ms: int = 3_600_000
    # Rows decoded per turn of the loop while partitions move or the horizon is refilled (about
    # 3-5 ms of work): a third of a million at once would hold the loop, heartbeats included.
    rows_per_turn: int = 2048
    acks: AckConfig = field(default_factory=AckConfig)

    def validate(self) -> None:
        self.acks.validate()
        periods = (self.lease_poll_ms, self.ack_retry_ms, self.undeliverable_retry_ms)
        bounds = (self.deliveries_in_flight_max, self.fires_per_turn, self.rows_per_turn)
        if min(*bounds, *periods) <= 0:
            raise ValidationError(
                "deliveries_in_flight_max, fires_per_turn, rows_per_turn, lease_poll_ms, "
                "ack_retry_ms and undeliverable_retry_ms must be positive"
            )
        if self.timer_horizon_ms < TIMER_HORIZON_MS_MIN:
            raise ValidationError(f"timer_horizon_ms must be >= {TIMER_HORIZON_MS_MIN}")
        if self.misfire_grace_ms < 0 or self.stop_timeout_s <= 0:
            raise ValidationError("misfire_grace_ms must be >= 0 and stop_timeout_s positive")
        if not 0 < self.misfire_skips_max <= self.acks.acks_per_command_max:
            raise ValidationError("misfire_skips_max must be in 1..acks_per_command_max")


class _Hold:
    """A fired job (or redrive) whose outcome is not settled yet, and the latest change seen
    meanwhile."""

    __slots__ = ("changed", "latest", "partition", "target")

    def __init__(self, target: Fireable, partition: int) -> None:
        self.target = target
        self.partition = partition
        self.changed = False
        self.latest: Job | None = None


class TriggerEngine:
    """Fires the due jobs of the partitions `node_id` owns; one per node, on the event loop.

    `lease()` says whether this node holds its lease (its last heartbeat committed less than a
    lease ago, and it is live): when it lapses, the deliveries in flight are abandoned (another
    node will fire the partitions). `may_fire()` says whether it may start deliveries now (the
    lease, and a clock within the bound); without it nothing fires and the timers stay, while
    the deliveries in flight go on. `metrics` is read by the
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
        may_fire: Callable[[], bool],
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
        self._may_fire = may_fire
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
        # A job's timer holds no job: the job is read from the machine when the timer expires
        # (a million owned jobs would otherwise be kept twice, here and as the machine's rows).
        # A redrive's holds its dead letter.
        self._wheel: TimingWheel[WheelKey, DeadLetter | None] = TimingWheel(clock.wall_ms())
        # Which jobs hold a timer now: those due within the horizon (node/engine/horizon.py).
        self._horizon = Horizon(clock.wall_ms(), config.timer_horizon_ms, config.rows_per_turn)
        # The rows of the jobs of partitions that changed hands, whose timers the loop arms or
        # drops rows_per_turn at a time.
        self._moved_rows: deque[bytes] = deque()
        # The partitions this node owns in the current epoch, and which of them wait for
        # their previous owner's Release (cluster/handoff.py decides).
        self._holdings = Holdings()
        # Set while the store replays its log at start: holdings are planned once, from the
        # state caught up with, not for every epoch the replay passes through (each plan arms
        # or drops every timer of the partitions that moved: seconds at a million jobs).
        self._ownership_deferred = False
        self._held: dict[TimerKey, _Hold] = {}
        # The cluster's partition count (fixed): which partition a dead letter's job is in.
        self._partitions = machine.read(lambda m: m.partitions)
        # Due jobs of apps with no URL and no watcher: they fire when the app registers or a
        # watcher connects.
        self._parking = Parking(self.metrics)
        # Each delivery in flight, with what a watch stream tells of it (delivery/sending.py).
        self._deliveries: dict[asyncio.Task[None], Sending] = {}
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
        clock = self._clock
        deadline_s = clock.monotonic() + timeout_s
        while True:
            await self._acks.drain(max(deadline_s - clock.monotonic(), 0.0))
            if not self._held or clock.monotonic() >= deadline_s:
                break
            await clock.sleep(self._config.ack_retry_ms / 1000)
        self._stopped = True

    @property
    def owned_partitions(self) -> frozenset[int]:
        return self._holdings.owned

    @property
    def timers(self) -> int:
        return len(self._wheel)

    # ---- applied events ----

    def on_applied(self, applied: Applied) -> None:
        """The store's subscriber: keep the timers in step with every applied command."""
        result = applied.result
        if isinstance(result, Restored):
            self._resync()
            return
        if not isinstance(result, Result):
            return
        for change in result.changes:
            if change.ended is not None:
                self._wheel.cancel(change.ended)
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
        for letter in result.redrives:
            # A held redrive is read again from the machine when its hold ends.
            if attempts.redrive_key(letter) not in self._held:
                self._arm_redrive(letter)
        self.metrics.dead_letters_dropped += result.dead_letters_dropped

    def _resync(self) -> None:
        """The machine was replaced by a snapshot, no change event saying what differs (a
        lagging node installed its leader's): read the apps again, plan the holdings, and
        arm or drop the timer of every owned job as the machine holds it now. (The timer of a
        job the snapshot no longer holds stays until its deadline, then finds no such uid in
        the machine and fires nothing: no change named it ended.)"""
        self._sync_apps()
        if self._ownership_deferred:
            return  # the plan made at catch-up reads everything
        self._sync_ownership()
        self._queue_moved(tuple(self._holdings.owned))

    def _arm(self, key: JobKey, job: Job | None) -> None:
        """Keep the job's timer at its fire time, or drop it (paused, quarantined, not ours, or
        beyond the horizon). A deleted job's timer went with the change that ended it."""
        self._parking.unpark(key)
        if job is None:
            return
        if (
            not job.fires
            or not self._holdings.fires(job.partition)
            or not self._horizon.holds(job.fire_ms)
        ):
            self._wheel.cancel(job.uid)
            return
        # The timer keeps its key while the job waits: the uid the machine holds, not a copy.
        self._add_timer(self._machine.read(lambda m: m.stored_uid(job)), job.fire_ms, None)

    def _arm_redrive(self, letter: DeadLetter) -> None:
        """Keep the letter's redrive timer, due as soon as it was asked for, or drop it (done,
        or not ours)."""
        key = attempts.redrive_key(letter)
        partition = self._partition_of(letter)
        if letter.redrive_ms is None or not self._holdings.fires(partition):
            self._wheel.cancel(key)
            return
        self._add_timer(key, letter.redrive_ms, letter)

    def _add_timer(self, key: WheelKey, deadline_ms: int, letter: DeadLetter | None) -> None:
        self._wheel.add(key, deadline_ms, letter)
        if deadline_ms < self._wake_at_ms:
            self._wake.set()

    def _partition_of(self, letter: DeadLetter) -> int:
        return partition_of(letter.namespace, letter.app, letter.name, self._partitions)

    def _sync_ownership(self) -> None:
        # Nothing fires before the store has caught up (the lease needs a heartbeat committed
        # since): the loop plans the holdings once it has.
        self._ownership_deferred = not self._store.caught_up
        if self._ownership_deferred:
            return
        node_id = self._node_id
        handoff = self._machine.read(lambda m: next_holdings(m, node_id, self._holdings))
        self._holdings = handoff.holdings
        # The timers of the lost partitions' jobs are dropped with the moved rows; until then
        # none can fire (_fire looks at the holdings). One scan of the rows for both.
        self._queue_moved((*handoff.lost, *handoff.arm))
        for letter in self._redrives_in(handoff.lost):
            self._wheel.cancel(attempts.redrive_key(letter))
        self._parking.drop_partitions(set(handoff.lost))
        self._arm_redrives(handoff.arm)
        self._release_lost_partitions()

    def _arm_redrives(self, partitions: tuple[int, ...]) -> None:
        for letter in self._redrives_in(partitions):
            if attempts.redrive_key(letter) not in self._held:
                self._arm_redrive(letter)

    def _redrives_in(self, partitions: tuple[int, ...]) -> list[DeadLetter]:
        if not partitions:
            return []
        owned = frozenset(partitions)
        return self._machine.read(lambda m: m.redrives_in(owned))

    def _take_over_from(self, previous: str) -> None:
        """`previous` released what it lost this epoch: fire the partitions it handed over."""
        if self._ownership_deferred:
            return  # The plan made at catch-up reads every Release committed by then.
        handoff = after_release(self._holdings, previous)
        self._holdings = handoff.holdings
        self._queue_moved(handoff.arm)
        self._arm_redrives(handoff.arm)

    def _release_lost_partitions(self) -> None:
        """Once nothing is in flight for partitions this node lost in the current epoch, say so
        through the log (Release): their new owners wait for it before they fire them."""
        if self._stopping:
            return
        epoch = release_due(self._holdings, (hold.partition for hold in self._held.values()))
        if epoch is None:
            return
        self._holdings = replace(self._holdings, released_epoch=epoch)
        self._spawn_proposal(self._propose_release(epoch))

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
            if self._holdings.released_epoch == epoch:
                self._holdings = replace(self._holdings, released_epoch=0)
                retry_s = self._config.ack_retry_ms / 1000
                self._clock.call_later(retry_s, self._release_lost_partitions)

    def _queue_moved(self, partitions: Collection[int]) -> None:
        """Have the loop arm or drop the timers of the jobs of `partitions`. Only the scan for
        their rows holds the machine's lock (rows are immutable)."""
        if partitions:
            self._moved_rows.extend(self._machine.read(lambda m: m.rows_in_partitions(partitions)))
            self._wake.set()

    def _review_moved(self) -> None:
        """Arm or drop the timers of the next rows_per_turn moved rows' jobs, as the holdings
        are now. A row may be older than the changes seen since it was read: the jobs to arm
        are read again from the machine, which is never behind them. Decoded chunk by chunk,
        jobs are freed before the next (a list of a third of a million Jobs, freed after their
        timers were made, would leave ~300 MB of arenas that the timers keep from returning)."""
        rows = self._moved_rows
        chunk = [rows.popleft() for _ in range(min(len(rows), self._config.rows_per_turn))]
        keys = []
        for job in map(job_row.unpack, chunk):
            if not self._holdings.fires(job.partition):
                self._wheel.cancel(job.uid)
            elif job.key not in self._held:
                keys.append(job.key)
        self._arm_current(keys)

    def _arm_current(self, keys: list[JobKey]) -> None:
        """Arm each of `keys` as the machine holds its job now."""
        if keys:
            jobs = self._machine.read(lambda m: {key: m.get(*key) for key in keys})
            for key, job in jobs.items():
                self._arm(key, job)

    def _sync_apps(self) -> None:
        routes, watchers = self._machine.read(lambda m: (m.app_routes(), m.watchers()))
        keys = self._parking.update(routes, watchers)
        if keys:
            jobs = self._machine.read(lambda m: {key: m.get(*key) for key in keys})
            for key, job in jobs.items():
                self._arm(key, job)

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
        if self._ownership_deferred:
            self._sync_ownership()
            if self._ownership_deferred:
                return self._config.lease_poll_ms  # not caught up yet: look again soon
        if self._moved_rows:
            self._review_moved()
        else:
            self._refill_horizon(now_ms)
        rows_left = bool(self._moved_rows) or self._horizon.refilling
        if not self._lease():
            self._fence()
            return 0 if rows_left else self._config.lease_poll_ms
        if not self._may_fire():
            return 0 if rows_left else self._config.lease_poll_ms
        free = self._config.deliveries_in_flight_max - len(self._held)
        self._slots_full = free <= 0
        if self._slots_full:
            return 0 if rows_left else math.inf
        expired = self._wheel.expire(now_ms, min(free, self._config.fires_per_turn))
        uids = [key for key, _, _ in expired if isinstance(key, str)]
        jobs = self._machine.read(lambda m: {uid: m.get_by_uid(uid) for uid in uids})
        for key, deadline_ms, letter in expired:
            assert deadline_ms <= now_ms, "never early"
            target = jobs[key] if isinstance(key, str) else letter
            # A job changed since its timer was armed (or deleted): the change, on its way to
            # on_applied, arms it again. (A redrive nobody could take is armed again later
            # than it was asked for.)
            if target is None or (isinstance(target, Job) and not _due_at(target, deadline_ms)):
                continue
            try:
                if isinstance(target, DeadLetter):
                    self._fire_redrive(target, now_ms)
                else:
                    self._fire(target, now_ms)
            except Exception as error:
                self._give_up(target, error)
        next_ms = now_ms if rows_left else self._horizon.next_ms(now_ms)
        timer_ms = self._wheel.next_deadline_ms()
        if timer_ms is not None:
            next_ms = min(next_ms, timer_ms)
        return max(next_ms - now_ms, 0)

    def _refill_horizon(self, now_ms: int) -> None:
        """Move the horizon when half of it has passed, and arm, a turn's worth of rows at a
        time, the jobs that came into it (node/engine/horizon.py)."""
        horizon = self._horizon
        if horizon.refill_due(now_ms):
            owned = self._holdings.owned
            horizon.begin_refill(now_ms, self._machine.read(lambda m: m.rows_in_partitions(owned)))
        if not horizon.refilling:
            return
        self._arm_current([job.key for job in horizon.step() if job.key not in self._held])

    def _fence(self) -> None:
        """The lease lapsed: abandon every delivery still in flight, its connection reset, so
        that none reaches the app later than the lease allowed; their jobs' new owners deliver
        them again, and a copy of ours can only have come before theirs. A delivery whose
        trigger is out on a watch stream is spared, fenced: the app has it, and its ack, still
        recorded where this node's acks count, keeps the job from firing again once the lease
        is back (node/delivery/sending.py)."""
        abandoned = spared = 0
        for task, sending in list(self._deliveries.items()):
            if sending.fenced:
                continue  # spared by an earlier turn of the lapse
            if sending.out:
                sending.fenced = True
                spared += 1
            else:
                task.cancel()
                abandoned += 1
        if not abandoned and not spared:
            return
        log.warning(
            "lease lapsed: abandoning %d deliveries in flight, waiting for the answers to %d "
            "out on watch streams",
            abandoned,
            spared,
        )
        self.metrics.deliveries_abandoned += abandoned
        self.metrics.deliveries_spared += spared
        self._deliverer.abandon()

    async def _sleep(self, now_ms: int, sleep_ms: float) -> None:
        if self._deliveries:
            # The lease is looked at this often while deliveries are in flight: they are
            # abandoned within lease_poll_ms of its lapse, however far the next deadline is.
            sleep_ms = min(sleep_ms, self._config.lease_poll_ms)
        self._wake.clear()
        self._wake_at_ms = now_ms + sleep_ms
        alarm = None
        if not math.isinf(sleep_ms):
            alarm = self._clock.call_later(sleep_ms / 1000, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if alarm is not None:
                alarm.cancel()
            self._wake_at_ms = -math.inf

    def _fire(self, job: Job, now_ms: int) -> None:
        """Deliver the job's current attempt (its manual run first, when one waits), skip its
        missed occurrences, or park it."""
        key = job.key
        assert key not in self._held, "one trigger per job in flight"
        if not self._holdings.fires(job.partition):
            return  # a timer left from a partition lost, its drop still among the moved rows
        app_key = (job.namespace, job.app)
        if not self._parking.deliverable(app_key):
            self._parking.park(key, job.partition)
            self.metrics.count(job.namespace, job.app, TriggerResult.UNDELIVERED)
            return
        self._held[key] = _Hold(job, job.partition)
        self.metrics.jobs_in_flight = len(self._held)
        config = self._config
        # A manual run is asked for now: it is never missed, and it moves no occurrence.
        skipped = (
            skipped_occurrences(job, now_ms, config.misfire_grace_ms, config.misfire_skips_max)
            if job.manual_ms is None
            else []
        )
        if skipped:
            self.metrics.count(job.namespace, job.app, TriggerResult.SKIPPED, len(skipped))
            entries = tuple(AckEntry(job.uid, ms, Outcome.SKIPPED) for ms in skipped)
            self._acks.add(PendingAck(key, self._holdings.epoch, entries))
            return
        self._start_delivery(key, job, now_ms)

    def _fire_redrive(self, letter: DeadLetter, now_ms: int) -> None:
        """Deliver the dead letter again, as it is now: a letter forgotten, or whose redrive
        was recorded, since it was armed is left alone."""
        key = attempts.redrive_key(letter)
        assert key not in self._held, "one redrive per letter in flight"
        current = self._machine.read(lambda m: m.dead_letter(*key[1:]))
        partition = self._partition_of(letter)
        if current is None or current.redrive_ms is None or not self._holdings.fires(partition):
            return
        if not self._parking.deliverable((letter.namespace, letter.app)):
            # Not an attempt: try again later, as a trigger nobody could take.
            self._add_timer(key, now_ms + self._config.undeliverable_retry_ms, current)
            return
        self._held[key] = _Hold(current, partition)
        self.metrics.jobs_in_flight = len(self._held)
        self._start_delivery(key, current, now_ms)

    def _start_delivery(self, key: TimerKey, target: Fireable, now_ms: int) -> None:
        route = self._parking.route((target.namespace, target.app))
        epoch = self._holdings.epoch
        sending = Sending()
        task = asyncio.create_task(self._deliver(key, target, route, epoch, now_ms, sending))
        self._deliveries[task] = sending
        task.add_done_callback(self._deliveries.pop)

    def _give_up(self, target: Fireable, error: Exception) -> None:
        """A job that cannot be fired is quarantined; a redrive that cannot is logged and
        dropped here (the letter keeps its redrive; a new epoch or restart tries again)."""
        if isinstance(target, Job):
            self._quarantine(target, error)
            return
        key = attempts.redrive_key(target)
        log.error("redrive of dead letter %s failed: %s", target.id, error, exc_info=error)
        self._wheel.cancel(key)
        if self._held.pop(key, None) is not None:
            self.metrics.jobs_in_flight = len(self._held)

    def _quarantine(self, job: Job, error: Exception) -> None:
        """Stop `job` alone: log and count why, free its slot, and have the cluster record it."""
        reason = f"{type(error).__name__}: {error}"
        log.error("job %s quarantined: %s", job.key, reason, exc_info=error)
        self.metrics.jobs_quarantined += 1
        if self._held.pop(job.key, None) is not None:
            self.metrics.jobs_in_flight = len(self._held)
        self._wheel.cancel(job.uid)
        command = Quarantine(job.uid, job.next_ms, self._node_id, reason)
        self._spawn_proposal(self._propose_quarantine(command))

    async def _propose_quarantine(self, command: Quarantine) -> None:
        """Until it commits, the job stays out of the wheel here; a change that re-arms it
        (a restart, an epoch) fires it again and, failing again, quarantines it again."""
        try:
            await self._store.propose(encode_command(command), self._config.acks.propose_timeout_s)
        except TockError as error:
            log.warning("quarantine of job %s not committed: %s", command.uid, error)

    async def _deliver(
        self,
        key: TimerKey,
        target: Fireable,
        route: AppRoute | None,
        epoch: int,
        started_ms: int,
        sending: Sending,
    ) -> None:
        SENDING.set(sending)  # this task's own context: what the watch stream reads
        try:
            trigger = attempts.trigger_of(target, route)
            due_ms = attempts.deadline_ms(target)
            assert due_ms is not None, "only an armed target fires"
        except Exception as error:
            self._give_up(target, error)
            return
        # The lateness of the attempt against the time it was due; the wheel never fires early.
        self.metrics.latency.observe(max(started_ms - due_ms, 0) / 1000)
        self.metrics.deliveries_in_flight += 1
        began = self._clock.monotonic()
        try:
            report = await self._deliverer.deliver(route.url if route else "", trigger)
        except Fenced:
            # Spared by a lease lapse, its stream closed before the app answered: as abandoned.
            self._end_holds([key])
            return
        except Exception:
            # Delivery reports the app's faults as outcomes; anything raised is our bug. It
            # must still end in an ack, or the job would stay held and never fire again.
            log.exception("delivery of %s raised", trigger.trigger_id)
            report = DeliveryReport(DeliveryOutcome.FAILED)
        except asyncio.CancelledError:
            # Abandoned (the lease lapsed) or stopped past its deadline: no outcome to record; the
            # job fires again from its next owner, or from this node after a restart.
            self._end_holds([key])
            raise
        finally:
            self.metrics.deliveries_in_flight -= 1
        # An answer that came after the lease lapsed is recorded all the same: the app has it,
        # and the ack (tagged with the epoch the delivery began in) counts where the machine
        # still counts this node's acks. Dropping it would make this node, still the owner once
        # its lease is back, deliver the occurrence again.
        if report.outcome is DeliveryOutcome.UNDELIVERABLE:
            # Not an attempt: nothing is acked, and the job fires again after a pause (or
            # waits for its app, if it has neither a URL nor a watcher any more).
            self.metrics.count(trigger.namespace, trigger.app, TriggerResult.UNDELIVERED)
            await self._clock.sleep(self._config.undeliverable_retry_ms / 1000)
            self._end_holds([key])
            return
        duration_ms = round((self._clock.monotonic() - began) * 1000)
        self.metrics.delivery.observe(duration_ms / 1000)
        outcome = _OUTCOMES[report.outcome]
        self.metrics.count(trigger.namespace, trigger.app, RESULT_OF_OUTCOME[outcome])
        kind = attempts.kind_of(target)
        entry = attempts.ack_entry(kind, trigger, outcome, report, started_ms, duration_ms)
        self._acks.add(PendingAck(key, epoch, (entry,)))

    # ---- settling ----

    def _settle(self, pendings: list[PendingAck], verdict: AckVerdict) -> None:
        """The ack batcher's verdict on a batch: send its acks again, or end their holds."""
        settlement = verdicts.settle(
            pendings,
            verdict,
            epoch=self._holdings.epoch,
            stopped=self._stopped,
            owners_now=self._owners_now,
        )
        self._resend(settlement)
        self._end_holds([pending.key for pending in settlement.end])

    def _owners_now(self, pendings: Sequence[PendingAck]) -> tuple[int, list[bool]]:
        node_id = self._node_id
        partitions = [self._held[pending.key].partition for pending in pendings]
        return self._machine.read(lambda m: (m.epoch, [m.owner(p) == node_id for p in partitions]))

    def _send_again(self, pendings: tuple[PendingAck, ...]) -> None:
        settlement = verdicts.send_again(pendings, self._stopped)
        self._resend(settlement)
        if settlement.end:
            self._end_holds([pending.key for pending in settlement.end])

    def _resend(self, settlement: verdicts.Settlement) -> None:
        """Send the settlement's acks again, now or after a pause, and count them."""
        self.metrics.acks_resent += settlement.resent
        self.metrics.acks_dropped += settlement.dropped
        for pending in settlement.now:
            self._acks.add(pending)
        if settlement.later:
            retry_s = self._config.ack_retry_ms / 1000
            self._clock.call_later(retry_s, self._send_again, settlement.later)

    def _end_holds(self, keys: list[TimerKey]) -> None:
        """End the holds of `keys` and re-arm each from its latest version (a redrive always
        from the machine's: its settled ack changes no job). With fewer jobs in flight, this
        node may now propose the Release of the partitions it lost."""
        holds = [(key, self._held.pop(key)) for key in keys]
        unseen = [key for key, hold in holds if attempts.is_redrive(key) or not hold.changed]
        current = self._machine.read(lambda m: {key: _current(m, key) for key in unseen})
        for key, hold in holds:
            latest = current.get(key, hold.latest)
            if isinstance(hold.target, Job):
                assert not isinstance(latest, DeadLetter)
                self._arm(hold.target.key, latest)
            elif latest is None:
                self._wheel.cancel(attempts.redrive_key(hold.target))
            else:
                assert isinstance(latest, DeadLetter)
                self._arm_redrive(latest)
        self.metrics.jobs_in_flight = len(self._held)
        self._release_lost_partitions()
        if self._slots_full and holds:
            self._wake.set()


def _due_at(job: Job, deadline_ms: int) -> bool:
    """Whether the job's timer at `deadline_ms` is the one its current version asks for."""
    return job.fires and job.fire_ms == deadline_ms


def _current(machine: JobMachine, key: TimerKey) -> Fireable | None:
    """The job, or the dead letter of a redrive, as the machine holds it now."""
    if len(key) == 4:
        return machine.dead_letter(key[1], key[2], key[3])
    return machine.get(key[0], key[1], key[2])
