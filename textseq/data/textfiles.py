"""Reading text files for training: UTF-8 (a byte-order mark is dropped), `\\n` or `\\r\\n`, `.gz` read directly;
and writing the text files a user asks for.

Errors name the file, the line and what to do; nothing is silently replaced.

>>> read_lines("data/samples/tiny.de")  # doctest: +SKIP
['ein mann fährt fahrrad .', ...]
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

from textseq.errors import UserError

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in pieces (memory stays flat for a corpus shard)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes(path: Path, key: str) -> bytes:
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_dir():
        raise UserError(f"{key}: {path} is a directory; give the path of a text file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{key}: {path}: cannot be read ({error})") from None


def read_lines(path: Path, key: str, errors: str = "strict") -> list[str | None]:
    """The file's lines without line ends (`\\n` or `\\r\\n`); a final newline adds no empty line.

    `errors` says what a line with bytes that are not UTF-8 becomes: "strict" stops with the file,
    line and byte offset; "replace" puts U+FFFD in their place; "skip" gives None for that line
    (so parallel files stay aligned). Either of the last two is reported once.
    """
    data = read_bytes(path, key)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        if errors == "strict":
            line = data.count(b"\n", 0, error.start) + 1
            column = error.start - (data.rfind(b"\n", 0, error.start) + 1)
            raise UserError(f"{key}: {path}, line {line}: byte {data[error.start]:#04x} at byte offset {error.start} "
                            f"(column {column}) is not UTF-8; convert the file to UTF-8 (e.g. with iconv), or set "
                            "data.encoding_errors to replace or skip") from None
        text = None
    if text is not None:
        lines: list[str | None] = text.removeprefix("\ufeff").split("\n")
    else:
        lines, bad = [], []
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append(number)
                lines.append(raw.decode("utf-8", errors="replace") if errors == "replace" else None)
        lines[0] = lines[0].removeprefix("\ufeff") if lines[0] is not None else None
        done = "replaced those bytes by U+FFFD" if errors == "replace" else "skipped them"
        log.warning("%s: %s: %d line(s) are not UTF-8 (the first is line %d); data.encoding_errors=%s %s",
                    key, path, len(bad), bad[0], errors, done)
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line and line.strip() for line in lines):
        raise UserError(f"{key}: {path} is empty; it needs one example per line")
    return [line.removesuffix("\r") if line is not None else None for line in lines]


def read_text(path: Path, key: str, errors: str = "strict") -> str:
    """The whole file as text, exactly as stored when it is UTF-8 (a byte-order mark dropped);
    otherwise as `read_lines` handles it, the lines it skips left out."""
    try:
        return read_bytes(path, key).decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "\n".join(line for line in read_lines(path, key, errors) if line is not None) + "\n"


def write_text(path: Path, text: str, remedy: str, label: str = "") -> None:
    """Writes `text` to `path` as UTF-8, or raises a UserError that names the file (after `label`, e.g.
    the flag that named it), says why it cannot be written and what to do (`remedy`)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"{label}{path}: cannot be written ({error.strerror or error}); {remedy}") from None
