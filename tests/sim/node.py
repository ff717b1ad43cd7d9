"""One simulated node: the real Membership and TriggerEngine on a Replica of the memory log.

Wired as node/server.py wires them (membership, then the engine, which fires under its lease);
`stop` follows Node.stop: quiesce (the engine finishes or hands back its deliveries and flushes
its acks, then heartbeats stop) before the store goes. A crash skips all of that: the process is
killed and only what the log committed survives, from which `start` rebuilds the machine.
"""

from __future__ import annotations

import asyncio

from cluster.membership import Membership, MembershipConfig
from node.engine.engine import EngineConfig, TriggerEngine
from node.supervisor import Supervisor
from store.codec import Member
from store.supervision import HealthBoard
from tests.sim.app import SimApp
from tests.sim.clock import NodeClock
from tests.sim.loop import Process
from tests.sim.memory_log import MemoryLog, Replica

MEMBERSHIP = MembershipConfig()
# A short timer horizon: the one-shots due up to 5 s ahead come into it by refills, clock jumps
# included, as a node's far-off jobs do after hours. And a few rows a turn: the timers of moved
# partitions are armed and dropped over several turns, with changes and epochs in between, as
# a node's hundreds of thousands are. Two deliveries started a turn: jobs due together go out
# over several turns, as a burst of thousands does.
ENGINE = EngineConfig(stop_timeout_s=2.0, timer_horizon_ms=2000, rows_per_turn=3, fires_per_turn=2)


class SimNode:
    def __init__(self, node_id: str, group: MemoryLog, app: SimApp) -> None:
        self.id = node_id
        self.member = Member(node_id, group.addresses[node_id], f"sim://{node_id}/http")
        self.clock = NodeClock(asyncio.get_running_loop())
        self._group = group
        self._app = app
        self._incarnations = 0
        self.process: Process | None = None
        self.replica: Replica | None = None
        self.membership: Membership | None = None
        self.engine: TriggerEngine | None = None

    @property
    def up(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        assert self.process is None, "a node starts once per incarnation"
        self._incarnations += 1
        process = self.process = Process(f"{self.id}#{self._incarnations}")
        replica = self.replica = self._group.open(self.id, process)
        supervisor = Supervisor(HealthBoard(self.clock))
        membership = self.membership = Membership(
            self.member,
            replica,
            replica.machine,
            self.clock,
            MEMBERSHIP,
            spawn=supervisor.spawn,
            healthy=lambda: supervisor.unhealthy_reason() is None,
        )
        self.engine = TriggerEngine(
            self.id,
            replica,
            replica.machine,
            self._app.client(self.id, self.clock),
            self.clock,
            membership.holds_lease,
            membership.may_fire,
            ENGINE,
            supervisor,
        )
        process.run(membership.start)
        process.run(self.engine.start)

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self._group.close(self.id)
        self.process = self.replica = self.membership = self.engine = None

    async def quiesce(self) -> None:
        """Node.quiesce: stop firing and settle what is in flight, then stop heartbeats."""
        process, engine, membership = self.process, self.engine, self.membership
        if process is None or engine is None or membership is None:
            return
        loop = asyncio.get_running_loop()
        await process.run(loop.create_task, engine.stop())
        await process.run(loop.create_task, membership.stop())

    async def stop(self) -> None:
        """Node.stop: quiesce, then the store goes, then whatever is left of the process."""
        await self.quiesce()
        self.crash()
