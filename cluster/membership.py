"""Liveness, leases and epochs: who may fire, decided through the log .

Every node commits a heartbeat through Raft every `heartbeat_s`. A node holds a lease, and may
fire triggers, only while its own last heartbeat committed less than `lease_s` ago, counted from
the moment it was *sent* on the node's monotonic clock: a node cut off from the majority (or
paused) stops firing by itself once the lease runs out, without hearing from anyone.

The leader watches the committed heartbeats (every `epoch_check_s`). A member whose lease has
surely run out is dropped from the live set, and a member heartbeating again is taken back; each
change is committed as a new epoch. Partitions move only with an epoch, so the old owner has
stopped firing before the new owner starts: no duplicate from a healthy failover, only from
deliveries in flight when a node died.

The leader knows a lease has run out in two ways. It applied the member's last heartbeat more
than `lease_s + heard_margin_s` ago by its own monotonic clock: the heartbeat was sent before it
was applied, so its lease, counted from the sending, ended earlier; no clock but the leader's
takes part, and the margin covers the rates of two monotonic clocks and a delivery that begins
as a lease ends. Or the heartbeat's wall stamp, judged against the leader's wall clock, is
`dead_s` old: the way for a heartbeat the leader applied late (one it caught up with as it was
elected, or replayed at its start), which assumes clocks within a small fraction of
`dead_s - lease_s` of each other, as NTP gives.

A node that may not fire (`healthy()` false: one of its tasks keeps crashing, or its trigger
engine does not run; or its wall clock has been off from the cluster's median by more than
`max_clock_offset_ms` for `clock_offset_persist_s`, see cluster/clock_offset.py) gives up its
lease at once and heartbeats "standing by": the leader takes it out of the live set at once and
its partitions move to the nodes that may fire. An offset beyond the bound stops the node's
firing at once (`may_fire`; its deliveries in flight go on, since it keeps its lease and its
partitions: `holds_lease`), but stands it by only once it has lasted: a node too busy to apply
heartbeats promptly reads as off for a second or two, and standing by then moved every one of its
partitions out and back each time. An unhealthy leader goes on committing epochs (someone must),
and keeps only the Raft leadership, which owns no partition; a leader whose clock is off hands
leadership to another member, since it would judge every heartbeat's age by a wrong clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.clock_offset import ClockOffsetEstimator
from store.clock import Clock
from store.codec import Heartbeat, Member, SetMembers, encode_command
from store.errors import TockError, ValidationError
from store.fault_points import fault_point
from store.log import Applied, ReplicatedLog, Role
from store.machine import HeartbeatSeen, Result
from store.schedule import ZONE_DATA_VERSION
from store.shared_machine import SharedMachine

log = logging.getLogger(__name__)

# The heartbeat loop runs supervised under this name.
TASK = "membership"

# Starts a long-lived task under supervision (node/supervisor.py's Supervisor.spawn).
Spawn = Callable[[str, Callable[[], Coroutine[Any, Any, None]]], "asyncio.Task[None]"]


@dataclass(frozen=True, kw_only=True)
class MembershipConfig:
    heartbeat_s: float = 0.2
    # A dead node's partitions move about this long after its last heartbeat, so the shorter
    # the faster a failover. But a leader's death lapses the survivors' leases when the
    # election and a heartbeat outlast it, which abandons their deliveries in flight. A leader
    # whose process died is replaced in 0.1-0.3 s (its followers see its connections close,
    # store/raft/transport.py section 10); one paused or cut off takes an election timeout
    # (0.4-1.4 s, the first of the survivors'; shorter timeouts brought spurious elections
    # under saturated load), which 0.9 s outlasts about half the time.
    lease_s: float = 0.9
    # A member is dead once the leader applied its last heartbeat lease_s + heard_margin_s ago
    # by its own monotonic clock, or once the heartbeat's wall stamp is dead_s old by the
    # leader's wall clock.
    heard_margin_s: float = 0.05
    dead_s: float = 1.3
    # How often the leader looks for a member turned dead (and for one come back): a dead
    # node's partitions move at most this long after it was found dead.
    epoch_check_s: float = 0.05
    # A node whose wall clock is further than this from the median of the live members' stops
    # firing, gives up leadership and is not ready (cluster/clock_offset.py). Below the margin
    # between lease and dead, so that heartbeat ages judged on the leader's clock stay right.
    max_clock_offset_ms: int = 250
    # A member's latest heartbeat sample counts for the offset this long (several heartbeats).
    clock_sample_age_s_max: float = 2.0
    # How long the offset must stay beyond the bound before the node stands by (its partitions
    # move, it is not ready, it hands leadership over). It stops firing at once; the wait keeps
    # a busy node, whose heartbeats apply late for a second or two and read as an offset, from
    # moving every partition twice each time (dozens of epochs a minute under saturation).
    clock_offset_persist_s: float = 3.0

    def validate(self) -> None:
        if not 0 < self.heartbeat_s < self.lease_s < self.dead_s:
            raise ValidationError(
                f"heartbeat_s, lease_s and dead_s must satisfy 0 < heartbeat_s < lease_s < dead_s, "
                f"not {self.heartbeat_s}, {self.lease_s} and {self.dead_s}"
            )
        if not 0 < self.heard_margin_s < self.dead_s - self.lease_s:
            raise ValidationError(
                f"heard_margin_s must satisfy 0 < heard_margin_s < dead_s - lease_s, "
                f"not {self.heard_margin_s}"
            )
        if not 0 < self.epoch_check_s <= self.heartbeat_s:
            raise ValidationError(
                f"epoch_check_s must satisfy 0 < epoch_check_s <= heartbeat_s, "
                f"not {self.epoch_check_s}"
            )
        if not 0 < self.max_clock_offset_ms < (self.dead_s - self.lease_s) * 1000:
            raise ValidationError(
                f"max_clock_offset_ms must be positive and below (dead_s - lease_s), "
                f"not {self.max_clock_offset_ms}"
            )
        if self.clock_sample_age_s_max <= self.heartbeat_s:
            raise ValidationError("clock_sample_age_s_max must exceed heartbeat_s")
        if self.clock_offset_persist_s < 0:
            raise ValidationError("clock_offset_persist_s must be >= 0")

    @property
    def leader_grace_s(self) -> float:
        """How long a new leader waits before it declares dead a member it holds a connection
        to: long enough for every live node to commit a heartbeat under it (heartbeats fail
        fast during an election and are retried every heartbeat_s), so a slow election does not
        kill everybody. A member it holds no connection to gets no grace."""
        return 3 * self.heartbeat_s


@dataclass(frozen=True)
class MembersView:
    """The committed membership as one read sees it."""

    epoch: int
    members: tuple[Member, ...]
    live: tuple[str, ...]
    heartbeats: dict[str, int]
    announced: dict[str, Member]
    # Members whose last heartbeat stands by: they offer to fire nothing.
    standing_by: frozenset[str] = frozenset()


def next_membership(
    view: MembersView,
    raft_members: frozenset[str],
    now_ms: int,
    config: MembershipConfig,
    may_declare_dead: Collection[str],
    heard_s: Mapping[str, float],
) -> tuple[tuple[Member, ...], tuple[str, ...]] | None:
    """The (members, live) the leader should commit now, or None when nothing changes. Pure.

    Members are the nodes of the Raft cluster (by raft address) that have announced themselves
    in a heartbeat. A live member stays live until the leader applied its last heartbeat
    `lease_s + heard_margin_s` ago (`heard_s`: seconds by the leader's monotonic clock; a member
    missing was heard just now) or the heartbeat's wall stamp is `dead_s` old at `now_ms`; a
    member not live becomes live once its heartbeat is fresher than `lease_s` by both (it has
    caught up: a node heartbeats only once it is ready). Only the members in `may_declare_dead`
    may be declared dead: during a new leader's first `leader_grace_s`, while the live nodes'
    first heartbeats under it are still arriving, those it holds no connection to.
    """
    members = tuple(
        sorted(
            (m for m in view.announced.values() if m.raft in raft_members),
            key=lambda m: m.id,
        )
    )
    ids = {m.id for m in members}
    live = []
    for node in sorted(ids):
        age_ms = now_ms - view.heartbeats.get(node, -(10**15))
        if node in view.standing_by:
            # It stopped firing before it said so: its partitions may move at once.
            keep = False
        elif node in view.live:
            dead = (
                heard_s.get(node, 0.0) >= config.lease_s + config.heard_margin_s
                or age_ms >= config.dead_s * 1000
            )
            keep = not dead or node not in may_declare_dead
        else:
            # Fresh by both clocks: a member whose wall clock runs ahead does not come back on
            # stamps that look young while the leader has not heard from it.
            keep = age_ms < config.lease_s * 1000 and heard_s.get(node, 0.0) < config.lease_s
        if keep:
            live.append(node)
    if members == view.members and tuple(live) == view.live:
        return None
    return members, tuple(live)


class Membership:
    """Runs this node's heartbeats, holds its lease, and (on the leader) commits epochs."""

    def __init__(
        self,
        me: Member,
        store: ReplicatedLog,
        machine: SharedMachine,
        clock: Clock,
        config: MembershipConfig,
        *,
        spawn: Spawn,
        healthy: Callable[[], bool],
    ) -> None:
        config.validate()
        self._me = me
        self._store = store
        self._machine = machine
        self._clock = clock
        self._config = config
        self._spawn = spawn
        self._healthy = healthy
        self._lease_until = float("-inf")
        # When (monotonic) this node last gave its lease up: a heartbeat sent before then renews
        # nothing, whenever it commits.
        self._lease_given_up_at = float("-inf")
        # Heartbeats proposed and not yet answered (see _send_beat), and when the next is due.
        self._beats: set[asyncio.Task[None]] = set()
        self._next_beat = float("-inf")
        # What a heartbeat task raised beyond a failed proposal: the loop raises it in turn.
        self._beat_crash: BaseException | None = None
        self._leading_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._zone_data_warned: set[tuple[str, str]] = set()
        self._offsets = ClockOffsetEstimator(me.id, config.clock_sample_age_s_max)
        self._unsubscribe: Callable[[], None] | None = None
        # The offset that made this node give up, or None while its clock is within the bound
        # (or has been beyond it for less than clock_offset_persist_s).
        self._skewed_ms: int | None = None
        # Since when (monotonic) the offset has been beyond the bound, or None.
        self._beyond_since: float | None = None
        # member -> (wall stamp of its last heartbeat, monotonic time this node applied it).
        self._heard: dict[str, tuple[int, float]] = {}

    def holds_lease(self) -> bool:
        """True while this node's lease holds and it is live in the current epoch: no other node
        fires its partitions, and its deliveries in flight may go on."""
        if self._clock.monotonic() >= self._lease_until:
            return False
        return self._machine.read(lambda m: self._me.id in m.live)

    def may_fire(self) -> bool:
        """True while this node holds its lease and its clock is known to be within the bound:
        it may start a delivery. A clock read beyond the bound stops new deliveries at once but
        does not abandon those in flight (their triggers went out by a clock then trusted, and
        no other node fires the partitions until this one stands by and gives up its lease)."""
        return self.holds_lease() and self._clock_known_good()

    def clock_not_ready_reason(self) -> str | None:
        """Why this node is not ready because of its clock, or None."""
        if self._skewed_ms is None:
            return None
        return (
            f"wall clock offset {self._skewed_ms:+d} ms from the cluster's median is beyond "
            f"{self._config.max_clock_offset_ms} ms"
        )

    def start(self) -> None:
        self._unsubscribe = self._store.subscribe(self._on_applied)
        self._task = self._spawn(TASK, self._run)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        beats = list(self._beats)
        for beat in beats:
            beat.cancel()
        await asyncio.gather(*beats, return_exceptions=True)
        self._lease_until = float("-inf")

    def _on_applied(self, applied: Applied) -> None:
        result = applied.result
        if not (isinstance(result, Result) and isinstance(result.value, HeartbeatSeen)):
            return
        seen = result.value
        # A heartbeat replayed at start counts as heard now: later than it was sent, as the
        # judging of leases needs (_heard_s).
        self._heard[seen.node] = (seen.now_ms, self._clock.monotonic())
        # Heartbeats replayed at start, or caught up with, are old: they say nothing of clocks.
        if self._store.ready:
            self._offsets.observe(
                seen.node, seen.now_ms, self._clock.wall_ms(), self._clock.monotonic()
            )

    def _check_clock(self) -> None:
        """Stand by (no partitions, not ready, not leading) once the clock has been off by more
        than the bound for clock_offset_persist_s; firing stops at once (_clock_known_good)."""
        now = self._clock.monotonic()
        offset_ms = self._offsets.offset_ms(self._member_ids(), now)
        if offset_ms is None:
            return
        bound_ms = self._config.max_clock_offset_ms
        if abs(offset_ms) <= bound_ms:
            if self._skewed_ms is not None:
                log.warning("wall clock back within %d ms of the cluster's", offset_ms)
            elif self._beyond_since is not None:
                log.info("wall clock back within %d ms of the cluster's: firing again", offset_ms)
            self._skewed_ms = self._beyond_since = None
            return
        if self._beyond_since is None:
            self._beyond_since = now
            log.info(
                "wall clock %+d ms from the cluster's median (bound %d ms): not firing while it "
                "lasts; standing by if it lasts %.1f s",
                offset_ms,
                bound_ms,
                self._config.clock_offset_persist_s,
            )
        if now - self._beyond_since < self._config.clock_offset_persist_s:
            return
        if self._skewed_ms is None:
            log.error(
                "wall clock %+d ms from the cluster's median (bound %d ms) for %.1f s: not "
                "firing, not leading and not ready until it is back within the bound",
                offset_ms,
                bound_ms,
                now - self._beyond_since,
            )
        self._skewed_ms = offset_ms

    def _clock_known_good(self) -> bool:
        """Whether the estimate, as of now, puts this clock within the bound (a node fires by
        its clock only then)."""
        offset_ms = self._offsets.offset_ms(self._member_ids(), self._clock.monotonic())
        return offset_ms is not None and abs(offset_ms) <= self._config.max_clock_offset_ms

    def _member_ids(self) -> tuple[str, ...]:
        return self._machine.read(lambda m: tuple(member.id for member in m.members))

    async def _run(self) -> None:
        self._next_beat = float("-inf")
        while True:
            fault_point(TASK)
            crash, self._beat_crash = self._beat_crash, None
            if crash is not None:
                raise crash
            if self._store.ready and self._clock.monotonic() >= self._next_beat:
                self._next_beat = self._clock.monotonic() + self._config.heartbeat_s
                self._check_clock()
                # A node that may not fire still heartbeats, standing by: its clock goes on
                # being measured, and the leader moves its partitions at once.
                standing_by = not self._healthy() or self._skewed_ms is not None
                if standing_by:
                    self._lease_until = float("-inf")
                    self._lease_given_up_at = self._clock.monotonic()
                self._send_beat(standing_by)
                if self._skewed_ms is not None and self._store.status().role is Role.LEADER:
                    # A leader judges every heartbeat's age by its own clock: a skewed one
                    # would declare live members dead. Another member leads instead.
                    self._store.transfer_leadership()
            if self._store.ready and self._skewed_ms is None:
                await self._lead_if_leader()
            await self._clock.sleep(self._config.epoch_check_s)

    def _send_beat(self, standing_by: bool) -> None:
        """Propose a heartbeat without waiting for it. A proposal whose outcome stays unknown
        (lost with a leader, or slow) takes up to lease_s to fail; waiting for it would send the
        next heartbeat only then, and the leader, which declares a member dead a lease after it
        last applied one of its heartbeats, would take one lost proposal for a death. At most
        as many as a lease holds are in flight: beyond that the cluster is not committing
        anyway, and more would only queue."""
        if len(self._beats) * self._config.heartbeat_s >= self._config.lease_s:
            return
        beat = asyncio.ensure_future(self._beat(standing_by))
        self._beats.add(beat)
        beat.add_done_callback(self._beat_done)

    def _beat_done(self, beat: asyncio.Task[None]) -> None:
        self._beats.discard(beat)
        if not beat.cancelled() and beat.exception() is not None:
            self._beat_crash = beat.exception()

    async def _beat(self, standing_by: bool) -> None:
        """Commit one heartbeat, renewing the lease unless standing by (or given up since)."""
        sent = self._clock.monotonic()
        heartbeat = Heartbeat(
            self._me.id,
            self._clock.wall_ms(),
            self._me.raft,
            self._me.http,
            ZONE_DATA_VERSION,
            standing_by,
        )
        try:
            await self._store.propose(encode_command(heartbeat), self._config.lease_s)
        except TockError as error:
            log.debug("heartbeat not committed: %s", error)
            # No leader (an election) or no commit: try again soon rather than a whole
            # heartbeat later, so that leases survive an election whenever they can.
            retry = self._clock.monotonic() + self._config.epoch_check_s
            self._next_beat = min(self._next_beat, retry)
            return
        if not standing_by and sent > self._lease_given_up_at:
            # Heartbeats may commit out of the order they were sent in.
            self._lease_until = max(self._lease_until, sent + self._config.lease_s)
        self._compare_zone_data()

    def _compare_zone_data(self) -> None:
        """Say once per member and version when a member computes times with other zone data."""
        announced = self._machine.read(lambda m: m.zone_data())
        for node, version in sorted(announced.items()):
            seen = (node, version)
            if version and version != ZONE_DATA_VERSION and seen not in self._zone_data_warned:
                self._zone_data_warned.add(seen)
                log.warning(
                    "member %s uses time-zone data %s and this node %s: their trigger times for "
                    "zoned schedules may differ; run every node with the same tock release",
                    node,
                    version,
                    ZONE_DATA_VERSION,
                )

    def _heard_s(self, heartbeats: Mapping[str, int]) -> dict[str, float]:
        """member -> seconds since this node applied its last committed heartbeat. A heartbeat
        the read holds but no callback has told of yet was applied just now."""
        now = self._clock.monotonic()
        heard: dict[str, tuple[int, float]] = {}
        for node, stamp_ms in heartbeats.items():
            known = self._heard.get(node)
            heard[node] = known if known is not None and known[0] == stamp_ms else (stamp_ms, now)
        # Former members' heartbeats leave the machine; they leave this table with them.
        self._heard = heard
        return {node: now - applied for node, (_, applied) in heard.items()}

    async def _lead_if_leader(self) -> None:
        if self._store.status().role is not Role.LEADER:
            self._leading_since = None
            return
        now = self._clock.monotonic()
        if self._leading_since is None:
            self._leading_since = now
        view = self._machine.read(
            lambda m: MembersView(
                m.epoch, m.members, m.live, m.heartbeats(), m.announced(), m.standing_by()
            )
        )
        may_declare_dead: Collection[str] = view.live
        if now - self._leading_since < self._config.leader_grace_s:
            # A member this leader holds no connection to cannot be heartbeating through it (a
            # SIGKILLed node's connections close at once): it gets no grace.
            reachable = self._store.status().reachable
            may_declare_dead = [
                m.id for m in view.members if m.raft not in reachable and m.id != self._me.id
            ]
        now_ms = self._clock.wall_ms()
        change = next_membership(
            view,
            self._store.cluster_addresses(),
            now_ms,
            self._config,
            may_declare_dead,
            self._heard_s(view.heartbeats),
        )
        if change is None:
            return
        members, live = change
        log.info("epoch %d: live %s", view.epoch + 1, ", ".join(live) or "(none)")
        judged = tuple(
            (node, view.heartbeats[node])
            for node in sorted(set(view.live) - set(live))
            if node in view.heartbeats and node not in view.standing_by
        )
        command = SetMembers(view.epoch + 1, members, live, now_ms, 0, judged)
        try:
            result = await self._store.propose(encode_command(command), self._config.lease_s)
        except TockError as error:
            log.warning("epoch %d not committed: %s", view.epoch + 1, error)
            return
        if isinstance(result, Result) and not result.ok:
            # A heartbeat landed after this read, or another epoch did: decide again next beat.
            log.info("epoch %d refused: %s", view.epoch + 1, result.message)
