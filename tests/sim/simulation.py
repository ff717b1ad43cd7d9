"""One simulation run: three nodes, a workload, the seed's faults, heal, quiescence, the checks.

Everything runs on one VirtualLoop from one `random.Random(seed)`: the scenario is drawn first,
then the run draws every latency, loss, election and app answer from the same generator, in an
order fixed by the (single-threaded, virtual-time) loop. The same seed replays the same run.

The timeline: the nodes start and settle into one epoch with every node live; the app registers;
jobs are created at random times through random nodes while the faults strike one after the
other; the whole cluster may then stop cleanly and restart; once every job has finished (bounded
in virtual time) every node quiesces, the replicas catch up, and the history is checked.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from cluster.ring import Ring
from store.codec import Put, RegisterApp, decode_command, encode_command
from store.errors import TockError
from store.failure_policy import FailureKind, FailurePolicy
from store.jobs import DATA_TYPE_JSON, JobSpec
from store.machine import ErrorKind, JobMachine, Result
from store.schedule import format_rfc3339_ms
from tests.chaos.history import Fault
from tests.sim.app import SimApp
from tests.sim.checks import Created, check
from tests.sim.clock import WALL_BASE_MS, true_wall_ms
from tests.sim.loop import run
from tests.sim.memory_log import MemoryLog
from tests.sim.node import SimNode
from tests.sim.scenario import NODES, FaultPlan, Scenario, scenario_of

NAMESPACE, APP = "default", "app"
PARTITIONS = 64
EVERY_MS = 1000
# Virtual seconds: every bound of a run.
SETTLE_S_MAX = 20.0
WORKLOAD_S = 8.0
RUN_S_MAX = 240.0
POLL_S = 0.1
CREATE_ATTEMPTS_MAX = 200
CREATE_RETRY_S = 0.25
PROPOSE_TIMEOUT_S = 2.0
CATCH_UP_S = 2.0
RETRY_INTERVAL_MS = 300


class SimulationStuck(AssertionError):
    """The run did not reach a state it waits for within its virtual-time bound."""


@dataclass
class Outcome:
    scenario: Scenario
    violations: list[str] = field(default_factory=list)
    sends: int = 0
    log_entries: int = 0
    virtual_s: float = 0.0


def simulate(seed: int) -> Outcome:
    """Run the simulation of `seed` on a fresh virtual loop and check its history."""
    rng = random.Random(seed)
    scenario = scenario_of(seed, rng)
    return run(_World(scenario, rng).run())


class _World:
    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self.created: list[Created] = []

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        start_s = loop.time()
        deadline_s = start_s + RUN_S_MAX
        addresses = {node: f"sim://{node}/raft" for node in NODES}
        self.group = MemoryLog(
            addresses, self.rng, self.scenario.log, lambda: JobMachine(PARTITIONS, Ring)
        )
        self.app = SimApp(self.rng, self.scenario.app)
        self.nodes = {node: SimNode(node, self.group, self.app) for node in NODES}
        ticker = loop.create_task(self.group.run(deadline_s + CATCH_UP_S + 1))
        outcome = Outcome(self.scenario)
        try:
            for node in self.nodes.values():
                node.start()
            await self._wait_until(self._settled, SETTLE_S_MAX, "a first epoch with every node")
            await self._propose(encode_command(RegisterApp(NAMESPACE, APP, "http://app.sim")))
            workload = loop.create_task(self._workload())
            await self._faults()
            await workload
            if self.scenario.cluster_stop_after_s is not None:
                await asyncio.sleep(self.scenario.cluster_stop_after_s)
                await stop_cluster(list(self.nodes.values()))
                await asyncio.sleep(self.rng.uniform(0.1, 2.0))
                for node in self.nodes.values():
                    node.start()
            remaining_s = deadline_s - loop.time()
            await self._wait_until(self._finished, remaining_s, "every job finished")
        except SimulationStuck as stuck:
            outcome.violations.append(f"stuck: {stuck}")
        # Every node quiesces and its store stays up, so that the replicas can catch up.
        await asyncio.gather(*(node.quiesce() for node in self.nodes.values()))
        await asyncio.sleep(CATCH_UP_S)
        ticker.cancel()
        outcome.violations += check(
            self.app.sends,
            self.created,
            [*self.faults, *self._losses()],
            self._replica_digests(),
            self._final_jobs(),
            self.errors,
            self._recreated(),
        )
        outcome.sends = len(self.app.sends)
        outcome.log_entries = len(self.group.entries)
        outcome.virtual_s = loop.time() - start_s
        return outcome

    def _recreated(self) -> frozenset[str]:
        """Uids of jobs whose create was committed more than once: the workload re-sends a
        create whose outcome was unknown, and a copy that lands after the job already ended
        creates it again, so its occurrences may rightly go out twice (the client asked twice)."""
        seen: set[str] = set()
        again: set[str] = set()
        for entry in self.group.entries:
            command = decode_command(entry)
            if isinstance(command, Put):
                (again if command.uid in seen else seen).add(command.uid)
        return frozenset(again)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        what = context.get("exception") or context.get("task") or context.get("future")
        self.errors.append(f"{context.get('message')}: {what!r}")

    # ---- waiting ----

    async def _wait_until(self, condition: Any, timeout_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            if loop.time() >= deadline:
                raise SimulationStuck(f"no {what} within {timeout_s:.1f} virtual s")
            await asyncio.sleep(POLL_S)

    def _settled(self) -> bool:
        live = set(NODES)
        return all(
            node.replica is not None and set(node.replica.machine.read(lambda m: m.live)) == live
            for node in self.nodes.values()
        )

    def _finished(self) -> bool:
        if len(self.created) < self.scenario.jobs:
            return False
        # A restarted replica starts empty: only one that has caught up tells.
        committed = len(self.group.entries)
        replicas = [r for r in self.group.replicas() if r.applied == committed]
        return bool(replicas) and all(r.machine.read(lambda m: m.count()) == 0 for r in replicas)

    # ---- the workload ----

    async def _propose(self, command: bytes) -> Result | None:
        """Propose through random up nodes until the command surely applied (bounded); its
        result, or None if the command was found applied by an earlier copy."""
        for _ in range(CREATE_ATTEMPTS_MAX):
            up = [node for node in self.nodes.values() if node.replica is not None]
            if up:
                node = self.rng.choice(up)
                assert node.replica is not None
                try:
                    result = await node.replica.propose(command, PROPOSE_TIMEOUT_S)
                except TockError:
                    pass
                else:
                    assert isinstance(result, Result)
                    return result
            await asyncio.sleep(CREATE_RETRY_S)
        raise SimulationStuck(f"a command not applied in {CREATE_ATTEMPTS_MAX} attempts")

    async def _workload(self) -> None:
        loop = asyncio.get_running_loop()
        times = sorted(self.rng.uniform(0, WORKLOAD_S) for _ in range(self.scenario.jobs))
        start_s = loop.time()
        for index, at_s in enumerate(times):
            await asyncio.sleep(max(0.0, start_s + at_s - loop.time()))
            await self._create(index)

    async def _create(self, index: int) -> None:
        stamper = self.rng.choice([node for node in self.nodes.values()])
        now_ms = stamper.clock.wall_ms()
        name, uid = f"job-{index}", f"uid-{index}"
        repeating = self.rng.random() < 0.6
        if repeating:
            repeats = self.rng.randint(1, 6)
            expected = tuple(now_ms + k * EVERY_MS for k in range(1, repeats + 1))
            schedule, due_time = f"@every {EVERY_MS // 1000}s", None
        else:
            repeats = None
            due_ms = now_ms + self.rng.randint(-500, 5000)
            expected = (due_ms,)
            schedule, due_time = None, format_rfc3339_ms(due_ms)
        spec = JobSpec(
            name=name,
            schedule=schedule,
            due_time=due_time,
            repeats=repeats,
            ttl=None,
            data=b'{"job": %d}' % index,
            data_type=DATA_TYPE_JSON,
            failure_policy=FailurePolicy(FailureKind.CONSTANT, RETRY_INTERVAL_MS, None),
        )
        put = Put(NAMESPACE, APP, spec, False, now_ms, uid, "UTC")
        result = await self._propose(encode_command(put))
        # A conflict is an earlier copy of this very command, applied: the job is the same.
        acked = result is not None and (result.ok or result.error is ErrorKind.CONFLICT)
        self.created.append(Created(name, uid, expected, acked))

    # ---- faults ----

    async def _faults(self) -> None:
        for plan in self.scenario.faults:
            await asyncio.sleep(plan.gap_s)
            await self._strike(plan)

    async def _strike(self, plan: FaultPlan) -> None:
        loop = asyncio.get_running_loop()
        target = plan.node
        if plan.kind == "crash-leader":
            target = self.group.leader or plan.node
        node = self.nodes[target]
        start_ms = true_wall_ms(loop)
        if plan.kind == "clock-jump":
            node.clock.jump(plan.jump_ms)
            # The node's clock stays ahead: while it leads, it judges every other node's
            # heartbeats old and may declare them dead under their leases. The fault concerns
            # every node, to the end of the run.
            self.faults.append(Fault(plan.kind, NODES, start_ms, true_wall_ms(loop) + 10**9))
            return
        if plan.kind == "partition":
            self.group.cut(target)
        else:
            node.crash()
        await asyncio.sleep(plan.duration_s)
        if plan.kind == "partition":
            self.group.heal(target)
        else:
            node.start()
        self.faults.append(Fault(plan.kind, (target,), start_ms, true_wall_ms(loop)))

    def _losses(self) -> list[Fault]:
        # A lost proposal is a fault of its node until its timeout. (A lost heartbeat once let
        # the leader drop a node just as its next heartbeat renewed its lease; the machine now
        # refuses such an epoch, see SetMembers.now_ms.)
        return [
            Fault("loss", (node,), _ms(at_s), _ms(at_s + timeout_s))
            for node, at_s, timeout_s in self.group.losses
        ]

    # ---- the final state ----

    def _replica_digests(self) -> dict[str, str]:
        digests = {
            replica.node: replica.machine.read(lambda m: m.digest())
            for replica in self.group.replicas()
            if replica.applied == len(self.group.entries)
        }
        lagging = [r.node for r in self.group.replicas() if r.applied != len(self.group.entries)]
        for node in lagging:
            digests[node] = "lagging"
        replay = JobMachine(PARTITIONS, Ring)
        for command in self.group.entries:
            replay.apply_command(command)
        digests["replay"] = replay.digest()
        return digests

    def _final_jobs(self) -> int:
        replay = JobMachine(PARTITIONS, Ring)
        for command in self.group.entries:
            replay.apply_command(command)
        return replay.count()


def _ms(loop_s: float) -> int:
    return WALL_BASE_MS + round(loop_s * 1000)


async def quiesce_all(nodes: list[SimNode]) -> None:
    """Quiesce every node before any stops (as LocalCluster.stop does): stopped one by one, the
    last nodes' acks would find no quorum, and what they settled would be delivered again."""
    await asyncio.gather(*(node.quiesce() for node in nodes))


async def stop_cluster(nodes: list[SimNode]) -> None:
    """A clean stop of the whole cluster: quiesce all, then stop each."""
    await quiesce_all(nodes)
    for node in nodes:
        await node.stop()
