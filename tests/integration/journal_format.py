"""Reading the store's journal files (store/raft/journal.py) without the store.

The layout: a header of HEADER_BYTES, then records of a RECORD header (command length, crc,
index, term) and the command. Only whole records count: a torn tail is not an entry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from store.raft.journal import HEADER_BYTES, RECORD, RECORD_HEADER_BYTES


def _records(data: bytes, offset: int = HEADER_BYTES) -> Iterator[tuple[int, int, int]]:
    """(offset, command length, index) of every whole record from offset on."""
    while offset + RECORD_HEADER_BYTES <= len(data):
        length, _, index, _ = RECORD.unpack_from(data, offset)
        if offset + RECORD_HEADER_BYTES + length > len(data):
            return
        yield offset, length, index
        offset += RECORD_HEADER_BYTES + length


def record_offsets(journal: Path) -> list[int]:
    """Where each whole record of a journal file starts."""
    return [offset for offset, _, _ in _records(journal.read_bytes())]


def journal_entry_sizes(journal: Path) -> list[int]:
    """Size in bytes of every entry record in a journal file, as pysyncobj sends it
    (index and term are 16 of them, as in pysyncobj's own framing)."""
    return [length + 16 for _, length, _ in _records(journal.read_bytes())]


class LastIndex:
    """The last entry's index in an open journal, read incrementally as it grows.

    It remembers where the last record it saw starts and what it held; while that record is
    still there unchanged, only what follows it is read again.
    """

    def __init__(self) -> None:
        self._last: tuple[int, bytes] | None = None  # offset, the record's header bytes

    def read(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        start = HEADER_BYTES
        if self._last is not None:
            offset, header = self._last
            start = offset if os.pread(fd, RECORD_HEADER_BYTES, offset) == header else start
        data = os.pread(fd, size - start, start)
        self._last = None
        for offset, _, _ in _records(data, 0):
            self._last = (start + offset, data[offset : offset + RECORD_HEADER_BYTES])
        return 0 if self._last is None else int(RECORD.unpack(self._last[1])[2])


def journal_last_index(journal: Path) -> int:
    """The log index of the last entry in the journal file, 0 when it holds none."""
    fd = os.open(journal, os.O_RDONLY)
    try:
        return LastIndex().read(fd)
    finally:
        os.close(fd)
