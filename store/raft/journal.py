"""The Raft journal on disk: every entry and the meta (term, vote, commit index) checksummed.

pysyncobj's own journal records carry no checksum: a torn or damaged record is replayed as if it
were good, and an unreadable meta silently reads as term 0 with no vote (a node could vote twice
in one term). This journal replaces it (pysyncobj builds it through `createJournal`, which
`install` points here) and adds what pysyncobj's lacks:

- A checksum on every record and on the meta, verified when read. A torn tail (the records after
  the last sync, cut or garbled by a crash) is truncated with a log line naming file, offset and
  records kept; damage before the tail raises JournalDamaged, which names the file, the offset
  and the way out (`tock node --recover`).
- Group commit: `add` only buffers; `sync` writes every buffered record with one pwrite and
  fdatasyncs once. The hardened transport syncs before any message that refers to an entry
  leaves, so nothing is acked or shipped that is not durable.
- Atomic compaction: the kept entries go to a new file that is synced and renamed over the old
  one (a crash leaves one of the two whole files), and the startup repair that aligns the
  journal with a dump written just before a crash (`align_to_dump`).
- Durable meta: written to a temporary file, synced, renamed over, directory synced.

A pysyncobj journal (and its pickled meta) found at start is migrated once to this format;
a file that is neither is refused with a message, never read.

File layout, little-endian:

    journal: b"TOCKJRNL" | u32 format version | u32 crc32 of the 12 bytes before
             then records: u32 length of the command | u32 crc32 of the 20 bytes after the crc
             and the command | u64 index | u64 term | command
    meta:    b"TOCKMETA" | u32 format version | u32 crc32 of the body | body (msgpack map)
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pysyncobj.syncobj
from pysyncobj.journal import MemoryJournal
from pysyncobj.pickle import loads as library_pickle_loads

from store.errors import TockError
from store.raft import disk
from store.raft.entry import RaftEntryTuple

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"TOCKJRNL"
_HEADER = struct.Struct("<8sII")
RECORD = struct.Struct("<IIQQ")  # length, crc, index, term
_CRC_FROM = 8  # the crc covers the record from its index on, and the length (see _crc)
_META_MAGIC = b"TOCKMETA"
_META_HEADER = struct.Struct("<8sII")
_META_KEYS = ("currentTerm", "votedForNodeId", "raftCommitIndex")
_LEGACY_MAGIC = b"PYSYNCOBJ"
_LEGACY_HEADER_BYTES = 40
_LEGACY_END_AT = 36

HEADER_BYTES = _HEADER.size
RECORD_HEADER_BYTES = RECORD.size

# A marker beside the journal while its node recovers (recovery.py): no votes, no campaign.
RECOVERING_SUFFIX = ".recovering"

RECOVER_HINT = (
    "to start this node again, run `tock node --recover` with the same options: it discards "
    "this node's Raft state and catches up from the leader's snapshot"
)


class JournalDamaged(TockError):
    """A journal or meta file that cannot be trusted: the node must not start from it."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        super().__init__(f"{path}: {problem} at offset {offset}; {RECOVER_HINT}")
        self.path = path
        self.offset = offset


def install() -> None:
    """Make pysyncobj build this journal (a process-wide patch of its module, like the dump's)."""
    pysyncobj.syncobj.createJournal = _create_journal


def _create_journal(journal_file: str | None) -> Any:
    return MemoryJournal() if journal_file is None else ChecksummedJournal(journal_file)


def _crc(length: int, index: int, term: int, command: bytes | memoryview) -> int:
    return zlib.crc32(command, zlib.crc32(struct.pack("<IQQ", length, index, term)))


def encode_record(command: bytes, index: int, term: int) -> bytes:
    length = len(command)
    header = RECORD.pack(length, _crc(length, index, term, command), index, term)
    return header + command


def _header() -> bytes:
    head = _MAGIC + struct.pack("<I", FORMAT_VERSION)
    return head + struct.pack("<I", zlib.crc32(head))


def read_meta(path: str) -> dict[str, Any]:
    """Term, vote and commit index from a meta file ({} if there is none); JournalDamaged if
    it cannot be trusted. pysyncobj's pickled meta is read too, for the migration."""
    if not os.path.exists(path):
        return {}
    data = Path(path).read_bytes()
    if not data.startswith(_META_MAGIC):
        try:
            legacy = library_pickle_loads(data)
        except Exception as error:
            raise JournalDamaged(path, 0, f"unreadable meta ({error})") from None
        return {key: legacy[key] for key in _META_KEYS if key in legacy}
    _, version, crc = _META_HEADER.unpack_from(data.ljust(_META_HEADER.size, b"\0"))
    body = data[_META_HEADER.size :]
    if version != FORMAT_VERSION or crc != zlib.crc32(body):
        raise JournalDamaged(path, 8, "meta checksum mismatch or unknown version")
    return dict(msgpack.unpackb(body, raw=False))


