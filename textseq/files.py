"""Writing files so that a crash, a kill or a full disk never leaves half of one.

One rule for every file textseq writes into a run directory (and for vocabularies anywhere): the
content goes to the file's name plus `.tmp` (a folder of that name where a writer makes several
files, as TensorFlow's checkpoints do), is flushed to the disk, and is then renamed into place. So a
name ending in `.tmp` is always a write that did not finish, and `remove_temporaries` may delete it.

>>> write_atomically(Path("runs/dates/checkpoints/state.json"), '{"epoch": 3}')  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TMP = ".tmp"


def temporary(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(path.name + TMP)


def write_atomically(path: Path, data: str | bytes) -> None:
    """Writes a file so that a crash leaves either the old or the new content, never half; a failed
    write (a full disk) leaves no temporary file."""
    tmp = temporary(path)
    try:
        write_file(tmp, data.encode("utf-8") if isinstance(data, str) else data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    replace(tmp, path)


def write_file(path: Path, data: bytes) -> None:
    """Every byte `write_atomically` writes goes through here, flushed to the disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace(tmp: Path, path: Path) -> None:
    """Puts a completely written file (or folder) in place: every commit goes through here."""
    os.replace(tmp, path)


def remove_temporaries(*folders: Path) -> list[Path]:
    """Deletes what unfinished writes left in `folders` (names ending in `.tmp`); returns them."""
    found = [path for folder in folders if folder.is_dir() for path in folder.glob(f"*{TMP}")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else path.unlink(
            missing_ok=True)
    return found
