"""A node whose Raft port is taken must fail its start, not run on as an isolated zombie.

The "restarted ex-leader never rejoins" failure: after a SIGKILL, any process's outgoing
connection may pick the dead node's Raft port as its ephemeral port (the highest Raft address
accepts no Raft connections, so no TIME_WAIT guards its port). pysyncobj then retried the bind
forever and dialed no peer meanwhile: the restarted node served HTTP with `leader: null` for
good. Here a client socket holds the port the way such a connection would.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from cluster.local import LocalCluster, LocalClusterConfig
from tests.support.local_cluster import port_block

# bind_attempts_max (30, one a second) plus the node's start-up, with margin for a busy machine.
EXIT_TIMEOUT_S = 75.0


def _hold_port(port: int) -> tuple[socket.socket, socket.socket]:
    """An established client connection whose local port is `port` (like an ephemeral one)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket()
    client.bind(("127.0.0.1", port))
    client.connect(listener.getsockname())
    return listener, client


def test_a_node_whose_raft_port_is_taken_exits_with_the_reason(tmp_path: Path) -> None:
    base = port_block(3 * 15)
    cluster = LocalCluster(
        LocalClusterConfig(
            nodes=1,
            data_dir=tmp_path,
            http_port=base,
            raft_port=base + 15,
            grpc_port=base + 30,
            time_zone="UTC",
        )
    )
    listener, client = _hold_port(base + 15)
    try:
        cluster.start()
        node = cluster.node("n1")
        assert node.process is not None
        try:
            code = node.process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        log = node.log_file.read_text(errors="replace")
        assert code is not None and code != 0, f"still running after {EXIT_TIMEOUT_S} s:\n{log}"
        assert f"could not bind the Raft port 127.0.0.1:{base + 15}" in log, log
    finally:
        process = cluster.node("n1").process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        client.close()
        listener.close()
