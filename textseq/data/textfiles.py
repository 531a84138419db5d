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


# Written once, filled by the Python readers and (as TensorFlow strings) by the tf.data stream.
NOT_UTF8 = ("{key}: {file}, line {line}: {what}not UTF-8; convert the file to UTF-8 (e.g. with iconv), or set "
            "data.encoding_errors to replace or skip")
SKIPPED_NOT_UTF8 = "%s: %s: %d line(s) are not UTF-8 (the first is line %d); data.encoding_errors=%s %s"


def decode_line(raw: bytes, path: Path, number: int, key: str, errors: str) -> tuple[str | None, bool]:
    """A line's bytes as text (a byte-order mark and line end dropped) and whether they were not UTF-8.

    `errors` (data.encoding_errors) says what such a line becomes: "strict" stops with the file, line
    and byte; "replace" puts U+FFFD in place of the bad bytes; "skip" gives None.
    """
    try:
        return raw.decode("utf-8").removeprefix("\ufeff").removesuffix("\n").removesuffix("\r"), False
    except UnicodeDecodeError as error:
        if errors == "strict":
            what = f"byte {raw[error.start]:#04x} (column {error.start}) is "
            raise UserError(NOT_UTF8.format(key=key, file=path, line=number, what=what)) from None
        if errors == "skip":
            return None, True
        return raw.decode("utf-8", "replace").removeprefix("\ufeff").removesuffix("\n").removesuffix("\r"), True


def report_not_utf8(key: str, path: Path, bad: list[int], errors: str) -> None:
    """One warning for the lines of a file that were not UTF-8 (replaced or skipped)."""
    if bad:
        done = "replaced those bytes by U+FFFD" if errors == "replace" else "skipped them"
        log.warning(SKIPPED_NOT_UTF8, key, path, len(bad), bad[0], errors, done)


def read_lines(path: Path, key: str, errors: str = "strict") -> list[str | None]:
    """The file's lines without line ends (`\\n` or `\\r\\n`); a final newline adds no empty line.

    A line that is not UTF-8 is handled as `decode_line` says (None where it is skipped, so parallel
    files stay aligned); replaced or skipped lines are reported once.
    """
    data = read_bytes(path, key)
    try:
        lines: list[str | None] = data.decode("utf-8").removeprefix("\ufeff").split("\n")
    except UnicodeDecodeError:
        lines, bad = [], []
        for number, raw in enumerate(data.split(b"\n"), 1):
            line, not_utf8 = decode_line(raw, path, number, key, errors)
            lines.append(line)
            bad += [number] if not_utf8 else []
        report_not_utf8(key, path, bad, errors)
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
