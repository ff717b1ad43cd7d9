"""The simulated app and the network to it: every attempt recorded, faults from the seed.

`SimApp` is the one app every node delivers to; `app.client(node, clock)` is that node's
Delivers. Each attempt is recorded as a `Send` when the node starts it: who sent which occurrence
and attempt, at what time by the sender's clock and by the true clock, whether the app received
it, and what the node learned (SUCCESS, FAILED, or nothing if it died first). The request can be
lost (the node times out), the app can answer 500, or answer after the node's timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from dataclasses import dataclass, field

from node.delivery.trigger import DeliveryOutcome, DeliveryReport, Trigger
from tests.sim.clock import NodeClock, true_wall_ms


@dataclass(frozen=True)
class AppFaults:
    latency_ms: tuple[float, float] = (1.0, 40.0)
    # Answers 500.
    fail: float = 0.0
    # Answers only after the node's delivery timeout.
    slow: float = 0.0
    # The request never arrives.
    drop: float = 0.0
    timeout_s: float = 1.0


@dataclass
class Send:
    node: str
    trigger_id: str
    uid: str
    scheduled_ms: int
    attempt: int
    node_wall_ms: int
    sent_ms: int
    received: bool = False
    # What the node learned: "SUCCESS", "FAILED", or "" when it never learned (it died).
    outcome: str = ""
    done_ms: int | None = None


@dataclass
class SimApp:
    rng: random.Random
    faults: AppFaults
    sends: list[Send] = field(default_factory=list)
    # The app is a process of its own: no node's crash cancels what it does.
    context: contextvars.Context = field(default_factory=contextvars.Context)

    def client(self, node: str, clock: NodeClock) -> AppClient:
        return AppClient(self, node, clock)

    def _receive(self, send: Send, reply: asyncio.Future[DeliveryOutcome]) -> None:
        send.received = True
        faults = self.faults
        answer = (
            DeliveryOutcome.FAILED if self.rng.random() < faults.fail else DeliveryOutcome.SUCCESS
        )
        delay_s = 2 * self.rng.uniform(*faults.latency_ms) / 1000
        if self.rng.random() < faults.slow:
            delay_s += faults.timeout_s
        loop = asyncio.get_running_loop()
        loop.call_later(delay_s, _answer, reply, answer, context=self.context)


class AppClient:
    """One node's delivery to the app: a node.delivery.dispatch.Delivers."""

    def __init__(self, app: SimApp, node: str, clock: NodeClock) -> None:
        self._app = app
        self._node = node
        self._clock = clock

    def abandon(self) -> None:
        # A send is recorded when it leaves: the engine's cancelling the attempts is all.
        return

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryReport:
        app = self._app
        loop = asyncio.get_running_loop()
        send = Send(
            node=self._node,
            trigger_id=trigger.trigger_id,
            uid=trigger.uid,
            scheduled_ms=trigger.scheduled_ms,
            attempt=trigger.attempt,
            node_wall_ms=self._clock.wall_ms(),
            sent_ms=true_wall_ms(loop),
        )
        app.sends.append(send)
        reply: asyncio.Future[DeliveryOutcome] = loop.create_future()
        if app.rng.random() >= app.faults.drop:
            delay_s = app.rng.uniform(*app.faults.latency_ms) / 1000
            loop.call_later(delay_s, app._receive, send, reply, context=app.context)
        timed_out = False
        try:
            outcome = await asyncio.wait_for(reply, app.faults.timeout_s)
        except TimeoutError:
            outcome, timed_out = DeliveryOutcome.FAILED, True
        send.outcome, send.done_ms = outcome.value, true_wall_ms(loop)
        return DeliveryReport(outcome, timed_out=timed_out)


def _answer(reply: asyncio.Future[DeliveryOutcome], answer: DeliveryOutcome) -> None:
    if not reply.done():
        reply.set_result(answer)
