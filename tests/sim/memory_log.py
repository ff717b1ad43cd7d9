"""An in-memory replicated log for simulated nodes: one committed sequence, a simulated leader.

`MemoryLog` holds the committed commands (the durable journal every replica replays) and plays
the replication group: a leader among the connected nodes when they are a majority, elections
after a seeded delay, proposals that travel to the leader with a seeded latency (or are lost),
and commit notices that reach each connected replica with a seeded delay (or are lost, and come
with the next tick). `Replica` is one node's view: its own JobMachine, applied in log order, and
its subscribers told in log order; it is what the node's parts take as their ReplicatedLog.

The errors follow store/errors.py: a node that knows no leader answers Unavailable at once; a
proposal whose leader went away before it committed answers Unavailable (it certainly did not
apply) or OutcomeUnknown, and an unknown one is, by the seed, dropped or committed under the
next leader; a proposal not applied on its node within its timeout is OutcomeUnknown.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from store.errors import OutcomeUnknown, Unavailable
from store.log import Applied, LogStatus, Role, Subscriber
from store.machine import JobMachine
from store.shared_machine import SharedMachine
from tests.sim.loop import Process

MachineFactory = Callable[[], JobMachine]


@dataclass(frozen=True)
class LogTiming:
    # Proposer -> leader -> committed, in ms (a journal sync and a round trip or two).
    propose_ms: tuple[float, float] = (2.0, 60.0)
    # Committed -> applied on one replica, in ms.
    apply_ms: tuple[float, float] = (0.5, 20.0)
    # A proposal or a commit notice lost on the way.
    loss: float = 0.0
    election_ms: tuple[float, float] = (150.0, 600.0)
    # How often the leader tells every connected replica the commit index.
    tick_ms: float = 50.0


@dataclass
class _Proposal:
    replica: Replica
    command: bytes
    future: asyncio.Future[object]
    term: int
    timeout_s: float

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class MemoryLog:
    """The replication group of the simulated nodes; everything runs on the loop."""

    def __init__(
        self,
        addresses: dict[str, str],
        rng: random.Random,
        timing: LogTiming,
        machine_factory: MachineFactory,
    ) -> None:
        self.addresses = dict(sorted(addresses.items()))
        self.entries: list[bytes] = []
        self.leader: str | None = None
        self.term = 0
        self.elections = 0
        self._rng = rng
        self._timing = timing
        self._machine_factory = machine_factory
        self._replicas: dict[str, Replica] = {}
        self._cut: set[str] = set()
        self._election_at = 0.0
        # Commands whose proposers were told OutcomeUnknown and which the next leader commits.
        self._carried: list[bytes] = []
        # (node, loop time, its timeout) of every proposal lost on the way: a fault of that node
        # until its timeout tells it the outcome is unknown.
        self.losses: list[tuple[str, float, float]] = []

    # ---- the group ----

    def open(self, node: str, process: Process) -> Replica:
        """A fresh replica of `node` (at start or after a crash): it replays the whole log."""
        replica = Replica(self, node, process, SharedMachine(self._machine_factory()))
        self._replicas[node] = replica
        return replica

    def close(self, node: str) -> None:
        replica = self._replicas.pop(node, None)
        if replica is not None:
            replica.close()
        if self.leader == node:
            self._lose_leader()

    def cut(self, node: str) -> None:
        self._cut.add(node)
        if self.leader == node:
            self._lose_leader()

    def heal(self, node: str) -> None:
        self._cut.discard(node)

    def connected(self, node: str) -> bool:
        return node in self._replicas and node not in self._cut

    def _connected_nodes(self) -> list[str]:
        return [node for node in self.addresses if self.connected(node)]

    def has_majority(self) -> bool:
        return len(self._connected_nodes()) > len(self.addresses) // 2

    def leader_seen_by(self, node: str) -> str | None:
        return self.leader if self.connected(node) else None

    def replicas(self) -> list[Replica]:
        return [self._replicas[node] for node in sorted(self._replicas)]

    def hand_over(self, node: str) -> None:
        """The leader `node` hands leadership to another connected member, at once."""
        others = [other for other in self._connected_nodes() if other != node]
        if self.leader == node and others:
            self.term += 1
            self.leader = self._rng.choice(others)
            self.elections += 1

    def _lose_leader(self) -> None:
        self.leader = None
        self.term += 1
        loop = asyncio.get_running_loop()
        self._election_at = loop.time() + self._ms(self._timing.election_ms) / 1000

    def _ms(self, bounds: tuple[float, float]) -> float:
        return self._rng.uniform(*bounds)

    async def run(self, until_s: float) -> None:
        """The group's clock: elections and commit-index ticks, until loop time `until_s`."""
        loop = asyncio.get_running_loop()
        while loop.time() < until_s:
            self.tick()
            await asyncio.sleep(self._timing.tick_ms / 1000)

    def tick(self) -> None:
        loop = asyncio.get_running_loop()
        if self.leader is not None and not self.has_majority():
            # A leader that hears no majority steps down: it could commit nothing more.
            self._lose_leader()
        if self.leader is None and loop.time() >= self._election_at and self.has_majority():
            self.leader = self._rng.choice(self._connected_nodes())
            self.elections += 1
            carried, self._carried = self._carried, []
            for command in carried:
                self._commit(command, None)
        for node in self._connected_nodes():
            self._notify(self._replicas[node])

    # ---- proposals ----

    def submit(self, proposal: _Proposal) -> None:
        if self._rng.random() < self._timing.loss:
            # Lost on the way to the leader: the proposer hears nothing and times out.
            now = asyncio.get_running_loop().time()
            self.losses.append((proposal.replica.node, now, proposal.timeout_s))
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self._ms(self._timing.propose_ms) / 1000, self._arrive, proposal)

    def _arrive(self, proposal: _Proposal) -> None:
        replica = proposal.replica
        if (
            proposal.term == self.term
            and self.leader is not None
            and self.has_majority()
            and replica.alive
            and self.connected(replica.node)
        ):
            self._commit(proposal.command, proposal)
            return
        # Leadership changed, or the proposer was cut off, while the proposal travelled.
        draw = self._rng.random()
        if draw < 1 / 3:
            proposal.fail(Unavailable("leadership changed before the proposal was appended"))
            return
        proposal.fail(OutcomeUnknown("leadership changed after the proposal left"))
        if draw >= 2 / 3:
            if self.leader is not None and self.has_majority():
                # The leader elected meanwhile has the entry: it commits it now. (Raft never
                # commits it at a later election: a leader without it overwrites it.)
                self._commit(proposal.command, None)
            else:
                self._carried.append(proposal.command)

    def _commit(self, command: bytes, proposal: _Proposal | None) -> None:
        self.entries.append(command)
        index = len(self.entries)
        if proposal is not None and proposal.replica.alive:
            proposal.replica.expect(index, proposal.future)
        for node in self._connected_nodes():
            self._notify(self._replicas[node])

    def _notify(self, replica: Replica) -> None:
        if self._rng.random() < self._timing.loss:
            return
        loop = asyncio.get_running_loop()
        delay_s = self._ms(self._timing.apply_ms) / 1000
        loop.call_later(delay_s, replica.learn, len(self.entries))


