"""Texts to translations with a model and its two tokenizers, in batches of similar length: what a
loaded run's `Translator`, training's validation BLEU and the export share.

>>> texts = TextTranslator(model, source, target, max_source_length=50)  # doctest: +SKIP
>>> texts.translate(["3rd of March 1998"], DecodingOptions(max_length=12))  # doctest: +SKIP
['1998-03-03']
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from textseq.constants import PAD
from textseq.data.tokenizer import TextTokenizer
from textseq.decoding import DecodingOptions, decode
from textseq.models import Seq2Seq


class Hypothesis(NamedTuple):
    text: str
    score: float  # sum of token log-probabilities, over the length penalty for beam search with alpha > 0


def at_least_one_step(ids: tf.Tensor) -> tf.Tensor:
    """Pads `[batch, steps]` ids with PAD to one step when there are none (an empty text)."""
    return tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])


def source_ids(tokenizer: TextTokenizer, texts: tf.Tensor, max_length: int) -> tf.Tensor:
    """Strings `[batch]` -> source ids `[batch, steps]`, truncated to `max_length`, at least one step."""
    return at_least_one_step(tokenizer.encode(texts)[:, :max_length].to_tensor(PAD))


class TextTranslator:
    """A model with its source and target tokenizers: texts in, hypotheses out."""

    def __init__(self, model: Seq2Seq, source: TextTokenizer, target: TextTokenizer, max_source_length: int):
        self.model, self.source, self.target = model, source, target
        self.max_source_length = max_source_length
        self._compiled: dict = {}

    def encode(self, texts: list[str]) -> tf.Tensor:
        """Source ids `[batch, steps]`, truncated to `max_source_length`, at least one step."""
        return source_ids(self.source, tf.constant(texts, tf.string), self.max_source_length)

    def search(self, source_ids: tf.Tensor, options: DecodingOptions):
        """`decode` compiled once per options: (tokens, scores, weights) tensors."""
        if options not in self._compiled:
            self._compiled[options] = tf.function(
                lambda ids: decode(self.model, ids, options),
                input_signature=[tf.TensorSpec([None, None], tf.int32)])
        return self._compiled[options](source_ids)

    def n_best(self, texts: list[str], options: DecodingOptions, batch_size: int = 64,
               progress: Callable[[int, int], None] | None = None) -> list[list[Hypothesis]]:
        """The `options.n_best` best hypotheses of every text, in input order.

        Texts are decoded in batches of similar length (less padding); `progress(done, total)` is
        called after each batch with the number of texts decoded so far and in all.
        """
        lengths = self.source.encode(tf.constant(texts, tf.string)).row_lengths().numpy() if texts else []
        order = np.argsort(lengths, kind="stable")
        results: list[list[Hypothesis]] = [[] for _ in texts]
        for start in range(0, len(texts), batch_size):
            chunk = order[start:start + batch_size]
            tokens, scores, _ = self.search(self.encode([texts[i] for i in chunk]), options)
            n = tokens.shape[1]
            decoded = self.target.decode(tf.reshape(tokens, [len(chunk) * n, -1])).numpy()
            scores = scores.numpy()
            for row, index in enumerate(chunk):
                results[index] = [Hypothesis(decoded[row * n + k].decode("utf-8"), float(scores[row, k]))
                                  for k in range(n)]
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return results

    def translate(self, texts: list[str], options: DecodingOptions, batch_size: int = 64,
                  progress: Callable[[int, int], None] | None = None) -> list[str]:
        """The best translation of every text, in input order."""
        return [hyps[0].text for hyps in self.n_best(texts, options, batch_size, progress)]
