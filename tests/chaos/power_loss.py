"""Power loss, simulated from the disk operations a node recorded (store/raft/disk.py).

A SIGKILL leaves the kernel's page cache to finish every write; a machine that loses power keeps
only what was synced. A node started with TOCK_TEST_DISK_LOG records its Raft files as they were
at start (the baseline) and every write, truncation, rename, removal and sync after that. Replayed
here, that log gives the directory a machine would show after power loss at the moment the node
died:

- a file's content is what it held at its last fsync (a file never synced is empty);
- a name (a creation, a rename, a removal) counts only once its directory was fsynced after it;
- optionally, one file also keeps a torn part of the first write after its last sync: a prefix of
  that write, as a disk that was writing it when the power went would leave.

`power_off` applies that to a node's directory. Files the log never named are left as they are.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

_LENGTH = struct.Struct("<I")


@dataclass
class _File:
    content: bytearray
    synced: bytes | None  # None: never synced since it was created
    unsynced: list[tuple[int, bytes]] = field(default_factory=list)  # writes since the sync


@dataclass
class Image:
    """What power loss leaves: every path the log named, with its content or None (gone)."""

    files: dict[str, bytes | None]
    torn: str | None  # the file that kept a torn part of a write, if any


def read_operations(log: Path) -> list[list[object]]:
    """The recorded operations in order; a record cut short by the kill is not one."""
    data = log.read_bytes()
    operations: list[list[object]] = []
    offset = 0
    while offset + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        body = data[offset + _LENGTH.size : offset + _LENGTH.size + length]
        if len(body) < length:
            break
        operations.append(msgpack.unpackb(body, raw=False))
        offset += _LENGTH.size + length
    return operations


def _write(file: _File, offset: int, data: bytes) -> None:
    if len(file.content) < offset:
        file.content.extend(b"\0" * (offset - len(file.content)))
    file.content[offset : offset + len(data)] = data


class _Replay:
    """The directories as the recorded operations leave them, now and after power loss."""

    def __init__(self) -> None:
        self.names: dict[str, _File] = {}  # what the directories show now
        self.durable: dict[str, _File] = {}  # what they would show after power loss
        self.seen: set[str] = set()

    def apply(self, operation: Sequence[object]) -> None:
        kind, path, *args = operation
        assert isinstance(kind, str) and isinstance(path, str)
        if not kind.endswith("directory"):
            self.seen.add(path)
        getattr(self, "_" + kind)(path, *args)

    def _baseline(self, path: str, content: bytes) -> None:
        self.names[path] = self.durable[path] = _File(bytearray(content), content)

    def _baseline_directory(self, path: str) -> None:
        pass  # every file the store had at start came as a baseline record before it

    def _open(self, path: str, created: bool) -> None:
        if created or path not in self.names:
            self.names[path] = _File(bytearray(), None)

    def _write(self, path: str, offset: int, data: bytes) -> None:
        _write(self.names[path], offset, data)
        self.names[path].unsynced.append((offset, data))

    def _truncate(self, path: str, size: int) -> None:
        file = self.names[path]
        del file.content[size:]
        file.content.extend(b"\0" * (size - len(file.content)))
        file.unsynced.append((size, b""))

    def _whole(self, path: str, content: bytes) -> None:
        file = self.names.setdefault(path, _File(bytearray(), None))
        file.content = bytearray(content)
        file.unsynced.append((0, content))

    def _sync(self, path: str) -> None:
        file = self.names[path]
        file.synced = bytes(file.content)
        file.unsynced.clear()

    def _rename(self, path: str, target: str) -> None:
        self.seen.add(target)
        self.names[target] = self.names.pop(path)

    def _remove(self, path: str) -> None:
        self.names.pop(path, None)

    def _sync_directory(self, directory: str) -> None:
        for path in [p for p in self.durable if os.path.dirname(p) == directory]:
            if path not in self.names:
                del self.durable[path]
        for path, file in self.names.items():
            if os.path.dirname(path) == directory:
                self.durable[path] = file


def crash_image(operations: Sequence[Sequence[object]], rng: random.Random, torn: bool) -> Image:
    replay = _Replay()
    for operation in operations:
        replay.apply(operation)
    files: dict[str, bytes | None] = {path: None for path in replay.seen}
    for path, file in replay.durable.items():
        files[path] = file.synced or b""
    torn_path = _tear(replay.durable, files, rng) if torn else None
    return Image(files, torn_path)


def _tear(durable: dict[str, _File], files: dict[str, bytes | None], rng: random.Random) -> str:
    """Keep a prefix of one file's first write after its last sync; the file's path, or ""."""
    candidates = sorted(p for p, f in durable.items() if f.unsynced and f.unsynced[0][1])
    if not candidates:
        return ""
    path = rng.choice(candidates)
    offset, data = durable[path].unsynced[0]
    file = _File(bytearray(files[path] or b""), None)
    _write(file, offset, data[: rng.randrange(1, len(data) + 1)])
    files[path] = bytes(file.content)
    return path


def power_off(log: Path, rng: random.Random, torn: bool) -> Image:
    """Turn a dead node's files into what power loss leaves, and start a new log."""
    image = crash_image(read_operations(log), rng, torn)
    for path, content in image.files.items():
        if content is None:
            Path(path).unlink(missing_ok=True)
        else:
            Path(path).write_bytes(content)
    log.unlink()
    return image
