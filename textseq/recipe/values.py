"""What a recipe value may be: the bounds of every numeric key, the file-list type, the check of
one value against its type and bounds, and where in the file a key was written (for messages).

>>> check_value(3, int, {"min": 1}, ("train", "epochs"), Where("", {}, []))
3
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from textseq.errors import UserError

MAX_SEED = 2**32 - 1  # what NumPy's and Keras' seeds take
MAX_TOKENS = 100_000  # the longest sequence a length or window may ask for; tensors are sized by it
MAX_ALPHA = 5.0  # beam search length penalty: GNMT's papers use up to 1; beyond 5 the length alone ranks
MAX_BEAM = 256  # hypotheses a beam search keeps: beyond, every step's top-k sorts most of a vocabulary
# Upper bounds of sizes, far above any use on one machine and below what exhausts one (or hangs it):
MAX_UNITS = 16_384  # embedding, recurrent and attention sizes: an LSTM of 16k units has 2 GB of weights a layer
MAX_LAYERS = 64
MAX_BATCH = 65_536  # examples in a batch (the global batch)
MAX_BATCH_TOKENS = 10_000_000
MAX_HELD = 10_000_000  # pairs or lines held in memory at once: a shuffle buffer, a vocabulary's sample
MAX_GENERATED = 5_000_000  # dates pairs generated into memory
MAX_DISTINCT_DATES = 30_000  # held-out dates are distinct days of 1950-2049
MAX_COUNT = 10**12  # epochs, steps, checkpoints, patience: counts that cost time, not memory
MAX_VOCABULARY = 1_000_000
MAX_WEIGHT = 1e6  # a corpus weight (data.train corpora): their sum must stay finite
# Sampling temperatures: below the least, float32 logits over it overflow (garbage, or padding tokens);
# the distribution is then greedy decoding's anyway.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.001, 100.0


class Files:
    """A recipe type: one path or glob, a list of them, or (data.train) a list of corpora with weights
    (`[{files: ..., weight: 2}, ...]`). Kept as a string, a tuple of strings, or a tuple of `Corpus`."""


@dataclass(frozen=True)
class Corpus:
    """One training corpus of several, mixed by weight: `{files: PATH_OR_GLOB_OR_LIST, weight: 1}`."""

    files: tuple[str, ...]
    weight: float = 1.0


class Broken(Exception):
    """A section's rule that involves more than one key: the key to point at (within the section;
    empty for the section itself) and the message. Loading adds the file and line."""

    def __init__(self, key: tuple[str, ...], message: str):
        super().__init__(message)
        self.key, self.message = key, message


SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def option(default: Any, help: str, key: str | None = None, **checks: Any) -> Any:
    """A recipe field: its default, its help line, checks such as `min=1`, `max=9` or `below=1`, and its
    key in the recipe when that cannot be the field's name (`from`, a Python keyword)."""
    return field(default=default, metadata={"help": help, **({"key": key} if key else {}), **checks})


def recipe_key(f: Any) -> str:
    """The key a dataclass field has in the recipe."""
    return f.metadata.get("key", f.name)


@dataclass
class Where:
    source: str
    lines: dict
    overrides: list

    def __call__(self, path: tuple) -> str:
        dotted = ".".join(path)
        for item in self.overrides:
            if item.split("=", 1)[0].strip() == dotted:
                return f"--set {item}: "
        line = self.lines.get(path)
        if not self.source:
            return ""
        return f"{self.source}:{line}: " if line else f"{self.source}: "


# How a value's kind and bounds read in error messages and in the recipe reference.
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
BOUND_WORDS = {"min": "at least", "max": "at most", "above": "greater than", "below": "less than"}


def check_value(value: Any, hint: Any, checks: dict, path: tuple, where: Where) -> Any:
    dotted = ".".join(path)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is Files:
        return check_files(value, path, where)
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise UserError(f"{where(path)}{dotted} must be one of {', '.join(allowed)}; got {value!r}")
        return value
    expected = TYPE_WORDS[hint]
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if hint is float and isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        value, ok = float(value), True  # YAML 1.1 (PyYAML) reads 1e-4, without a dot, as text
    if not ok:
        raise UserError(f"{where(path)}{dotted} must be {expected}; got {value!r}")
    if hint is float and not math.isfinite(value):
        raise UserError(f"{where(path)}{dotted} must be a finite number; got {value!r}")
    for check, bound in checks.items():
        bad = {
            "min": lambda: value < bound,
            "max": lambda: value > bound,
            "above": lambda: value <= bound,
            "below": lambda: value >= bound,
        }.get(check, lambda: False)()
        if bad:
            raise UserError(f"{where(path)}{dotted} must be {BOUND_WORDS[check]} {bound}; got {value!r}")
    return value


def allowed_values(hint: Any, checks: dict) -> str:
    """What a recipe field takes, in words, as `check_value` checks it (the recipe reference's column).

    >>> allowed_values(int | None, {"min": 1})
    'an integer, at least 1; or null'
    """
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is Files:
        words = "a path or glob, or a list of them"
    elif typing.get_origin(hint) is Literal:
        words = ", ".join(str(a) for a in typing.get_args(hint))
    else:
        words = TYPE_WORDS[hint]
        bounds = [f"{BOUND_WORDS[check]} {bound:,}" for check, bound in checks.items() if check in BOUND_WORDS]
        words = ", ".join([words, *bounds])
    return f"{words}; or null" if optional else words


def check_files(value: Any, path: tuple, where: Where) -> str | tuple:
    """A `Files` value: a string, a list of strings, or (data.train) a list of {files, weight}."""
    dotted = ".".join(path)
    wanted = ("a path or glob, or a list of them" +
              (", or a list of corpora {files: ..., weight: ...}" if path[-1] == "train" else ""))

    def paths(item, key):
        if isinstance(item, str) and item.strip():
            return item
        if isinstance(item, list) and item and all(isinstance(i, str) and i.strip() for i in item):
            return tuple(item)
        raise UserError(f"{where(path)}{key} must be {wanted}; got {item!r}")

    if not isinstance(value, list) or not any(isinstance(item, dict) for item in value):
        return paths(value, dotted)
    if path[-1] != "train":
        raise UserError(f"{where(path)}{dotted}: corpora with weights mix training data; give {dotted} a path, glob "
                        "or list")
    corpora = []
    for number, item in enumerate(value):
        key = f"{dotted}[{number}]"
        if not isinstance(item, dict) or "files" not in item or set(item) - {"files", "weight"}:
            raise UserError(f"{where(path)}{key} must be a mapping with files: (a path, glob or list) and weight: "
                            f"(a positive number); got {item!r}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or not 0 < weight <= MAX_WEIGHT:
            raise UserError(f"{where(path)}{key}.weight must be a positive number of at most {MAX_WEIGHT:g} (the "
                            f"corpus' share of training pairs is its weight over the sum of weights); got {weight!r}")
        files = paths(item["files"], f"{key}.files")
        corpora.append(Corpus(files if isinstance(files, tuple) else (files,), float(weight)))
    return tuple(corpora)
