"""Delivery through watch streams: the owner of a job finds a watcher of its app in the cluster.

The machine records which live nodes hold watchers of which app (WatchersChanged); this class
keeps a copy, refreshed from the store's applied events, with each node's HTTP address. For a
trigger of a watched app it tries, in order: this node's own watchers (the fast path, no hop),
then the other nodes that hold some, starting at one picked in turn in proportion to their
watcher counts (so the load spreads across watchers), each through the Forwarder. A node that
answers UNDELIVERABLE (its watchers just closed, before the record caught up) passes the
trigger to the next; when every one did, so does this, and the Deliverer falls back to the URL.

Threads: on the node's event loop; the machine is read through SharedMachine.read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from node.delivery.trigger import DeliveryOutcome, Trigger
from node.watch.forward import Forwarder
from node.watch.route import LocalWatchers
from store.log import Applied, Restored
from store.machine import AppKey, Result
from store.raft.store import RaftStore
from store.shared_machine import SharedMachine

# A node's watcher count weighs its turn at most this much: a bound on the rotation list.
TURN_WEIGHT_MAX = 64


class WatchDelivery:
    def __init__(
        self,
        node_id: str,
        store: RaftStore,
        machine: SharedMachine,
        local: LocalWatchers,
        forwarder: Forwarder,
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._machine = machine
        self._local = local
        self._forwarder = forwarder
        # app -> the other nodes holding watchers of it, each repeated by its (bounded) count.
        self._turns: dict[AppKey, list[str]] = {}
        self._http: dict[str, str] = {}
        self._turn = itertools.count()
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self._store.subscribe(self._on_applied)
        self.refresh()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def refresh(self) -> None:
        """Copy the watcher record and the members' addresses from the machine."""
        watchers, members = self._machine.read(lambda m: (m.watchers(), m.members))
        self._http = {member.id: member.http for member in members}
        self._turns = {}
        for app, nodes in watchers.items():
            others = [
                node
                for node, count in sorted(nodes.items())
                if node != self._node_id
                for _ in range(min(count, TURN_WEIGHT_MAX))
            ]
            if others:
                self._turns[app] = others

    def watched(self, trigger: Trigger) -> bool:
        app = (trigger.namespace, trigger.app)
        return self._local.has(app) or app in self._turns

    async def deliver(self, trigger: Trigger) -> DeliveryOutcome:
        """One attempt through some watcher of the app; UNDELIVERABLE when none took it."""
        app = (trigger.namespace, trigger.app)
        if self._local.has(app):
            timeout_s = trigger.timeout_s
            if timeout_s is None:
                timeout_s = self._local.ack_timeout_s
            outcome = await self._local.deliver(trigger, timeout_s)
            if outcome is not DeliveryOutcome.UNDELIVERABLE:
                return outcome
        for node in self._others_in_turn(app):
            http = self._http.get(node)
            if http is None:
                continue
            outcome = await self._forwarder.deliver(http, trigger)
            if outcome is not DeliveryOutcome.UNDELIVERABLE:
                return outcome
        return DeliveryOutcome.UNDELIVERABLE

    def abandon(self) -> None:
        """Cut the triggers on their way to other nodes' watchers (node/watch/forward.py). Those
        pushed on this node's own streams have left already."""
        self._forwarder.abandon()

    def _others_in_turn(self, app: AppKey) -> list[str]:
        turns = self._turns.get(app)
        if not turns:
            return []
        first = turns[next(self._turn) % len(turns)]
        return [first, *sorted(set(turns) - {first})]

    def _on_applied(self, applied: Applied) -> None:
        result = applied.result
        if isinstance(result, Restored) or (
            isinstance(result, Result) and (result.watchers_changed or result.members_changed)
        ):
            self.refresh()
