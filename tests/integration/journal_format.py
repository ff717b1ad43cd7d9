"""Reading pysyncobj 0.3.17 journal files (journal.py) without the library.

The layout: a 40-byte header whose last 4 bytes are the end offset of the last record, then
records of size (4 bytes), index and term (8 bytes each), command, size again.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

HEADER_BYTES = 40
END_OFFSET_AT = 36
_SIZE = struct.Struct("<I")
_INDEX = struct.Struct("<Q")


def journal_entry_sizes(journal: Path) -> list[int]:
    """Size in bytes of every entry record in a journal file, as pysyncobj sends it
    (index and term are 16 of them, as in pysyncobj's own framing)."""
    data = journal.read_bytes()
    (end,) = _SIZE.unpack_from(data, END_OFFSET_AT)
    sizes: list[int] = []
    offset = HEADER_BYTES
    while offset < end:
        (size,) = _SIZE.unpack_from(data, offset)
        sizes.append(size)
        offset += size + 8
    return sizes


def last_index(fd: int) -> int:
    """The log index of the last entry in the open journal `fd`, 0 when it holds none.

    It reads through the file, which sees what the library wrote through its mmap of it.
    """
    (end,) = _SIZE.unpack(os.pread(fd, _SIZE.size, END_OFFSET_AT))
    if end <= HEADER_BYTES:
        return 0
    (size,) = _SIZE.unpack(os.pread(fd, _SIZE.size, end - _SIZE.size))
    (index,) = _INDEX.unpack(os.pread(fd, _INDEX.size, end - _SIZE.size - size))
    return int(index)


def journal_last_index(journal: Path) -> int:
    """The log index of the last entry in the journal file, 0 when it holds none."""
    fd = os.open(journal, os.O_RDONLY)
    try:
        return last_index(fd)
    finally:
        os.close(fd)
