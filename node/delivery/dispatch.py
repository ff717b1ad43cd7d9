"""The engine's one delivery entry point: a trigger goes to a watch stream of its app if one is
connected anywhere in the cluster, else by HTTP or gRPC, as its app's URL says.

An app registered as `grpc://host:port` gets Dapr's gRPC job callback (grpc_delivery.py); any
other URL gets `POST {url}/job/{name}` (delivery.py). While the app holds watch streams
(watch_delivery.py), its triggers go to them instead; when the last one has just closed, the
trigger falls back to the URL, or is UNDELIVERABLE for an app without one. Every path reports the
same DeliveryReport, and the engine applies the same failure policy to each.

`Trigger.content_type` carries the job's stored data type: `application/json`, the type URL of an
Any submitted over gRPC, or "" for none. The gRPC side sends the data as that Any; the HTTP side
sends what Dapr's HTTP channel sends, the bytes with `content-type: application/json`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from node.delivery.grpc import GRPC_SCHEME, GrpcDelivery
from node.delivery.http import HttpDelivery
from node.delivery.trigger import DeliveryOutcome, DeliveryReport, Trigger
from node.logs import log_fields
from node.watch.delivery import WatchDelivery
from store.jobs import DATA_TYPE_JSON

log = logging.getLogger(__name__)


class Delivers(Protocol):
    """What the engine needs of delivery: one attempt at one trigger, reported as a DeliveryReport.

    `url` is "" for an app that registered none (its triggers can only go to watch streams)."""

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryReport: ...

    def abandon(self) -> None:
        """Drop every attempt in flight and its connection at once, reset so that nothing the
        kernel still holds goes out later (the lease that allowed them has lapsed)."""
        ...


class Deliverer:
    """Dispatches each trigger by its app URL's scheme; one per node, on its event loop."""

    def __init__(
        self, http: HttpDelivery, grpc: GrpcDelivery, watch: WatchDelivery | None = None
    ) -> None:
        self._http = http
        self._grpc = grpc
        self._watch = watch

    async def deliver(self, url: str, trigger: Trigger) -> DeliveryReport:
        """One attempt, logged with the job, app and trigger id (so is whatever it logs): at
        DEBUG when it succeeded, at INFO otherwise."""
        fields = {
            "namespace": trigger.namespace,
            "app": trigger.app,
            "job": trigger.name,
            "trigger_id": trigger.trigger_id,
            "attempt": trigger.attempt,
        }
        with log_fields(**fields):
            report = await self._dispatch(url, trigger)
            outcome = report.outcome
            level = logging.DEBUG if outcome is DeliveryOutcome.SUCCESS else logging.INFO
            log.log(level, "trigger %s", outcome.lower())
        return report

    async def _dispatch(self, url: str, trigger: Trigger) -> DeliveryReport:
        if self._watch is not None and self._watch.watched(trigger):
            # A watcher answers with an outcome alone: no status to report.
            outcome = await self._watch.deliver(trigger)
            if outcome is not DeliveryOutcome.UNDELIVERABLE:
                return DeliveryReport(outcome)
        if not url:
            return DeliveryReport(DeliveryOutcome.UNDELIVERABLE)
        if url.startswith(GRPC_SCHEME):
            return await self._grpc.deliver(url, trigger)
        if trigger.content_type != DATA_TYPE_JSON:
            trigger = dataclasses.replace(trigger, content_type=DATA_TYPE_JSON)
        return await self._http.deliver(url, trigger)

    def abandon(self) -> None:
        self._http.abandon()
        self._grpc.abandon()
        if self._watch is not None:
            self._watch.abandon()

    async def close(self) -> None:
        await self._http.close()
        await self._grpc.close()
