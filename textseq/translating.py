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


BUCKET = 16  # a one-text beam search compiles once per 16 source (and prefix) lengths


def to_bucket(ids: tf.Tensor) -> tf.Tensor:
    """Pads `[batch, steps]` ids with PAD to the next multiple of `BUCKET` steps."""
    return tf.pad(ids, [[0, 0], [0, -ids.shape[1] % BUCKET]], constant_values=PAD)


def at_least_one_step(ids: tf.Tensor) -> tf.Tensor:
    """Pads `[batch, steps]` ids with PAD to one step when there are none (an empty text)."""
    return tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])


def source_ids(tokenizer: TextTokenizer, texts: tf.Tensor, max_length: int) -> tf.Tensor:
    """Strings `[batch]` -> source ids `[batch, steps]`, truncated to `max_length`, at least one step."""
    return at_least_one_step(tokenizer.encode(texts)[:, :max_length].to_tensor(PAD))


def prefix_ids(tokenizer: TextTokenizer, prefixes: tf.Tensor, max_length: int) -> tf.Tensor:
    """Target prefixes `[batch]` -> ids `[batch, steps]` (PAD-padded), at most `max_length - 1` of them,
    so that an output can still end."""
    return tokenizer.encode(prefixes)[:, :max(max_length - 1, 0)].to_tensor(PAD)


def with_prefix(decoded: tf.Tensor, prefixes: tf.Tensor, forced: tf.Tensor, tokenizer: TextTokenizer) -> tf.Tensor:
    """Outputs `[batch]` that start with their prefix exactly as given: the prefix as the vocabulary
    reads it back (lower-cased, `<unk>` for unknown words, ...) is replaced by the given text."""
    shown = tokenizer.decode(forced)
    length = tf.strings.length(shown)
    begins = tf.equal(tf.strings.substr(decoded, tf.zeros_like(length), length), shown)
    rest = after(decoded, length)
    spaced = tf.strings.regex_full_match(prefixes, r"(?s).*\s") & tf.strings.regex_full_match(rest, r"(?s)\s.*")
    rest = tf.where(spaced, after(rest, tf.ones_like(length)), rest)  # one space
    return tf.where(begins & (length > 0), tf.strings.join([prefixes, rest]), decoded)


def after(texts: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """What follows the first `positions` bytes of each text; empty where a text is not that long
    (`tf.strings.substr` refuses a position past the end, and `tf.where` computes both branches)."""
    lengths = tf.strings.length(texts)
    return tf.strings.substr(texts, tf.minimum(positions, lengths), lengths)


class TextTranslator:
    """A model with its source and target tokenizers: texts in, hypotheses out.

    `xla_for_one_text`: a beam search of one text runs as one XLA computation (see `search`): 1.7x
    faster per text, for a compile of a few seconds per 16 source lengths, so for a process that
    translates one text at a time many times: `textseq serve` turns it on.
    """

    def __init__(self, model: Seq2Seq, source: TextTokenizer, target: TextTokenizer, max_source_length: int,
                 xla_for_one_text: bool = False):
        self.model, self.source, self.target = model, source, target
        self.max_source_length = max_source_length
        self.xla_for_one_text = xla_for_one_text
        self._compiled: dict = {}

    def encode(self, texts: list[str]) -> tf.Tensor:
        """Source ids `[batch, steps]`, truncated to `max_source_length`, at least one step."""
        return source_ids(self.source, tf.constant(texts, tf.string), self.max_source_length)

    def search(self, source_ids: tf.Tensor, options: DecodingOptions, prefix: tf.Tensor | None = None):
        """`decode` compiled once per options (and with or without a prefix): (tokens, scores, weights).

        With `xla_for_one_text`, a beam search of one text (a server's request) runs as one XLA
        computation: TensorFlow's graph runs each of the beam's many small ops per step on its own,
        which took 40% of its time. XLA compiles per shape, so the text's ids (and its prefix) are
        padded to a multiple of `BUCKET` steps (padding is masked); batches keep the graph, whose
        shapes vary too much.
        """
        one_beam = self.xla_for_one_text and options.method == "beam" and source_ids.shape[0] == 1
        key = (options, prefix is not None, one_beam)
        if key not in self._compiled:
            ids = tf.TensorSpec([None, None], tf.int32)
            self._compiled[key] = tf.function(lambda *given: decode(self.model, given[0], options, *given[1:]),
                                              input_signature=[ids, ids] if prefix is not None else [ids],
                                              jit_compile=one_beam, autograph=False)
        given = [source_ids, *([prefix] if prefix is not None else [])]
        if not one_beam:
            return self._compiled[key](*given)
        tokens, scores, weights = self._compiled[key](*(to_bucket(ids) for ids in given))
        return tokens, scores, weights[..., :source_ids.shape[1]]

    def prefix(self, prefixes: list[str], options: DecodingOptions) -> tf.Tensor:
        """The ids each output must start with."""
        return prefix_ids(self.target, tf.constant(prefixes, tf.string), options.max_length)

    def decode(self, tokens: tf.Tensor, prefixes: list[str] | None, forced: tf.Tensor | None) -> np.ndarray:
        """Output ids `[rows, n, steps]` as text `[rows * n]`, each starting with its prefix as given."""
        rows, n = tokens.shape[0], tokens.shape[1]
        decoded = self.target.decode(tf.reshape(tokens, [rows * n, -1]))
        if prefixes is not None:
            decoded = with_prefix(decoded, tf.repeat(tf.constant(prefixes, tf.string), n),
                                  tf.repeat(forced, n, axis=0), self.target)
        return decoded.numpy()

    def n_best(self, texts: list[str], options: DecodingOptions, batch_size: int = 64,
               progress: Callable[[int, int], None] | None = None,
               prefixes: list[str] | None = None) -> list[list[Hypothesis]]:
        """The `options.n_best` best hypotheses of every text, in input order (each starting with its
        text in `prefixes`, when given).

        Texts are decoded in batches of similar length (less padding); `progress(done, total)` is
        called after each batch with the number of texts decoded so far and in all.
        """
        order = np.arange(len(texts))
        if len(texts) > batch_size:  # batches of similar length; one batch needs no sorting (a server's one text)
            order = np.argsort(self.source.encode(tf.constant(texts, tf.string)).row_lengths().numpy(), kind="stable")
        results: list[list[Hypothesis]] = [[] for _ in texts]
        for start in range(0, len(texts), batch_size):
            chunk = order[start:start + batch_size]
            given = [prefixes[i] for i in chunk] if prefixes is not None else None
            forced = self.prefix(given, options) if given is not None else None
            tokens, scores, _ = self.search(self.encode([texts[i] for i in chunk]), options, forced)
            n = tokens.shape[1]
            decoded = self.decode(tokens, given, forced)
            scores = scores.numpy()
            for row, index in enumerate(chunk):
                results[index] = [Hypothesis(decoded[row * n + k].decode("utf-8"), float(scores[row, k]))
                                  for k in range(n)]
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return results

    def translate(self, texts: list[str], options: DecodingOptions, batch_size: int = 64,
                  progress: Callable[[int, int], None] | None = None, prefixes: list[str] | None = None) -> list[str]:
        """The best translation of every text, in input order."""
        return [hyps[0].text for hyps in self.n_best(texts, options, batch_size, progress, prefixes)]
