"""Count-based baselines for language models: add-one unigram and bigram perplexity on a token stream.

They use the run's vocabulary and the same token stream as `textseq evaluate` (line ends counted),
so their perplexities compare directly with the model's. The vocabulary size V counts every id that
can occur in a stream, i.e. all but `<pad>` and `<s>`.

>>> ngram_perplexities([4, 5, 4, 5, 3], [4, 5, 3], vocab_size=6)["unigram"]  # doctest: +ELLIPSIS
3.43...
"""

from __future__ import annotations

import math

import numpy as np

from textseq.constants import EOS


def add_one_unigram(train_ids, vocab_size: int) -> np.ndarray:
    """The add-one (Laplace) probability of every id after the counts in `train_ids` (`<pad>` and
    `<s>`, which never occur in a stream, get one count but are not counted as events).

    >>> (add_one_unigram([4, 4, 5], 6) * 7).round().tolist()
    [1.0, 1.0, 1.0, 1.0, 3.0, 2.0]
    """
    train_ids = np.asarray(train_ids, np.int64)
    events = vocab_size - 2  # <pad> and <s> never occur in a stream
    return (np.bincount(train_ids, minlength=vocab_size)[:vocab_size] + 1) / (len(train_ids) + events)


def ngram_perplexities(train_ids, test_ids, vocab_size: int) -> dict[str, float]:
    """Add-one (Laplace) unigram and bigram perplexities of `test_ids` under counts from `train_ids`.

    The bigram model conditions the first test token on EOS (the start of a line).
    """
    train_ids, test_ids = np.asarray(train_ids, np.int64), np.asarray(test_ids, np.int64)
    events = vocab_size - 2  # <pad> and <s> never occur in a stream
    unigram = add_one_unigram(train_ids, vocab_size)[test_ids]

    def keys(ids):
        previous = np.concatenate([[EOS], ids[:-1]])
        return previous * vocab_size + ids, previous

    train_keys, _ = keys(train_ids)
    seen, counts = np.unique(train_keys, return_counts=True)
    test_keys, test_previous = keys(test_ids)
    found = np.searchsorted(seen, test_keys)
    found = np.minimum(found, len(seen) - 1)
    pair_counts = np.where(seen[found] == test_keys, counts[found], 0)
    context_counts = np.bincount(keys(train_ids)[1], minlength=vocab_size)
    bigram = (pair_counts + 1) / (context_counts[test_previous] + events)
    return {"unigram": math.exp(-np.log(unigram).mean()), "bigram": math.exp(-np.log(bigram).mean())}
