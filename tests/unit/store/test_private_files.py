"""Private files: created 0600 in 0700 directories; tightened when an older run left them wide."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.private_files import make_private_directory, open_private, restrict_umask, tighten_files


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def shared_umask() -> Iterator[None]:
    """The usual umask (022), under which mkdir and open make what others can read."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_missing_directory_and_its_missing_parents_are_made_0700(
    tmp_path: Path, shared_umask: None
) -> None:
    os.chmod(tmp_path, 0o755)
    target = tmp_path / "a" / "b" / "raft"
    make_private_directory(target)
    assert [mode_of(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3
    assert mode_of(tmp_path) == 0o755  # a parent that existed is not ours to change


def test_an_existing_directory_is_tightened_but_not_what_it_holds(
    tmp_path: Path, shared_umask: None
) -> None:
    target = tmp_path / "data"
    target.mkdir(mode=0o755)
    (target / "other").write_text("not ours")
    make_private_directory(target)
    assert mode_of(target) == 0o700
    assert mode_of(target / "other") == 0o644


def test_only_the_named_files_are_tightened(tmp_path: Path, shared_umask: None) -> None:
    for name in ("raft.journal", "raft.journal.meta", "raft.dump.1.tmp", "notes.txt"):
        (tmp_path / name).write_text(name)
        os.chmod(tmp_path / name, 0o664)
    (tmp_path / "raft.dump.d").mkdir(mode=0o755)
    tighten_files(tmp_path, ("raft.journal", "raft.dump"))
    modes = {path.name: mode_of(path) for path in tmp_path.iterdir()}
    assert modes == {
        "raft.journal": 0o600,
        "raft.journal.meta": 0o600,
        "raft.dump.1.tmp": 0o600,
        "notes.txt": 0o664,
        "raft.dump.d": 0o755,
    }


def test_open_private_makes_a_new_file_and_an_existing_one_0600(
    tmp_path: Path, shared_umask: None
) -> None:
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.write_text("old")
    os.chmod(existing, 0o644)
    for path in (fresh, existing):
        os.close(open_private(path, os.O_WRONLY | os.O_TRUNC))
        assert mode_of(path) == 0o600


def test_after_restrict_umask_plain_open_and_mkdir_make_private_files(
    tmp_path: Path, shared_umask: None
) -> None:
    restrict_umask()
    (tmp_path / "file").write_text("as pysyncobj writes its own files")
    (tmp_path / "directory").mkdir()
    assert mode_of(tmp_path / "file") == 0o600
    assert mode_of(tmp_path / "directory") == 0o700
