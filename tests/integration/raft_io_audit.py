"""An auditor of group commit inside one raft_node process: syncs against what is sent.

Installed before the store starts (raft_node.py --audit-io), it wraps os.fdatasync and the
send of the connection class every Raft connection becomes (store/raft/port.py) and checks, as
the tick thread goes, that
- every fdatasync hits this node's journal file;
- every success ack a follower sends covers only indexes its journal had synced before;
- every AppendEntries carries only entries the journal had synced before.
It counts syncs, acks and shipped entries, so a test can also see that syncs are grouped. The
journal's last index at each sync is read from the file itself, not from the library.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.raft.port import CappedConnection
from tests.integration.journal_format import LastIndex

# Only the first few violations are kept in full; the count covers all of them.
VIOLATIONS_KEPT_MAX = 5


class IoAudit:
    def __init__(self, journal: Path) -> None:
        self._journal = str(journal.resolve())
        self._lock = threading.Lock()
        self._synced_index = 0
        self._last_index = LastIndex()
        self.syncs = 0
        self.acks = 0
        self.shipped = 0
        self.violations = 0
        self.examples: list[str] = []

    def install(self) -> None:
        """Wrap os.fdatasync and CappedConnection.send for the rest of the process's life."""
        real_fdatasync: Callable[[int], None] = os.fdatasync
        real_send: Callable[[CappedConnection, Any], None] = CappedConnection.send

        def fdatasync(fd: int) -> None:
            self._on_sync(fd)
            real_fdatasync(fd)

        def send(connection: CappedConnection, message: Any) -> None:
            self._on_send(message)
            real_send(connection, message)

        # The store passes file numbers only, never objects with a fileno().
        os.fdatasync = fdatasync  # type: ignore[assignment]
        setattr(CappedConnection, "send", send)  # noqa: B010 (mypy rejects assigning a method)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "syncs": self.syncs,
                "acks": self.acks,
                "shipped": self.shipped,
                "violations": self.violations,
                "examples": list(self.examples),
            }

    def _on_sync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with self._lock:
            self.syncs += 1
            if path != self._journal:
                self._violation(f"synced {path}, not the journal {self._journal}")
                return
            # The journal as it is now is what this sync makes durable. A follower's journal
            # may shrink (a truncation), so this is the last value, not the highest.
            self._synced_index = self._last_index.read(fd)

    def _on_send(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        with self._lock:
            if kind == "next_node_idx" and message.get("success"):
                self.acks += 1
                self._check_durable("acked", message["next_node_idx"] - 1)
            elif kind == "append_entries" and message.get("entries"):
                self.shipped += len(message["entries"])
                self._check_durable("shipped", message["entries"][-1][1])

    def _check_durable(self, what: str, index: int) -> None:
        if index > self._synced_index:
            self._violation(f"{what} entry {index} before syncing past {self._synced_index}")

    def _violation(self, text: str) -> None:
        self.violations += 1
        if len(self.examples) < VIOLATIONS_KEPT_MAX:
            self.examples.append(text)
