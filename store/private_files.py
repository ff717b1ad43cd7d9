"""Private files: what holds payloads, tokens or secrets is readable by its owner only.

The journal, its meta file and the dumps carry every job's payload (and the hashes of app
tokens); the cluster secret opens the Raft port. Every such file is created 0600 and every
directory holding them 0700. Files and directories left wider by an older version are
tightened at start.

pysyncobj creates the journal, its compaction copy and the dumps it receives from a leader with
plain `open()`, whose mode comes from the process umask: `restrict_umask` is the only way to have
those born private. The umask is process-wide, which suits a node: it writes nothing that others
should read.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
# Group and other permission bits: none of them may be set on a private file or directory.
_SHARED_BITS = 0o077


def restrict_umask() -> None:
    """Make every file and directory this process creates from now on private to its owner."""
    previous = os.umask(_SHARED_BITS)
    if previous & _SHARED_BITS != _SHARED_BITS:
        log.info("umask set to %03o (was %03o): new files are private", _SHARED_BITS, previous)


def open_private(path: Path | str, flags: int) -> int:
    """os.open(path, flags | O_CREAT) with mode 0600, also when the file already existed wider."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_private_directory(path: Path) -> None:
    """Create `path` (and its missing parents) 0700, or tighten it to 0700 if it exists.

    Only the directory itself is tightened, not what it holds: a data directory may be given as
    a place shared with other things, whose modes are not ours to change.
    """
    missing = [directory for directory in (path, *path.parents) if not directory.exists()]
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    # mkdir applies its mode to the last directory only, and through the umask.
    for directory in (path, *missing):
        _tighten(directory)


def tighten_files(directory: Path, name_prefixes: Iterable[str]) -> None:
    """Tighten the regular files directly in `directory` whose names start with a prefix."""
    prefixes = tuple(name_prefixes)
    for entry in os.scandir(directory):
        if entry.name.startswith(prefixes) and entry.is_file(follow_symlinks=False):
            _tighten(Path(entry.path))


def _tighten(path: Path) -> None:
    mode = stat.S_IMODE(path.lstat().st_mode)
    if mode & _SHARED_BITS:
        os.chmod(path, mode & ~_SHARED_BITS)
        log.warning("%s was mode %03o: tightened to %03o", path, mode, mode & ~_SHARED_BITS)
