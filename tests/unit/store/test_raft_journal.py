"""The checksummed Raft journal (store/raft/journal.py) against real files.

What a crash can leave (a torn or zero-filled tail) is truncated; damage before the tail stops
the node with the file and offset; pysyncobj's own format is migrated; compaction and the meta
are durable.
"""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj.journal import FileJournal

from store.raft.journal import (
    HEADER_BYTES,
    RECORD_HEADER_BYTES,
    ChecksummedJournal,
    JournalDamaged,
    encode_record,
)
from tests.integration.journal_format import record_offsets

NO_OP = b"\x01"


def entry(index: int, term: int = 1, size: int = 4) -> tuple[bytes, int, int]:
    return (NO_OP + index.to_bytes(4, "big") + b"x" * size, index, term)


def written(path: Path, last: int, size: int = 4) -> list[tuple[bytes, int, int]]:
    """A journal of entries 1..last on disk, synced and closed; its entries."""
    journal = ChecksummedJournal(str(path))
    entries = [entry(index, size=size) for index in range(1, last + 1)]
    for item in entries:
        journal.add(*item)
    journal._destroy()
    return entries


def reopened(path: Path) -> list[tuple[bytes, int, int]]:
    journal = ChecksummedJournal(str(path))
    entries = list(journal[:])
    journal._destroy()
    return entries


def test_entries_and_meta_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = ChecksummedJournal(str(path))
    journal.add(*entry(1))
    journal.add(*entry(2, term=3))
    journal.setCurrentTerm(3, "127.0.0.1:9")
    journal.setRaftCommitIndex(2)
    journal.onOneSecondTimer()
    journal._destroy()
    again = ChecksummedJournal(str(path))
    assert list(again[:]) == [entry(1), entry(2, term=3)]
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (3, "127.0.0.1:9")
    assert again.getRaftCommitIndex() == 2
    again._destroy()


