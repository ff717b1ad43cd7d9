"""A real single-node Raft store carrying a JobMachine, with a TriggerEngine firing at real Sinks.

The store, the engine and the delivery run on an event loop of their own thread, so tests are
plain functions: they propose commands and wait for state through `run`, and wait for calls on
the sinks (which serve from threads of their own) directly. Nothing is mocked: the commands go
through Raft, the triggers over HTTP, the acks back through Raft.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Self, TypeVar

from cluster.ring import Ring
from node.delivery.dispatch import Delivers
from node.delivery.http import DeliveryConfig, HttpDelivery
from node.engine.engine import EngineConfig, TriggerEngine
from store.clock import SystemClock
from store.codec import Command, Delete, Member, Put, RegisterApp, SetMembers, encode_command
from store.failure_policy import FailurePolicy
from store.jobs import DATA_TYPE_JSON, Job, JobSpec, MisfirePolicy
from store.machine import JobMachine, Result
from store.raft.config import RaftConfig
from store.raft.store import RaftStore
from store.shared_machine import SharedMachine
from tests.support.cluster_secret import TEST_CLUSTER_SECRET

T = TypeVar("T")

NODE = "n1"
OTHER_NODE = "n2"
NAMESPACE = "default"
PARTITIONS = 16
START_TIMEOUT_S = 15.0
ATTEMPT_TIMEOUT_S = 3.0
# The slow app (conftest.py's slow_sink) answers after this long: below the attempt timeout.
SLOW_S = 1.0
WAIT_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Harness:
    def __init__(self, data_dir: Path, config: EngineConfig) -> None:
        self.clock = SystemClock()
        self.lease_held = True
        # Whether this node's clock is taken as within the bound (lease_held aside).
        self.clock_trusted = True
        self._data_dir = data_dir
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        raft = f"127.0.0.1:{free_port()}"
        self.member = Member(NODE, raft, "127.0.0.1:1")
        self.machine = SharedMachine(JobMachine(PARTITIONS, Ring))
        self.store = RaftStore(
            RaftConfig(
                self_address=raft, peer_addresses=(), data_dir=data_dir, secret=TEST_CLUSTER_SECRET
            ),
            self.machine,
        )
        self.http = HttpDelivery(DeliveryConfig(), attempt_timeout_s=ATTEMPT_TIMEOUT_S)
        self.engine = TriggerEngine(
            NODE,
            self.store,
            self.machine,
            self._delivers(),
            self.clock,
            self._lease,
            self._fires,
            config,
        )

    def _delivers(self) -> Delivers:
        """What the engine delivers through: HTTP to the sinks (a subclass may add more)."""
        return self.http

    def _lease(self) -> bool:
        return self.lease_held

    def _fires(self) -> bool:
        return self.lease_held and self.clock_trusted

    # ---- lifecycle ----

    def start(self) -> Self:
        self._thread.start()
        self.run(self._start(), START_TIMEOUT_S)
        return self

    async def _start(self) -> None:
        self.store.start()
        await self.store.wait_ready(START_TIMEOUT_S)
        # Ready is not yet leader-known, and the store offers no event for that: its status is
        # refreshed by the tick thread every 20 ms, so poll it (bounded by the caller's timeout).
        while self.store.status().leader is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await self._propose(SetMembers(epoch=1, members=(self.member,), live=(NODE,)))
        self.engine.start()

    def resume(self) -> Self:
        """Start on a data dir that holds a journal, as a restarted node does (node/server.py):
        the engine subscribes before the replay. Returns once the store has caught up."""
        self._thread.start()
        self.run(self._resume(), START_TIMEOUT_S)
        return self

    async def _resume(self) -> None:
        self.store.start()
        self.engine.start()
        await self.store.wait_ready(START_TIMEOUT_S)

    def stop_engine(self) -> None:
        self.run(self.engine.stop(), 30)

    def close(self) -> None:
        self.run(self._close(), 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        await self.engine.stop()
        await self.http.close()
        await self.store.stop()

    def run(self, coroutine: Coroutine[object, object, T], timeout_s: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    # ---- commands ----

    async def _propose(self, command: Command) -> Result:
        result = await self.store.propose(encode_command(command), 10.0)
        assert isinstance(result, Result) and result.ok, result
        return result

    def propose(self, command: Command) -> Result:
        return self.run(self._propose(command))

    def register(self, app: str, url: str) -> None:
        self.propose(RegisterApp(NAMESPACE, app, url))

    def put(
        self,
        name: str,
        *,
        app: str = "app",
        schedule: str | None = None,
        due_time: str | None = None,
        repeats: int | None = None,
        failure_policy: FailurePolicy | None = None,
        misfire_policy: MisfirePolicy = MisfirePolicy.ALL,
        overwrite: bool = False,
        jitter: str | None = None,
        delivery_timeout: str | None = None,
    ) -> Job:
        spec = JobSpec(
            name=name,
            schedule=schedule,
            due_time=due_time,
            repeats=repeats,
            data=b'{"job":"' + name.encode() + b'"}',
            data_type=DATA_TYPE_JSON,
            failure_policy=failure_policy,
            misfire_policy=misfire_policy,
            jitter=jitter,
            delivery_timeout=delivery_timeout,
        )
        now_ms = self.clock.wall_ms()
        command = Put(NAMESPACE, app, spec, overwrite, now_ms, uuid.uuid4().hex, "UTC")
        job = self.propose(command).value
        assert isinstance(job, Job)
        return job

    def delete(self, name: str, app: str = "app") -> None:
        self.propose(Delete(NAMESPACE, app, name))

    def set_live(self, live: tuple[str, ...]) -> None:
        """Commit the next epoch with this node and another as members, `live` of them live."""
        other = Member(OTHER_NODE, f"127.0.0.1:{free_port()}", "127.0.0.1:2")
        epoch = self.machine.read(lambda m: m.epoch) + 1
        self.propose(SetMembers(epoch=epoch, members=(self.member, other), live=live))

    # ---- state ----

    def job(self, name: str, app: str = "app") -> Job | None:
        return self.machine.read(lambda m: m.get(NAMESPACE, app, name))

    def wait_until(
        self, predicate: Callable[[JobMachine], bool], timeout_s: float = WAIT_TIMEOUT_S
    ) -> None:
        """Return once `predicate(machine)` holds, checked after every applied command."""
        self.run(self._wait_until(predicate, timeout_s), timeout_s + 5)

    def wait_gone(self, name: str, app: str = "app", timeout_s: float = WAIT_TIMEOUT_S) -> None:
        self.wait_until(lambda m: m.get(NAMESPACE, app, name) is None, timeout_s)

    async def _wait_until(self, predicate: Callable[[JobMachine], bool], timeout_s: float) -> None:
        changed = asyncio.Event()

        def on_applied(_applied: object) -> None:
            changed.set()

        unsubscribe = self.store.subscribe(on_applied)
        try:
            async with asyncio.timeout(timeout_s):
                while not self.machine.read(predicate):
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"not reached within {timeout_s} s") from None
        finally:
            unsubscribe()