class Replica:
    """One node's replica of the log: a ReplicatedLog for that node's parts."""

    def __init__(
        self, group: MemoryLog, node: str, process: Process, machine: SharedMachine
    ) -> None:
        self.node = node
        self.machine = machine
        self.alive = True
        self.applied = 0
        self._group = group
        self._process = process
        self._ready = False
        self._subscribers: list[Subscriber] = []
        self._waiting: dict[int, asyncio.Future[object]] = {}
        self._barriers: list[tuple[int, asyncio.Future[None]]] = []

    def close(self) -> None:
        self.alive = False
        self._subscribers.clear()

    # ---- ReplicatedLog ----

    @property
    def caught_up(self) -> bool:
        return self._ready

    @property
    def ready(self) -> bool:
        return self._ready

    async def propose(self, command: bytes, timeout_s: float) -> object:
        group = self._group
        if not self.alive:
            raise Unavailable("the replica is not running")
        if group.leader_seen_by(self.node) is None:
            raise Unavailable("no leader known to this node")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        group.submit(_Proposal(self, command, future, group.term, timeout_s))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise OutcomeUnknown(f"not applied within {timeout_s} s; it may still be") from None

    async def barrier(self, timeout_s: float) -> None:
        group = self._group
        if not self.alive or group.leader_seen_by(self.node) is None:
            raise Unavailable("no leader known to this node")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers.append((len(group.entries), future))
        self._settle_barriers()
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise Unavailable(f"barrier not confirmed within {timeout_s} s") from None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def status(self) -> LogStatus:
        group = self._group
        leader = group.leader_seen_by(self.node) if self.alive else None
        role = Role.LEADER if leader == self.node else Role.FOLLOWER
        # The memory log never compacts nor splits a command: no snapshot, no assembly. It
        # counts the group's elections, not the ones this replica heard of.
        return LogStatus(
            role=role if self.alive else Role.STOPPED,
            leader=None if leader is None else group.addresses[leader],
            term=group.term,
            commit_index=len(group.entries),
            applied_index=self.applied,
            log_entries=len(group.entries),
            has_quorum=self.alive and group.connected(self.node) and group.has_majority(),
            ready=self._ready,
            members=tuple(sorted(group.addresses.values())),
            reachable=frozenset(
                address
                for node, address in group.addresses.items()
                if node != self.node
                and self.alive
                and group.connected(self.node)
                and group.connected(node)
            ),
            snapshot_index=0,
            snapshot_wall_ms=0,
            chunk_assemblies=0,
            leader_changes=group.elections,
        )

    def cluster_addresses(self) -> frozenset[str]:
        return frozenset(self._group.addresses.values())

    def transfer_leadership(self) -> None:
        if self._group.leader == self.node:
            self._group.hand_over(self.node)

    # ---- replication ----

    def expect(self, index: int, future: asyncio.Future[object]) -> None:
        """The proposal `future` waits for committed entry `index`."""
        self._waiting[index] = future

    def learn(self, commit_index: int) -> None:
        """A commit notice: apply every entry up to `commit_index`, in order, as the tick thread
        does, and hand the events and proposal results to the loop in the same order."""
        if not self.alive:
            return
        entries = self._group.entries
        loop = asyncio.get_running_loop()
        for index in range(self.applied + 1, min(commit_index, len(entries)) + 1):
            command = entries[index - 1]
            result = self.machine.apply_command(command)
            self.applied = index
            loop.call_soon(
                self._publish, Applied(index, command, result), context=self._process.context
            )
            future = self._waiting.pop(index, None)
            if future is not None:
                loop.call_soon(_resolve, future, result, context=self._process.context)
        if self.applied == len(entries):
            self._ready = True
        self._settle_barriers()

    def _publish(self, applied: Applied) -> None:
        for subscriber in tuple(self._subscribers):
            subscriber(applied)

    def _settle_barriers(self) -> None:
        kept = []
        for index, future in self._barriers:
            if self.applied >= index:
                if not future.done():
                    future.set_result(None)
            else:
                kept.append((index, future))
        self._barriers = kept


def _resolve(future: asyncio.Future[object], result: object) -> None:
    if not future.done():
        future.set_result(result)