def test_added_entries_reach_the_file_only_at_sync(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = ChecksummedJournal(str(path))
    journal.add(*entry(1))
    assert path.stat().st_size == HEADER_BYTES
    assert journal.sync()
    assert not journal.sync(), "nothing changed: no second sync"
    assert path.stat().st_size > HEADER_BYTES
    journal._destroy()


@pytest.mark.parametrize("cut_at", [1, RECORD_HEADER_BYTES - 1, RECORD_HEADER_BYTES + 3])
def test_a_torn_last_record_is_truncated(
    tmp_path: Path, cut_at: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal"
    entries = written(path, 10)
    last = record_offsets(path)[-1]
    with open(path, "r+b") as file:
        file.truncate(last + cut_at)
    with caplog.at_level(logging.WARNING):
        assert reopened(path) == entries[:9]
    assert path.stat().st_size == last, "the torn bytes are gone from the file"
    assert f"{path}: torn tail truncated at offset {last}" in caplog.text
    assert "9 records kept" in caplog.text


def test_a_garbled_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    entries = written(path, 10)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert reopened(path) == entries[:9]


def test_a_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    entries = written(path, 10)
    with open(path, "ab") as file:
        file.write(b"\0" * 8192)
    assert reopened(path) == entries
    assert ChecksummedJournal(str(path)).torn_tail_records == 0


@pytest.mark.parametrize(
    ("damaged", "record"), [("command", 4), ("length", 4), ("command", 0), ("length", 0)]
)
def test_damage_before_the_tail_stops_with_file_and_offset(
    tmp_path: Path, damaged: str, record: int
) -> None:
    path = tmp_path / "journal"
    written(path, 10)
    offset = record_offsets(path)[record]
    data = bytearray(path.read_bytes())
    if damaged == "command":
        data[offset + RECORD_HEADER_BYTES + 1] ^= 0x01
    else:  # a length field that reaches past the end of the file hides the records after it
        data[offset + 3] = 0x7F
    path.write_bytes(bytes(data))
    with pytest.raises(JournalDamaged) as raised:
        ChecksummedJournal(str(path))
    assert (raised.value.path, raised.value.offset) == (str(path), offset)
    assert str(path) in str(raised.value) and f"offset {offset}" in str(raised.value)
    assert "tock node --recover" in str(raised.value)
    assert path.read_bytes() == bytes(data), "a damaged journal is left as it was"


def test_a_file_that_is_no_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.write_bytes(b"something else entirely, long enough to hold a header")
    with pytest.raises(JournalDamaged, match="not a tock journal"):
        ChecksummedJournal(str(path))


def test_a_damaged_meta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = ChecksummedJournal(str(path))
    journal.setCurrentTerm(5, None)
    journal._destroy()
    meta = tmp_path / "journal.meta"
    data = bytearray(meta.read_bytes())
    data[-1] ^= 0x01
    meta.write_bytes(bytes(data))
    with pytest.raises(JournalDamaged, match="meta checksum"):
        ChecksummedJournal(str(path))


def test_a_pysyncobj_journal_is_migrated_with_its_meta(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    stock = FileJournal(str(path))
    entries = [entry(index, term=2) for index in range(1, 51)]
    for item in entries:
        stock.add(*item)
    stock.setCurrentTerm(2, "127.0.0.1:7")
    stock.setRaftCommitIndex(40)
    stock.onOneSecondTimer()
    stock._destroy()
    journal = ChecksummedJournal(str(path))
    assert list(journal[:]) == entries
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (2, "127.0.0.1:7")
    assert journal.getRaftCommitIndex() == 40
    journal._destroy()
    assert path.read_bytes().startswith(b"TOCKJRNL")
    assert (tmp_path / "journal.meta").read_bytes().startswith(b"TOCKMETA")
    assert reopened(path) == entries


def test_compaction_rewrites_the_journal_into_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    written(path, 100)
    journal = ChecksummedJournal(str(path))
    journal.setRaftCommitIndex(90)
    journal.compact_to(40)
    journal.add(*entry(101))  # the renamed file still grows
    assert [item[1] for item in journal[:]] == list(range(41, 102))
    assert journal.getRaftCommitIndex() == 90, "the in-memory meta survives the compaction"
    journal._destroy()
    assert [item[1] for item in reopened(path)] == list(range(41, 102))
    assert sorted(file.name for file in tmp_path.iterdir()) == ["journal"]


def test_a_crash_during_compaction_leaves_the_old_journal_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    written(path, 100)
    journal = ChecksummedJournal(str(path))

    def crash(_source: str, _target: str) -> None:
        raise OSError("crashed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    journal.compact_to(40)
    monkeypatch.undo()
    assert [item[1] for item in journal[:]] == list(range(1, 101)), "the log stays whole"
    journal._destroy()
    assert [item[1] for item in reopened(path)] == list(range(1, 101))


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths os.fsync is called on from now on, in order."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_term_and_vote_are_fsynced_with_their_directory(tmp_path: Path, fsynced: list[str]) -> None:
    path = tmp_path / "journal"
    journal = ChecksummedJournal(str(path))
    fsynced.clear()
    journal.setCurrentTerm(7, "127.0.0.1:1")
    assert fsynced == [str(path) + ".meta.tmp", str(tmp_path)]
    journal._destroy()


def test_a_new_journal_is_durable_in_its_directory(tmp_path: Path, fsynced: list[str]) -> None:
    ChecksummedJournal(str(tmp_path / "journal"))._destroy()
    assert fsynced[-1] == str(tmp_path), "the creation is made durable by a directory fsync"


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 300)),
        st.tuples(st.just("sync"), st.just(0)),
        st.tuples(st.just("cut"), st.integers(0, 40)),
        st.tuples(st.just("compact"), st.integers(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(0, 2**32))
def test_the_file_always_reads_back_as_the_synced_log(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], seed: int
) -> None:
    """Any sequence of adds, syncs, cuts and compactions, then a torn next write: the reopened
    journal is the log as of the last sync and the next write's records that are whole."""
    path = tmp_path_factory.mktemp("journal") / "journal"
    journal = ChecksummedJournal(str(path))
    next_index, synced = 1, list(journal[:])
    for op, value in ops:
        if op == "add":
            journal.add(*entry(next_index, size=value))
            next_index += 1
        elif op == "sync":
            journal.sync()
            synced = list(journal[:])
        elif op == "cut" and len(journal):
            journal.deleteEntriesFrom(value % len(journal))
            next_index = journal[-1][1] + 1 if len(journal) else next_index
        elif op == "compact" and len(journal) > 1:
            journal.compact_to(value % len(journal))
            synced = list(journal[:])
    journal.sync()
    synced = list(journal[:])
    size = path.stat().st_size
    os.close(journal._fd)
    following = [entry(next_index + n, size=n * 7) for n in range(5)]
    records = [encode_record(*item) for item in following]
    torn = random.Random(seed).randrange(0, sum(map(len, records)))
    with open(path, "ab") as file:  # a crash in the middle of the next write
        file.write(b"".join(records)[:torn])
    whole = 0  # records of the next write that reached the file whole are entries like others
    while whole < len(records) and sum(map(len, records[: whole + 1])) <= torn:
        whole += 1
    assert reopened(path) == synced + following[:whole]
    assert path.stat().st_size == size + sum(map(len, records[:whole]))


def disk_full(monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, call, no_space)


@pytest.mark.parametrize("failing", ["pwrite", "fdatasync"])
def test_a_full_disk_fails_the_journal_until_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "journal"
    entries = written(path, 5)
    journal = ChecksummedJournal(str(path))
    journal.add(*entry(6))
    disk_full(monkeypatch, failing)
    assert not journal.sync() and journal.failure is not None
    assert "No space left" in journal.failure and journal.failures == 1
    journal.add(*entry(7))
    assert not journal.sync() and journal.failures == 1, "one failure until it worked again"
    assert reopened(path) == entries, "nothing past the durable end counts"
    monkeypatch.undo()
    assert journal.sync() and journal.failure is None
    journal._destroy()
    assert reopened(path) == [*entries, entry(6), entry(7)]


def test_a_vote_that_cannot_be_stored_fails_the_journal_until_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    journal = ChecksummedJournal(str(path))
    disk_full(monkeypatch, "pwrite")
    journal.setCurrentTerm(4, "127.0.0.1:2")
    assert journal.failure is not None and journal.getCurrentTerm() == 4
    monkeypatch.undo()
    journal.sync()
    assert journal.failure is None
    journal._destroy()
    again = ChecksummedJournal(str(path))
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (4, "127.0.0.1:2")
    again._destroy()


def test_a_compaction_without_space_keeps_the_whole_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    entries = written(path, 20)
    journal = ChecksummedJournal(str(path))
    disk_full(monkeypatch, "pwrite")
    journal.compact_to(10)
    monkeypatch.undo()
    assert list(journal[:]) == entries and journal.failure is None
    journal.add(*entry(21))
    journal._destroy()
    assert reopened(path) == [*entries, entry(21)]
    assert not (tmp_path / "journal.new").exists()
