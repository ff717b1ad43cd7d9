"""The file operations of the journal, meta and dump writers, and what makes them durable.

Every write the Raft store needs to survive power loss goes through here: positioned writes,
truncation, fsync, the durable replace of a whole file, and the fsync of a directory after a
file is created or renamed in it (a name lives in its directory: without that fsync a new file
or a rename may be gone after power loss although its data was synced).

Test hook (the power-loss simulation): with TOCK_TEST_DISK_LOG=<path> in a node's environment,
every operation below is also appended to that file as one length-prefixed msgpack record,
after a baseline of the store's files already in its directory. Replaying it
(tests/chaos/power_loss.py) gives the directory as a machine that lost power would keep it:
only what was fsynced (data by file fsync, names by directory fsync). Records are appended with
O_APPEND in one write each, so a forked dump child records into the same file in order. Nothing
is armed in production, and then the hook costs one truth test per operation.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgpack

from store.private_files import open_private

ENVIRONMENT_VARIABLE = "TOCK_TEST_DISK_LOG"
_LENGTH = struct.Struct("<I")

# The file descriptor of the armed operation log, -1 when nothing records.
_recording = -1


def record_from_environment(directory: Path, prefixes: tuple[str, ...]) -> None:
    """Arm the recording if the environment asks for it; the baseline is the files in
    `directory` whose names start with one of `prefixes` (the store's own)."""
    global _recording
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not path or _recording >= 0:
        return
    _recording = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for file in sorted(directory.iterdir()):
        if file.is_file() and file.name.startswith(prefixes):
            _record("baseline", str(file), file.read_bytes())
    _record("baseline_directory", str(directory))


def _record(*operation: object) -> None:
    body = msgpack.packb(list(operation), use_bin_type=True)
    os.write(_recording, _LENGTH.pack(len(body)) + body)


def open_file(path: str, flags: int) -> int:
    """Open (creating it private if missing) for writing; the creation is not durable yet."""
    if _recording >= 0:
        _record("open", path, not os.path.exists(path))
        if flags & os.O_TRUNC:
            _record("truncate", path, 0)
    return open_private(path, flags)


def pwrite_all(fd: int, path: str, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of data at offset (pwrite may write less than asked)."""
    if _recording >= 0:
        _record("write", path, offset, bytes(data))
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def truncate(fd: int, path: str, size: int) -> None:
    if _recording >= 0:
        _record("truncate", path, size)
    os.ftruncate(fd, size)


def sync_data(fd: int, path: str) -> None:
    """fdatasync: the data and the size, which is all an append-only file needs."""
    os.fdatasync(fd)
    if _recording >= 0:
        _record("sync", path)


def sync_file(path: str) -> None:
    _fsync_path(path, os.O_RDONLY, "sync")


def sync_directory(path: str) -> None:
    """Make the creations, renames and removals in directory `path` durable."""
    _fsync_path(path, os.O_RDONLY | os.O_DIRECTORY, "sync_directory")


def _fsync_path(path: str, flags: int, operation: str) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if _recording >= 0:
        _record(operation, path)


def remove(path: str) -> None:
    if _recording >= 0:
        _record("remove", path)
    os.remove(path)


def durable_replace(source: str, target: str) -> None:
    """Rename `source` over `target` so that after power loss one of the two whole files is there.

    The data is synced before the rename (else the new name may point at an empty file) and the
    directory after it (else the rename itself may be lost). A source this module did not write
    (pysyncobj writes a snapshot received from the leader itself) is recorded whole first.
    """
    if _recording >= 0:
        _record("whole", source, Path(source).read_bytes())
    sync_file(source)
    if _recording >= 0:
        _record("rename", source, target)
    os.replace(source, target)
    sync_directory(os.path.dirname(os.path.abspath(target)))


def write_durably(temporary: str, path: str, body: bytes) -> None:
    """Write body to `temporary`, sync it and rename it over `path` durably."""
    fd = open_file(temporary, os.O_WRONLY | os.O_TRUNC)
    try:
        pwrite_all(fd, temporary, body, 0)
        os.fsync(fd)
        if _recording >= 0:
            _record("sync", temporary)
    finally:
        os.close(fd)
    if _recording >= 0:
        _record("rename", temporary, path)
    os.replace(temporary, path)
    sync_directory(os.path.dirname(os.path.abspath(path)))
