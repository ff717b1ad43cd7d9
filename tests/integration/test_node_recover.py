"""A node whose journal is damaged refuses to start and says how to recover; `tock node
--recover` discards its Raft state and catches up from the leader's snapshot.

Method: a 3-node cluster holds acknowledged jobs; n3 is stopped and one byte of a record in the
middle of its journal is flipped (damage before the tail, which no crash produces). Started
again, n3 must exit with status 70 naming the file, the offset and `--recover`. Started with
`--recover`, it must move its files aside, withhold its vote until it has caught up, then serve
every job from its own state; restarted normally afterwards, it stays whole.
"""

from __future__ import annotations

import time
from pathlib import Path

from node.cli import EXIT_STORAGE_DAMAGED
from store.raft.config import JOURNAL_FILE_NAME
from store.raft.journal import RECOVERING_SUFFIX
from tests.integration.journal_format import record_offsets
from tests.integration.node_helpers import running_rig, wait_until

JOBS = 40
EXIT_WAIT_S = 30.0
READY_S = 60.0


def test_a_damaged_journal_stops_the_node_and_recover_brings_it_back(tmp_path: Path) -> None:
    with running_rig(tmp_path) as rig:
        app = rig.app()
        names = [app.name(f"job{k}") for k in range(JOBS)]
        for k, name in enumerate(names):
            app.create(name, {"schedule": "@daily", "data": {"k": k}}, node=1 + k % 3)
        cluster = rig.cluster
        n3 = cluster.node("n3")
        cluster.kill("n3")
        journal = n3.data_dir / "raft" / JOURNAL_FILE_NAME
        offsets = record_offsets(journal)
        assert len(offsets) > 10, "the journal holds the jobs' entries"
        damaged_at = offsets[len(offsets) // 2]
        data = bytearray(journal.read_bytes())
        data[damaged_at + 30] ^= 0x01
        journal.write_bytes(bytes(data))

        process = cluster.start_node("n3").process
        assert process is not None
        assert process.wait(EXIT_WAIT_S) == EXIT_STORAGE_DAMAGED
        log = n3.log_file.read_text()
        assert f"{journal}: record checksum mismatch at offset {damaged_at}" in log
        assert "tock node --recover" in log

        cluster.start_node("n3", args=("--recover",))
        cluster.wait_ready(READY_S)
        for k, name in enumerate(names):
            assert app.get(name, node=3).json["data"] == {"k": k}, name
        discarded = list((n3.data_dir / "raft").glob("discarded-*/" + JOURNAL_FILE_NAME))
        assert len(discarded) == 1 and discarded[0].read_bytes() == bytes(data)
        marker = Path(str(journal) + RECOVERING_SUFFIX)
        wait_until(lambda: not marker.exists(), READY_S, "the recovery marker to go")

        cluster.kill("n3")
        started = time.monotonic()
        cluster.start_node("n3")
        cluster.wait_ready(READY_S)
        print(f"n3 restarted normally after its recovery in {time.monotonic() - started:.1f} s")
        assert app.names(3) and all(app.get(name, node=3).status == 200 for name in names)