class ChecksummedJournal:
    """pysyncobj's Journal interface (add, clear, deleteEntriesFrom/To, indexing, meta), plus
    `sync`, `compact_to` and `align_to_dump` for the hardened transport."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._meta_path = path + ".meta"
        self._entries: list[RaftEntryTuple] = []
        self._offsets: list[int] = []  # where each entry's record starts in the file
        self._pending = bytearray()  # records added since the last sync, not yet written
        self._written_end = HEADER_BYTES  # the file's end as written (pending records follow)
        self._durable_end = HEADER_BYTES  # the end of what the last fdatasync made durable
        self._directory_unsynced = False  # a compaction renamed the file, its directory unsynced
        self._dirty = False  # written or truncated since the last sync
        self.syncs = 0
        self.compactions = 0
        self.torn_tail_records = 0
        self.failures = 0  # times writing failed (a full disk), each until it worked again
        self.failure: str | None = None  # why the journal cannot be written now
        self._meta = read_meta(self._meta_path)
        self._meta_saved = True
        self._fd = self._open()

    # Opening: fresh, migrated, or read and checked.

    def _open(self) -> int:
        data = Path(self._path).read_bytes() if os.path.exists(self._path) else b""
        if data.startswith(_LEGACY_MAGIC):
            self._migrate(data)
            data = Path(self._path).read_bytes()
        if len(data) < HEADER_BYTES and _header().startswith(data):
            # Missing, or a creation that a crash cut short: it never held an entry.
            self._write_whole_file([])
            data = _header()
        magic, version, crc = _HEADER.unpack_from(data.ljust(HEADER_BYTES, b"\0"))
        if magic != _MAGIC or crc != zlib.crc32(data[:12]):
            raise JournalDamaged(self._path, 0, "not a tock journal (unknown or damaged header)")
        if version != FORMAT_VERSION:
            raise JournalDamaged(self._path, 8, f"journal format {version} is not known here")
        end = self._read_records(data)
        fd = disk.open_file(self._path, os.O_RDWR)
        if end < len(data):
            self._truncate_torn_tail(fd, end, len(data))
        self._written_end = self._durable_end = end
        return fd

    def _read_records(self, data: bytes) -> int:
        """Read every good record; the offset where the good records end."""
        view = memoryview(data)
        offset = HEADER_BYTES
        expected_index = None
        while offset < len(data):
            problem = self._check_record(view, offset, expected_index)
            if problem is not None:
                if self._is_torn_tail(view, offset, expected_index):
                    return offset
                raise JournalDamaged(self._path, offset, problem)
            length, _, index, term = RECORD.unpack_from(view, offset)
            start = offset + RECORD_HEADER_BYTES
            self._entries.append((bytes(view[start : start + length]), index, term))
            self._offsets.append(offset)
            expected_index = index + 1
            offset = start + length
        return offset

    def _check_record(self, view: memoryview, offset: int, expected: int | None) -> str | None:
        """What is wrong with the record at offset, or None if it is good."""
        if offset + RECORD_HEADER_BYTES > len(view):
            return "incomplete record header"
        length, crc, index, term = RECORD.unpack_from(view, offset)
        start = offset + RECORD_HEADER_BYTES
        if start + length > len(view):
            return "record longer than the file"
        if crc != _crc(length, index, term, view[start : start + length]):
            return "record checksum mismatch"
        if expected is not None and index != expected:
            return f"record of index {index} where {expected} was due"
        return None

    def _is_torn_tail(self, view: memoryview, offset: int, expected: int | None) -> bool:
        """Whether the bad record at offset is the end of a write a crash cut short.

        Only records after the last sync can be bad that way, and they end the file: the bad
        record reaches the end of the file, or everything from it on is zeros (pages the
        filesystem extended but never wrote). A good record further on means damage before the
        tail, which truncating would turn into loss of synced entries.
        """
        if not any(view[offset:]):
            return True
        if offset + RECORD_HEADER_BYTES <= len(view):
            length = RECORD.unpack_from(view, offset)[0]
            if offset + RECORD_HEADER_BYTES + length < len(view):
                return False
        return not self._good_record_after(view, offset, expected)

    def _good_record_after(self, view: memoryview, offset: int, expected: int | None) -> bool:
        """Whether the record due after the bad one (a damaged length field hides it) is there."""
        if expected is None:  # the first record: its own index field is the best guess
            if offset + RECORD_HEADER_BYTES > len(view):
                return False
            expected = int(RECORD.unpack_from(view, offset)[2])
        data = view.obj
        assert isinstance(data, bytes)
        pattern = struct.pack("<Q", expected + 1)
        found = data.find(pattern, offset + 1)
        while found >= 0:
            start = found - _CRC_FROM
            if start > offset and self._check_record(view, start, expected + 1) is None:
                return True
            found = data.find(pattern, found + 1)
        return False

    def _truncate_torn_tail(self, fd: int, end: int, size: int) -> None:
        disk.truncate(fd, self._path, end)
        disk.sync_data(fd, self._path)
        log.warning(
            "journal %s: torn tail truncated at offset %d (%d bytes dropped, %d records kept)",
            self._path,
            end,
            size - end,
            len(self._entries),
        )
        self.torn_tail_records = 1

    def _migrate(self, data: bytes) -> None:
        """Rewrite a pysyncobj journal in this format (its records had no checksum to check)."""
        entries: list[RaftEntryTuple] = []
        (end,) = struct.unpack_from("<I", data, _LEGACY_END_AT)
        offset = _LEGACY_HEADER_BYTES
        while offset < end:
            (size,) = struct.unpack_from("<I", data, offset)
            index, term = struct.unpack_from("<QQ", data, offset + 4)
            entries.append((data[offset + 20 : offset + 4 + size], index, term))
            offset += size + 8
        self._save_meta()  # the meta first: it was read from the pickled form already
        self._write_whole_file(entries)
        log.warning(
            "journal %s: migrated %d entries from pysyncobj's format", self._path, len(entries)
        )

    def _write_whole_file(self, entries: list[RaftEntryTuple]) -> None:
        """Write a journal of these entries beside this one and rename it over, durably."""
        body = bytearray(_header())
        for entry in entries:
            body += encode_record(*entry)
        disk.write_durably(self._path + ".new", self._path, bytes(body))

    # The meta.

    def _save_meta(self) -> None:
        body = msgpack.packb(self._meta, use_bin_type=True)
        header = _META_HEADER.pack(_META_MAGIC, FORMAT_VERSION, zlib.crc32(body))
        disk.write_durably(self._meta_path + ".tmp", self._meta_path, header + body)
        self._meta_saved = True

    def setRaftCommitIndex(self, index: int) -> None:
        self._meta["raftCommitIndex"] = index
        self._meta_saved = False

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("raftCommitIndex", 1))

    def setCurrentTerm(self, term: int, voted_for: str | None) -> None:
        # Raft needs term and vote durable before any message reflecting them leaves: if they
        # cannot be written, the journal fails, and the transport sends nothing until they are.
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = voted_for
        self._meta_saved = False
        self._try(self._save_meta)

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> str | None:
        voted_for = self._meta.get("votedForNodeId")
        return None if voted_for is None else str(voted_for)

    def onOneSecondTimer(self) -> None:
        if not self._meta_saved:
            self._try(self._save_meta)

    # Recovery (recovery.py): the marker's presence, and its removal once caught up.

    @property
    def recovering(self) -> bool:
        return os.path.exists(self._path + RECOVERING_SUFFIX)

    def end_recovery(self) -> None:
        disk.remove(self._path + RECOVERING_SUFFIX)
        disk.sync_directory(os.path.dirname(os.path.abspath(self._path)))

    # The log, as pysyncobj reads and changes it.

    def add(self, command: bytes, index: int, term: int) -> None:
        self._offsets.append(self._written_end + len(self._pending))
        self._entries.append((command, index, term))
        self._pending += encode_record(command, index, term)

    def clear(self) -> None:
        self._cut(0)

    def deleteEntriesFrom(self, position: int) -> None:
        if position < len(self._entries):
            self._cut(position)

    def deleteEntriesTo(self, position: int) -> None:
        self.compact_to(position)

    def _cut(self, position: int) -> None:
        """Drop the entries from position on, in memory and from the file or the buffer."""
        end = self._offsets[position] if position < len(self._offsets) else None
        del self._entries[position:]
        del self._offsets[position:]
        if end is None:
            return
        if end >= self._written_end:
            del self._pending[end - self._written_end :]
            return
        self._pending.clear()
        self._written_end = end
        self._durable_end = min(self._durable_end, end)
        self._dirty = True
        self._try(lambda: disk.truncate(self._fd, self._path, end))

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        os.close(self._fd)

    # What the hardened transport adds.

    def sync(self) -> bool:
        """Write the buffered records and fdatasync if anything changed; True if it synced.

        A write or sync that fails (a full disk) leaves the journal failing: `failure` says
        why, nothing after the last durable end counts, and each later sync writes it all
        again from there (the meta first, if it is unsaved), so the node recovers once space
        returns. After a failed fsync the kernel may have dropped the pages it could not
        write, so a retry rewrites them instead of trusting a second fsync.
        """
        return bool(self._try(self._write_and_sync))

    def _write_and_sync(self) -> bool:
        if self._directory_unsynced:
            disk.sync_directory(os.path.dirname(os.path.abspath(self._path)))
            self._directory_unsynced = False
        if not self._meta_saved and self.failure is not None:
            self._save_meta()
        if self._pending:
            disk.pwrite_all(self._fd, self._path, self._pending, self._written_end)
            self._written_end += len(self._pending)
            self._pending.clear()
            self._dirty = True
        if not self._dirty:
            return False
        disk.sync_data(self._fd, self._path)
        self._durable_end = self._written_end
        self._dirty = False
        self.syncs += 1
        return True

    def _try(self, write: Callable[[], bool | None]) -> bool | None:
        """Run a write; on OSError fail the journal instead of raising into pysyncobj."""
        try:
            result = write()
        except OSError as error:
            self._fail(error)
            return None
        if self.failure is not None and self._meta_saved and not self._directory_unsynced:
            log.warning("journal %s is writable again", self._path)
            self.failure = None
        return result

    def _fail(self, error: OSError) -> None:
        if self.failure is None:
            log.error("journal %s cannot be written (%s): no acks until it can", self._path, error)
            self.failures += 1
        self.failure = str(error)
        self._back_to_durable_end()

    def _back_to_durable_end(self) -> None:
        """Treat everything after the durable end as unwritten: buffer its records again and
        cut the file there, so no stale bytes remain behind what is written next."""
        first = bisect.bisect_left(self._offsets, self._durable_end)
        self._pending = bytearray(b"".join(encode_record(*e) for e in self._entries[first:]))
        self._written_end = self._durable_end
        self._dirty = True
        with contextlib.suppress(OSError):  # shrinking needs no space; if it fails, the next
            disk.truncate(self._fd, self._path, self._durable_end)  # write covers it anyway

    def compact_to(self, position: int) -> None:
        """Drop the first `position` entries atomically (against the compaction crash).

        pysyncobj rewrites its journal in place (clear, then re-add), so a crash in between
        leaves a journal without the entries after the dump. Here the kept entries go to a new
        file, synced and renamed over the old one: a crash leaves one of the two, both whole.
        """
        kept = self._entries[position:]
        try:
            self._write_whole_file(kept)
        except OSError as error:
            if os.path.exists(self._path + ".new"):  # not renamed: the old journal stands
                with contextlib.suppress(OSError):
                    disk.remove(self._path + ".new")
                log.error(
                    "journal %s: compaction failed (%s); the log stays whole", self._path, error
                )
                return
            self._directory_unsynced = True  # renamed: adopt it, and make the name durable
            self._fail(error)
        fd = disk.open_file(self._path, os.O_RDWR)
        os.close(self._fd)
        self._fd = fd
        self._entries = kept
        self._offsets = []
        offset = HEADER_BYTES
        for command, _, _ in kept:
            self._offsets.append(offset)
            offset += RECORD_HEADER_BYTES + len(command)
        self._written_end = self._durable_end = offset
        self._pending.clear()
        self._dirty = False
        self.compactions += 1

    def align_to_dump(self, dump_entries: tuple[RaftEntryTuple, RaftEntryTuple]) -> bool:
        """Compact so the journal starts with the dump's two entries if it holds them further in.

        After a crash between the dump's rename and the end of compaction, the journal still
        starts before the dump. pysyncobj would then clear it and lose every entry after the
        dump; starting it at the dump's entries makes pysyncobj keep it.
        """
        before_last, last = dump_entries
        position = before_last[1] - self._entries[0][1]
        if position <= 0 or position + 1 >= len(self._entries):
            return False
        if self._entries[position] != before_last or self._entries[position + 1] != last:
            return False
        self.compact_to(position)
        return True
