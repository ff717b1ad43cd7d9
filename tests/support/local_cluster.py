"""Real `tock` clusters for tests: N node processes on 127.0.0.1 with ports no other test uses.

Each pytest-xdist worker gets its own range of ports (worker k: 20000 + 1500 k onwards), and
each cluster within a worker the next block of 50 in it, so clusters of parallel tests never
collide; a block whose ports are taken by something else is skipped.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster.local import LocalCluster, LocalClusterConfig

PORTS_PER_WORKER = 1500
PORTS_PER_CLUSTER = 50
_blocks = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else 0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_block(size: int) -> int:
    """The first port of `size` consecutive free ports in this test process's range.

    The blocks are taken in turn and, past the end of the range, from its start again: a
    worker may start more clusters than its range holds blocks, and a block whose cluster has
    stopped is free again (the bind check skips one that is not, e.g. a port another
    connection holds)."""
    assert size <= PORTS_PER_CLUSTER
    blocks_per_worker = PORTS_PER_WORKER // PORTS_PER_CLUSTER
    for _ in range(3 * blocks_per_worker):
        block = next(_blocks) % blocks_per_worker
        base = 20000 + _worker_index() * PORTS_PER_WORKER + block * PORTS_PER_CLUSTER
        if all(_free(port) for port in range(base, base + size)):
            return base
    raise RuntimeError("no block of free ports left in this test process's range")


@contextmanager
def running_cluster(
    data_dir: Path,
    nodes: int = 3,
    node_args: tuple[str, ...] = (),
    open_api: bool = True,
    time_zone: str = "UTC",
    ready_timeout_s: float = 60.0,
    node_hosts: tuple[str, ...] | None = None,
    command_prefix: Callable[[str], list[str]] | None = None,
    tls: bool = False,
) -> Iterator[LocalCluster]:
    """Start a cluster, wait until it is ready, and always stop it (dumping logs on failure).
    `node_hosts` and `command_prefix` place nodes elsewhere than 127.0.0.1 (LocalClusterConfig)."""
    base = port_block(3 * 15)
    cluster = LocalCluster(
        LocalClusterConfig(
            nodes=nodes,
            data_dir=data_dir,
            http_port=base,
            raft_port=base + 15,
            grpc_port=base + 30,
            time_zone=time_zone,
            open_api=open_api,
            node_args=node_args,
            node_hosts=node_hosts,
            command_prefix=command_prefix,
            tls=tls,
        )
    )
    cluster.start()
    try:
        cluster.wait_ready(ready_timeout_s)
        yield cluster
    except BaseException:
        for node in cluster.nodes:
            if node.log_file.exists():
                tail = node.log_file.read_text(errors="replace").splitlines()[-30:]
                print(f"---- {node.node_id} log (last 30 lines) ----", *tail, sep="\n")
        raise
    finally:
        cluster.stop()
