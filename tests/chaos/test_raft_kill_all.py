"""All three nodes SIGKILLed at once and restarted: every acked write is still there.

Method: under a write load (100 in flight), each trial SIGKILLs all nodes back to back, either
at a random instant or timed to log compaction: the test watches every node's dump file and
kills the cluster the moment one is renamed into place, which is when pysyncobj would compact
its journal in place and, without the F7 repair, lose every entry after the dump. The nodes
restart; the check is that every acked write is on every node, no write is half applied, and
the nodes are equal. Compaction runs every 1000 entries so the timed kills find one quickly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tests.chaos.cluster import POLL_PERIOD_S, Cluster, WriteLog, Writer, check_writes

IN_FLIGHT = 100
DUMP_WAIT_S_MAX = 20.0
DUMP_POLL_S = 0.001
RESTART_S_MAX = 60.0


class HasDataDir(Protocol):
    data_dir: Path


def dump_identities(nodes: Sequence[HasDataDir], name: str) -> list[tuple[int, int] | None]:
    identities: list[tuple[int, int] | None] = []
    for node in nodes:
        path = node.data_dir / name
        stat = path.stat() if path.exists() else None
        identities.append((stat.st_ino, stat.st_mtime_ns) if stat else None)
    return identities


def wait_for_a_new_dump(nodes: Sequence[HasDataDir], name: str) -> int:
    """Poll the dump files every millisecond; return the position of the first that changed."""
    before = dump_identities(nodes, name)
    deadline = time.monotonic() + DUMP_WAIT_S_MAX
    while time.monotonic() < deadline:
        now = dump_identities(nodes, name)
        changed = [i for i, identity in enumerate(now) if identity != before[i]]
        if changed:
            return changed[0]
        time.sleep(DUMP_POLL_S)
    raise AssertionError(f"no node wrote a dump within {DUMP_WAIT_S_MAX} s")


def test_kill_all_and_restart_loses_no_acked_write(
    make_cluster: Callable[..., Cluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster(extra_arguments=["--compaction-entries=1000"])
    cluster.start_all()
    log = WriteLog()
    repairs = 0
    for trial in range(chaos_trials * 2):
        cluster.leader(RESTART_S_MAX)
        writer = Writer(cluster, IN_FLIGHT, log)
        writer.start()
        if trial % 2 == 0:
            delay_s = chaos_random.uniform(0.3, 2.0)
            print(f"trial {trial}: kill all at a random instant, {delay_s:.2f} s into the load")
            time.sleep(delay_s)
        else:
            time.sleep(0.3)
            dumped = wait_for_a_new_dump(cluster.nodes, "raft.dump")
            print(f"trial {trial}: kill all as node {dumped} renamed its dump into place")
        cluster.stop()
        writer.stop()
        cluster.start_all()
        statuses = cluster.converged(RESTART_S_MAX)
        repairs += sum(status["stats"]["startup_repairs"] for status in statuses.values())
        check_writes(log, {node.index: node.data() for node in cluster.nodes})
        time.sleep(POLL_PERIOD_S)
    print(f"acked {len(log.acked)} writes, {len(log.unknown)} unknown, {repairs} startup repairs")
