"""Readers that turn `recipe.data` into lists of raw (source, target) string pairs, per split.

- `dates`: generated, offline (`textseq/data/synthetic.py`).
- `parallel`: two aligned text files per split, `PREFIX.SRC_LANG` and `PREFIX.TGT_LANG` (or `.gz`),
  line i of one translating line i of the other, the layout of Multi30k, WMT and fairseq.
  Relative prefixes are under `data.dir` (default: the corpus cache of `textseq data fetch`).

>>> pairs = load_pairs(DataConfig(source="dates", train_examples=3), "train")
>>> len(pairs), pairs[0][1]  # doctest: +SKIP
(3, '2046-09-13')
"""

from __future__ import annotations

import logging
from pathlib import Path

from textseq.data.corpora import CORPORA, data_dir, fetch_hint
from textseq.data.synthetic import dates_examples
from textseq.data.textfiles import read_lines
from textseq.errors import UserError
from textseq.recipe import DataConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def load_pairs(config: DataConfig, split: str) -> list[tuple[str, str]]:
    """The raw (source, target) pairs of one split, in their stored order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if config.source == "parallel":
        return parallel_pairs(config, split)
    count = {"train": config.train_examples, "validation": config.validation_examples,
             "test": config.test_examples}[split]
    return dates_examples(split, count, config.seed, validation_days=config.validation_examples,
                          test_days=config.test_examples)


def split_files(config: DataConfig, split: str) -> tuple[Path, Path]:
    """The source and target files of one split of a parallel corpus (`.gz` when only that exists)."""
    prefix = Path(getattr(config, split)).expanduser()
    if not prefix.is_absolute():
        prefix = Path(config.dir).expanduser() / prefix if config.dir else data_dir() / prefix
    files = []
    for language in (config.source_language, config.target_language):
        plain = prefix.with_name(f"{prefix.name}.{language}")
        packed = plain.with_name(plain.name + ".gz")
        files.append(packed if not plain.exists() and packed.exists() else plain)
    return files[0], files[1]


def parallel_pairs(config: DataConfig, split: str) -> list[tuple[str, str]]:
    key = f"data.{split}"
    sources, targets = [], []
    for path, side in zip(split_files(config, split), (sources, targets)):
        try:
            side.extend(read_lines(path, key))
        except FileNotFoundError:
            corpus = next((name for name in CORPORA if name in path.parts), None)
            hint = fetch_hint(corpus) if corpus else "check the path, or set data.dir to the directory that holds it"
            raise UserError(f"{key}: {path} (or {path.name}.gz): no such file; {hint}") from None
    source_file, target_file = split_files(config, split)
    if len(sources) != len(targets):
        raise UserError(f"{key}: {source_file} has {len(sources)} lines but {target_file} has {len(targets)}; "
                        "line i of one must translate line i of the other")
    pairs = [(s.strip(), t.strip()) for s, t in zip(sources, targets)]
    kept = [(s, t) for s, t in pairs if s and t]
    if len(kept) < len(pairs):
        blank = next(i for i, (s, t) in enumerate(pairs, 1) if not (s and t))
        log.warning("%s: skipped %d line pair(s) with an empty side (the first at line %d of %s)",
                    key, len(pairs) - len(kept), blank, source_file)
    return kept
