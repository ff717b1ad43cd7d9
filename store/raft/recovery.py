"""`tock node --recover`: discard a node's Raft state and catch up from the leader's snapshot.

For a node whose journal or dump is damaged (it refuses to start and says so) or lost. The
journal and the dump are moved aside into `discarded-<UTC time>/` (evidence for the operator,
never read again) and the node starts with an empty log, which the leader fills with its
snapshot and the entries after it.

A node that lost its log must not help elect anyone until it has caught up: its empty log
would let it vote for a candidate that lacks entries it had acknowledged, and if its meta was
lost too it could vote twice in one term. So recovery leaves a marker file
(RECOVERING_FILE_NAME) that the transport honours: no vote granted, no campaign, until the node
has applied everything a leader told it was committed; then the marker goes. The meta (term,
vote) stays in place when it reads back whole, so the node never forgets a vote it can still
know. Run it only while the other nodes hold a majority: the entries come from them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from store.raft import disk
from store.raft.config import RaftConfig
from store.raft.journal import JournalDamaged, read_meta

log = logging.getLogger(__name__)


def discard_local_state(config: RaftConfig) -> Path:
    """Move the journal and the dump (and a damaged meta) aside; mark the node recovering.

    Returns the directory the files went to. The marker is durable before anything moves, so
    a crash in between still restarts as a recovery.
    """
    disk.write_durably(str(config.recovering_file) + ".tmp", str(config.recovering_file), b"")
    aside = config.data_dir / time.strftime("discarded-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir(mode=0o700, exist_ok=True)
    meta = Path(str(config.journal_file) + ".meta")
    moved = [config.journal_file, config.dump_file]
    try:
        read_meta(str(meta))
    except JournalDamaged as error:
        log.warning("recovery: the meta is damaged too (%s): it goes aside", error)
        moved.append(meta)
    for path in moved:
        if path.exists():
            path.rename(aside / path.name)
    disk.sync_directory(str(aside))
    disk.sync_directory(str(config.data_dir))
    log.warning(
        "recovery: discarded %s (moved to %s); catching up from the leader, no votes until then",
        ", ".join(path.name for path in moved),
        aside,
    )
    return aside
