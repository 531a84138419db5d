"""The training files of a streamed run as it first read them: a resume restores byte positions in
them, which mean nothing in a changed file, so their contents are recorded (`shards.json`) and
checked at every start.

>>> check_fingerprints(Path("runs/big/shards.json"), fingerprints(shards, Path("data")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from textseq.data.sources import Shard
from textseq.data.textfiles import file_sha256
from textseq.errors import UserError
from textseq.files import write_atomically

log = logging.getLogger(__name__)


def fingerprints(shards: list[Shard], root: Path) -> list[list]:
    """[name, size, SHA-256 of its bytes] of every file, the name relative to `root` (data.dir) when it is
    under it: what tells a changed file, wherever the corpus lies (a moved corpus has the same contents)."""
    found = []
    for path in (path for shard in shards for path in shard.files):
        name = path.relative_to(root) if path.is_relative_to(root) else path
        found.append([str(name), path.stat().st_size, file_sha256(path)])
    return found


def check_fingerprints(record: Path, found: list[list]) -> None:
    """Records the training files' fingerprints (`found`) in `record`, or checks them against those
    recorded there. Only the contents count: a corpus moved elsewhere (data.dir, $TEXTSEQ_DATA) resumes."""
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
        contents = [entry[1:] for entry in recorded]
    except FileNotFoundError:
        write_atomically(record, json.dumps(found, indent=1))
        return
    except (OSError, ValueError, TypeError, IndexError):
        raise UserError(f"{record}: is damaged; it records the training files this run reads. Restore "
                        "it from a backup, or train anew (--overwrite, or another --out)") from None
    if contents == [entry[1:] for entry in found]:
        if recorded != found:
            log.info("the training files moved (same contents): %s", found[0][0])
            write_atomically(record, json.dumps(found, indent=1))
        return
    before = {entry[0]: entry for entry in recorded}
    now = {entry[0]: entry for entry in found}
    changed = sorted(set(before) ^ set(now)) or [name for name in now if before[name] != now[name]]
    what = ("was added or removed" if changed[0] not in before or changed[0] not in now else
            f"changed ({before[changed[0]][1]} bytes then, {now[changed[0]][1]} now)" if before[changed[0]][1] !=
            now[changed[0]][1] else "changed (same size, other bytes)")
    raise UserError(f"data.train: {changed[0]} {what} since this run started"
                    f"{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}; a streamed run resumes at "
                    "positions in its files, which a changed file does not have. Put the files back as they "
                    "were to resume, or train anew on the new files (another --out, or --overwrite)")
