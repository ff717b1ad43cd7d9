"""The power-loss model (tests/chaos/power_loss.py): what a machine keeps of recorded operations."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import msgpack

from tests.chaos.power_loss import crash_image, read_operations

D = "/data"
J = f"{D}/raft.journal"


def image(*operations: Sequence[object], torn: bool = False) -> dict[str, bytes | None]:
    return crash_image(operations, random.Random(1), torn).files


def test_only_synced_data_is_kept() -> None:
    files = image(
        ["baseline", J, b"head"],
        ["write", J, 4, b"synced"],
        ["sync", J],
        ["write", J, 10, b"lost"],
    )
    assert files == {J: b"headsynced"}


def test_a_new_file_exists_only_once_its_directory_is_synced() -> None:
    created: list[Sequence[object]] = [["open", J, True], ["write", J, 0, b"data"], ["sync", J]]
    assert image(*created) == {J: None}
    assert image(*created, ["sync_directory", D]) == {J: b"data"}


def test_a_rename_counts_once_the_directory_is_synced() -> None:
    new = f"{J}.new"
    steps: list[Sequence[object]] = [
        ["baseline", J, b"old"],
        ["open", new, True],
        ["write", new, 0, b"new"],
        ["sync", new],
        ["rename", new, J],
    ]
    assert image(*steps) == {J: b"old", new: None}
    assert image(*steps, ["sync_directory", D]) == {J: b"new", new: None}


def test_a_file_synced_before_it_had_a_durable_name_keeps_its_data() -> None:
    steps: list[Sequence[object]] = [
        ["open", J, True],
        ["write", J, 0, b"abc"],
        ["sync", J],
        ["sync_directory", D],
    ]
    assert image(*steps, ["write", J, 3, b"def"]) == {J: b"abc"}


def test_a_truncation_is_kept_only_once_synced() -> None:
    steps: list[Sequence[object]] = [["baseline", J, b"abcdef"], ["truncate", J, 2]]
    assert image(*steps) == {J: b"abcdef"}
    assert image(*steps, ["sync", J]) == {J: b"ab"}


def test_a_torn_write_keeps_a_prefix_of_the_first_unsynced_write() -> None:
    steps: list[Sequence[object]] = [
        ["baseline", J, b"head"],
        ["write", J, 4, b"0123456789"],
        ["write", J, 14, b"x"],
    ]
    for seed in range(20):
        result = crash_image(steps, random.Random(seed), torn=True)
        kept = result.files[J]
        assert result.torn == J and kept is not None
        assert kept.startswith(b"head") and b"0123456789".startswith(kept[4:]) and len(kept) > 4


def test_a_record_cut_by_the_kill_is_not_an_operation(tmp_path: Path) -> None:
    log = tmp_path / "log"
    body = msgpack.packb(["sync", J])
    whole = len(body).to_bytes(4, "little") + body
    log.write_bytes(whole + whole[:-1])
    assert read_operations(log) == [["sync", J]]
