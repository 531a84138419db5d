"""Reading text files for training: UTF-8 (a byte-order mark is dropped), `\\n` or `\\r\\n`, `.gz` read directly.

Errors name the file, the line and what to do; nothing is silently replaced.

>>> read_lines("data/samples/tiny.de")  # doctest: +SKIP
['ein mann fährt fahrrad .', ...]
"""

from __future__ import annotations

import gzip
from pathlib import Path

from textseq.errors import UserError


def read_text(path: Path, key: str) -> str:
    """The whole file as text; `key` is the recipe key that named it, for the error messages."""
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_dir():
        raise UserError(f"{key}: {path} is a directory; give the path of a text file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{key}: {path}: cannot be read ({error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1)
        raise UserError(f"{key}: {path}, line {line}: byte {data[error.start]:#04x} at byte offset {error.start} "
                        f"(column {column}) is not UTF-8; convert the file to UTF-8, e.g. with iconv") from None
    return text.removeprefix("\ufeff")


def read_lines(path: Path, key: str) -> list[str]:
    """The file's lines without line ends (`\\n` or `\\r\\n`); a final newline adds no empty line."""
    text = read_text(path, key)
    if not text.strip():
        raise UserError(f"{key}: {path} is empty; it needs one example per line")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
