"""The JobMachine as two threads share it: pysyncobj's tick thread writes, the event loop reads.

One rule keeps them apart: every apply and every read of a structure that apply mutates takes
`lock`. Applies are short (a batch of commands, microseconds each), so a read on the loop waits
at most one batch; a snapshot is decoded outside the lock and only swapped in under it. Jobs are
immutable NamedTuples, so a Job read under the lock stays valid after it is released. Snapshots
are taken on the tick thread (between applies) without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from store.machine import JobMachine, Result

T = TypeVar("T")


class SharedMachine:
    """A StateMachine for RaftStore whose reads are safe from any thread."""

    def __init__(self, machine: JobMachine) -> None:
        self._machine = machine
        self.lock = threading.Lock()

    def apply_command(self, command: bytes) -> Result:
        with self.lock:
            return self._machine.apply_command(command)

    def to_bytes(self) -> bytes:
        # No lock: the dump runs on the tick thread between applies, or in a forked child, where
        # a lock that a loop reader held at the fork would stay taken forever.
        return self._machine.to_bytes()

    def load_bytes(self, data: bytes) -> None:
        # Decoded without the lock: a million jobs take seconds, and the loop's reads (health
        # probes, watch announcements) would wait that long. They see the old state meanwhile,
        # which is consistent; the tick thread, the only writer, is here and applies nothing.
        restored = self._machine.decoded(data)
        with self.lock:
            self._machine.adopt(restored)

    def read(self, query: Callable[[JobMachine], T]) -> T:
        """Run a read-only `query` against a consistent state, e.g.
        `shared.read(lambda m: m.list_jobs(ns, app, prefix, limit, cursor))`."""
        with self.lock:
            return query(self._machine)
