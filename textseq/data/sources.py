"""Readers that turn `recipe.data` into lists of raw (source, target) string pairs, per split.

>>> pairs = load_pairs(DataConfig(source="dates", train_examples=3), "train")
>>> len(pairs), pairs[0][1]  # doctest: +SKIP
(3, '2046-09-13')
"""

from __future__ import annotations

from textseq.data.synthetic import dates_examples
from textseq.recipe import DataConfig

SPLITS = ("train", "validation", "test")


def load_pairs(config: DataConfig, split: str) -> list[tuple[str, str]]:
    """The raw (source, target) pairs of one split, in their stored order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    count = {"train": config.train_examples, "validation": config.validation_examples,
             "test": config.test_examples}[split]
    return dates_examples(split, count, config.seed, validation_days=config.validation_examples,
                          test_days=config.test_examples)
