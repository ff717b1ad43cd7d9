"""The engine harness with watch streams: the engine delivers as a node's does (node/server.py),
through a Deliverer that pushes to the app's watch streams connected here, else to its URL.

The streams are real WebSockets served by this process on a free 127.0.0.1 port, at
`{watch_url}/{app}`, each a real `Watcher` in the node's `LocalWatchers`; tests connect as an
app would, with node/client's `WatchStream`. No other node holds watchers: nothing is forwarded.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from node.delivery.dispatch import Deliverer, Delivers
from node.delivery.grpc import GrpcDelivery, GrpcDeliveryConfig
from node.engine.engine import EngineConfig
from node.internal_auth import RequestSigner
from node.supervisor import Supervisor
from node.watch.delivery import WatchDelivery
from node.watch.forward import ForwardConfig, Forwarder
from node.watch.route import LocalWatchers, WatchConfig, Watcher
from tests.support.cluster_secret import TEST_CLUSTER_SECRET
from tests.unit.node.engine_harness import (
    ATTEMPT_TIMEOUT_S,
    NAMESPACE,
    NODE,
    Harness,
    free_port,
)

# How long a trigger pushed on a stream waits for its ack: long, so that a test that holds an
# ack back on a loaded machine never sees the attempt fail instead.
ACK_TIMEOUT_S = 15.0


class WatchHarness(Harness):
    def __init__(self, data_dir: Path, config: EngineConfig) -> None:
        self.watchers = LocalWatchers(
            WatchConfig(), on_change=lambda: None, ack_timeout_s=ACK_TIMEOUT_S
        )
        self._address = ("127.0.0.1", free_port())
        self.watch_url = f"ws://{self._address[0]}:{self._address[1]}/watch"
        self._runner: web.AppRunner | None = None
        super().__init__(data_dir, config)

    def _delivers(self) -> Delivers:
        supervisor = Supervisor()
        forwarder = Forwarder(
            ForwardConfig(),
            ATTEMPT_TIMEOUT_S,
            RequestSigner(TEST_CLUSTER_SECRET, self.clock),
            supervisor,
        )
        watch = WatchDelivery(NODE, self.store, self.machine, self.watchers, forwarder)
        grpc = GrpcDelivery(GrpcDeliveryConfig(), attempt_timeout_s=ATTEMPT_TIMEOUT_S)
        return Deliverer(self.http, grpc, watch)

    async def _start(self) -> None:
        await super()._start()
        app = web.Application()
        app.router.add_get("/watch/{app}", self._watch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, *self._address).start()

    async def _close(self) -> None:
        await self.watchers.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await super()._close()

    async def _watch(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        watcher = Watcher((NAMESPACE, request.match_info["app"]), socket, self.watchers.config)
        self.watchers.add(watcher)
        try:
            await watcher.serve(request)
        finally:
            self.watchers.remove(watcher)
        return socket

    def watched(self, app: str) -> int:
        """How many open streams of `app` the node holds."""
        return self.watchers.counts().get((NAMESPACE, app), 0)
