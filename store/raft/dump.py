"""Snapshots of the replicated state in pysyncobj's fullDumpFile: msgpack, forked, durable.

pysyncobj's own dump pickles the SyncObj's __dict__. With a custom serializer it passes no
state (data[0] is None), does not fork, and runs the serializer on the tick thread; then it
renames `<dump>.tmp` over the dump and reports success on its own. So:

- `serialize` forks a child and returns at once; the child captures the state as of the last
  applied entry (the tick thread is the only writer), writes `<dump>.writing` with a checksum
  of its body, fsyncs it, renames it over the dump and fsyncs the directory (disk.py). It never
  touches `<dump>.tmp`, so the library's rename right after `serialize` finds no such file and
  does nothing (pysyncobj swallows that error and waits for `check`).
- `check` (serializeChecker) reaps the child without blocking, and kills one that has run for
  longer than dump_seconds_max: a hung child would otherwise stop log compaction forever.
- `deserialize` restores the state and returns what pysyncobj keeps beside it: the last two
  applied entries and the cluster members. A dump that exists but cannot be read (or fails its
  checksum) stops the process: pysyncobj would log the error and run on with an empty state.

`serialize` and `check` run supervised (task `dump`): pysyncobj would swallow what `serialize`
raises without a word, and what `check` raises would cut short every tick of the tick thread
(status refresh included). Their Guard logs and counts it instead; the dump in progress, if any,
is abandoned as failed, and no new one starts until the Guard's backoff is over.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import msgpack
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from store.clock import Clock
from store.errors import CodecError
from store.raft import disk
from store.raft.entry import RaftEntryTuple
from store.raft.journal import RECOVER_HINT
from store.raft.state import ReplicatedState
from store.supervision import Guard, HealthBoard

log = logging.getLogger(__name__)

TASK = "dump"

# The version of the dump file's layout, not of the snapshots inside it (store/raft/state.py,
# store/codec.py). Version 2: b"TOCKDUMP" | u32 2 | u32 crc32 of the body | body, the body
# msgpack [version, last entry, previous entry, members, the store's snapshot]. Version 1 was the
# body alone, without a checksum; it is still read, and the next dump writes version 2.
DUMP_VERSION = 2
_MAGIC = b"TOCKDUMP"
_HEADER = struct.Struct("<8sII")
# The exit status of a node whose dump cannot be read: it must not serve an empty state.
EXIT_DUMP_UNREADABLE = 70

# How often finish() looks at a dump child it waits for.
_FINISH_POLL_S = 0.05


class ForkingDump:
    def __init__(
        self,
        path: Path,
        state: ReplicatedState,
        clock: Clock,
        *,
        seconds_max: float,
        retry_seconds: float,
        guard: Guard | None = None,
    ) -> None:
        self._path = path
        self._state = state
        self._clock = clock
        self._seconds_max = seconds_max
        self._retry_seconds = retry_seconds
        self._guard = guard or HealthBoard(clock).guard(TASK, log)
        self._child_pid = 0
        self._started_at = 0.0
        self._pending_index = 0
        self._retry_at = 0.0
        self._deferred = False
        self.last_index = 0
        self.last_wall_ms = 0

    @property
    def writing_path(self) -> Path:
        return self._path.with_name(self._path.name + ".writing")

    def serialize(self, library_tmp: str, raft_data: tuple[object, ...]) -> None:
        """pysyncobj's serializer hook, on the tick thread: start a dump child and return."""
        assert self._child_pid == 0, "pysyncobj starts one dump at a time"
        assert library_tmp != str(self.writing_path)
        now = self._clock.monotonic()
        may_start = now >= self._retry_at and self._guard.wait_s() == 0
        if may_start and self._guard.run(lambda: self._fork(raft_data), False):
            return
        # A recent dump failed, or this one could not start: report it as in progress until
        # the pause is over (then as failed, and pysyncobj asks again).
        self._retry_at = max(self._retry_at, now + self._guard.wait_s())
        self._deferred = True

    def _fork(self, raft_data: tuple[object, ...]) -> bool:
        last_entry, previous_entry, cluster = raft_data
        header = [DUMP_VERSION, last_entry, previous_entry, _member_ids(cluster)]
        assert isinstance(last_entry, tuple)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _die_with(parent)
            self._write_in_child(header)
        self._child_pid = pid
        self._started_at = self._clock.monotonic()
        self._pending_index = int(last_entry[1])
        return True

    def _write_in_child(self, header: list[object]) -> None:
        # Only os-level calls and pure Python from here: other threads' locks (logging's
        # among them) may be held forever in a forked child.
        status = 1
        try:
            body = msgpack.packb([*header, self._state.to_bytes()], use_bin_type=True)
            checked = _HEADER.pack(_MAGIC, DUMP_VERSION, zlib.crc32(body)) + body
            disk.write_durably(str(self.writing_path), str(self._path), checked)
            status = 0
        finally:
            os._exit(status)

    def check(self) -> int:
        """pysyncobj's serializeChecker hook, on the tick thread: the dump's SERIALIZER_STATE."""
        in_progress = bool(self._child_pid) or self._deferred
        if self._guard.wait_s() > 0:
            # Backing off after a crash of this hook: hold pysyncobj where it is.
            return int(
                SERIALIZER_STATE.SERIALIZING if in_progress else SERIALIZER_STATE.NOT_SERIALIZING
            )
        state = self._guard.run(self._check, None)
        if state is not None:
            return state
        if not in_progress:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        # The state of the dump in progress is unknown: end it, and count it as failed.
        self._deferred = False
        with contextlib.suppress(OSError):
            self.kill_child()
        self._child_pid = 0
        return self._failed(-1)

    def _check(self) -> int:
        if self._deferred:
            if self._clock.monotonic() < self._retry_at:
                return int(SERIALIZER_STATE.SERIALIZING)
            self._deferred = False
            return int(SERIALIZER_STATE.FAILED)
        if self._child_pid == 0:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        pid, status = os.waitpid(self._child_pid, os.WNOHANG)
        if pid == 0:
            if self._clock.monotonic() - self._started_at <= self._seconds_max:
                return int(SERIALIZER_STATE.SERIALIZING)
            log.error("dump child %d ran over %.0f s: killed", self._child_pid, self._seconds_max)
            self.kill_child()
            return self._failed(-1)
        self._child_pid = 0
        if status != 0:
            return self._failed(status)
        self.last_index = self._pending_index
        self.last_wall_ms = self._clock.wall_ms()
        return int(SERIALIZER_STATE.SUCCESS)

    def _failed(self, wait_status: int) -> int:
        log.error("dump failed (wait status %d); retry in %.0f s", wait_status, self._retry_seconds)
        self._retry_at = self._clock.monotonic() + self._retry_seconds
        return int(SERIALIZER_STATE.FAILED)

    def deserialize(self, path: str) -> tuple[RaftEntryTuple, RaftEntryTuple, set[TCPNode]]:
        """pysyncobj's deserializer hook: restore the state, return the dump's Raft metadata."""
        try:
            return self._restore(Path(path))
        except Exception as error:
            log.critical(
                "dump %s cannot be read (%s): stopping rather than serving no state; %s",
                path,
                error,
                RECOVER_HINT,
            )
            logging.shutdown()
            os._exit(EXIT_DUMP_UNREADABLE)

    def _restore(self, path: Path) -> tuple[RaftEntryTuple, RaftEntryTuple, set[TCPNode]]:
        fields = msgpack.unpackb(read_dump_body(path), raw=False)
        version, last_entry, previous_entry, members, state = fields
        if version not in (1, DUMP_VERSION):
            raise CodecError(f"dump of unknown version {version!r}")
        self._state.load_bytes(state)
        self.last_index = int(last_entry[1])
        return _entry(last_entry), _entry(previous_entry), {TCPNode(m) for m in members}

    def finish(self, seconds: float) -> None:
        """At shutdown, after the tick thread stopped: let a running dump child finish for up
        to `seconds` (it may be the only recent snapshot), then kill it. Blocks: call it off
        the event loop."""
        deadline = self._clock.monotonic() + seconds
        while self._child_pid and self.check() == SERIALIZER_STATE.SERIALIZING:
            if self._clock.monotonic() > deadline:
                self.kill_child()
                return
            time.sleep(_FINISH_POLL_S)

    def kill_child(self) -> None:
        if self._child_pid:
            os.kill(self._child_pid, signal.SIGKILL)
            os.waitpid(self._child_pid, 0)
            self._child_pid = 0


def _member_ids(cluster: object) -> list[str]:
    assert isinstance(cluster, Iterable)
    return sorted(str(node.id) for node in cluster)


def _entry(fields: list[object]) -> RaftEntryTuple:
    # pysyncobj compares these with its journal's (command, index, term) tuples.
    command, index, term = fields
    assert isinstance(command, bytes) and isinstance(index, int) and isinstance(term, int)
    return command, index, term


def read_dump_body(path: Path) -> bytes:
    """The msgpack body of a dump file, its checksum verified (version 1 had none)."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        return data
    _, version, crc = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    if version != DUMP_VERSION:
        raise CodecError(f"dump file format {version} is not known here")
    if zlib.crc32(body) != crc:
        raise CodecError("dump checksum mismatch (the file is damaged)")
    return body


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Make this dump child die when the node that forked it dies (Linux prctl).

    An orphaned child would go on holding the node's listening sockets (its restart could not
    bind them) and could rename a dump older than one its restarted node has written since.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # Not Linux: the watchdog in the parent still bounds the child's life.
    if os.getppid() != parent:
        # The parent died between fork and prctl: nothing would ever read this dump.
        os._exit(1)
