"""Large commands as chunks: split under the entry budget, reassembled whole or not at all,
by rules every node applies the same way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import pickle as pysyncobj_pickle

from store.errors import CodecError
from store.raft.chunks import Assembly, ChunkAssembler
from store.raft.entry import (
    BarrierEntry,
    Batch,
    Chunk,
    batch_bytes,
    decode_entry,
    encode_barrier,
    encode_batch,
    encode_chunks,
    wire_bytes,
)

P1 = b"proposr1"
P2 = b"proposr2"
ENTRY_BYTES = 1024


def chunks_of(proposer: bytes, sequence: int, command: bytes) -> list[Chunk]:
    entries = encode_chunks(proposer, sequence, command, ENTRY_BYTES)
    decoded = [decode_entry(e) for e in entries]
    assert all(isinstance(c, Chunk) for c in decoded)
    return [c for c in decoded if isinstance(c, Chunk)]


def feed(assembler: ChunkAssembler, chunks: list[Chunk], first_index: int) -> list[Assembly]:
    return [assembler.add(c, first_index + i)[0] for i, c in enumerate(chunks)]


@settings(deadline=None, max_examples=50)
@given(command=st.binary(min_size=1, max_size=20_000))
def test_chunks_stay_under_the_budget_and_reassemble_exactly(command: bytes) -> None:
    entries = encode_chunks(P1, 7, command, ENTRY_BYTES)
    # Measured as pysyncobj stores them: the pickled call of the replicated method.
    assert all(len(pysyncobj_pickle.dumps((0, (e,)))) <= ENTRY_BYTES + 64 for e in entries)
    assembler = ChunkAssembler(age_entries_max=1000)
    steps = [assembler.add(c, 10 + i) for i, c in enumerate(chunks_of(P1, 7, command))]
    assert [s for s, _ in steps[:-1]] == [Assembly.PENDING] * (len(steps) - 1)
    assert steps[-1] == (Assembly.COMPLETE, command)
    assert len(assembler) == 0


def test_interleaved_proposers_assemble_independently() -> None:
    first, second = chunks_of(P1, 1, b"a" * 3000), chunks_of(P2, 1, b"b" * 3000)
    assembler = ChunkAssembler(age_entries_max=1000)
    results = []
    for index, (one, two) in enumerate(zip(first, second, strict=True)):
        results.append(assembler.add(one, 2 * index))
        results.append(assembler.add(two, 2 * index + 1))
    assert results[-2] == (Assembly.COMPLETE, b"a" * 3000)
    assert results[-1] == (Assembly.COMPLETE, b"b" * 3000)


def test_a_missing_part_rejects_the_rest_and_applies_nothing() -> None:
    chunks = chunks_of(P1, 1, b"x" * 5000)
    assert len(chunks) >= 4
    assembler = ChunkAssembler(age_entries_max=1000)
    steps = feed(assembler, chunks[:1] + chunks[2:], 1)
    assert steps[0] is Assembly.PENDING
    assert set(steps[1:]) == {Assembly.REJECTED}
    assert len(assembler) == 0


def test_a_new_command_from_the_same_proposer_drops_the_incomplete_one() -> None:
    abandoned, fresh = chunks_of(P1, 1, b"x" * 3000), chunks_of(P1, 2, b"y" * 3000)
    assembler = ChunkAssembler(age_entries_max=1000)
    feed(assembler, abandoned[:2], 1)
    steps = feed(assembler, fresh, 10)
    assert steps[-1] is Assembly.COMPLETE
    # The rest of the abandoned command can no longer complete anything.
    assert set(feed(assembler, abandoned[2:], 20)) == {Assembly.REJECTED}


def test_a_stale_assembly_expires_after_the_age_limit() -> None:
    chunks = chunks_of(P1, 1, b"x" * 3000)
    assembler = ChunkAssembler(age_entries_max=100)
    assembler.add(chunks[0], 5)
    assembler.expire(105)
    assert len(assembler) == 1
    assembler.expire(106)
    assert len(assembler) == 0
    assert assembler.add(chunks[1], 107)[0] is Assembly.REJECTED


def test_a_duplicate_last_chunk_cannot_apply_the_command_twice() -> None:
    chunks = chunks_of(P1, 1, b"x" * 3000)
    assembler = ChunkAssembler(age_entries_max=1000)
    assert feed(assembler, chunks, 1)[-1] is Assembly.COMPLETE
    assert assembler.add(chunks[-1], 50)[0] is Assembly.REJECTED


def test_assemblies_survive_a_snapshot_round_trip() -> None:
    chunks = chunks_of(P1, 3, b"z" * 3000)
    assembler = ChunkAssembler(age_entries_max=1000)
    feed(assembler, chunks[:2], 1)
    restored = ChunkAssembler(age_entries_max=1000)
    restored.load_plain(assembler.to_plain())
    assert feed(restored, chunks[2:], 3)[-1] is Assembly.COMPLETE


def test_entries_round_trip() -> None:
    assert decode_entry(encode_batch([b"a", b"bc"])) == Batch((b"a", b"bc"))
    assert decode_entry(encode_barrier()) == BarrierEntry()
    assert len(encode_batch([b"x" * 100] * 10)) <= batch_bytes(1000, 10)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x90", b"\x92\x07\x90", b"\x92\x00\x91\x01"])
def test_foreign_entries_are_codec_errors(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_entry(data)


@settings(deadline=None, max_examples=50)
@given(data=st.binary(min_size=1, max_size=2000))
def test_wire_bytes_is_what_pysyncobj_pickling_adds(data: bytes) -> None:
    overhead = len(pysyncobj_pickle.dumps((0, (b"a",)))) - 1
    assert len(pysyncobj_pickle.dumps((0, (data,)))) == overhead + wire_bytes(data)
