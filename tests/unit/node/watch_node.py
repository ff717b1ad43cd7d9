"""A whole tock node (node/server.py `Node`, every part wired) in this process, for watch tests.

The node runs on an event loop of its own thread, on free 127.0.0.1 ports, as a one-member
cluster; tests drive it from their own loop with TockClient and its watch streams, as an app
would. Nothing is mocked: jobs go through Raft, triggers over the WebSocket or HTTP, acks back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from node.config import NodeConfig
from node.server import Node
from tests.support.cluster_secret import TEST_CLUSTER_SECRET
from tests.unit.node.api_node import free_port

T = TypeVar("T")

START_TIMEOUT_S = 20.0
ADMIN_TOKEN = "watch-node-admin-token"
POLL_S = 0.02


class WatchNode:
    def __init__(self, data_dir: Path, delivery_timeout_s: float) -> None:
        self.config = NodeConfig(
            node_id="n1",
            http=f"127.0.0.1:{free_port()}",
            raft=f"127.0.0.1:{free_port()}",
            data_dir=data_dir,
            secret=TEST_CLUSTER_SECRET,
            admin_token=ADMIN_TOKEN,
            # The tests act for their apps through Dapr's headers.
            open_api=True,
            delivery_timeout_s=delivery_timeout_s,
        )
        self.base_url = f"http://{self.config.http}"
        self.node = Node(self.config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> WatchNode:
        self._thread.start()
        self.run(self._start(), START_TIMEOUT_S)
        return self

    async def _start(self) -> None:
        await self.node.start()
        # No event says when the first epoch counts this node live: poll, bounded by run().
        while self.node.machine.read(lambda m: "n1" not in m.live):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)

    def stop(self) -> None:
        self.run(self.node.stop(), START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = START_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def watchers(self) -> dict[tuple[str, str], dict[str, int]]:
        """The cluster's record of watch streams (read from this node's replica)."""
        return self.node.machine.read(lambda m: m.watchers())
