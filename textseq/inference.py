"""A trained run, loaded for use: translate strings, with the run's own vocabulary and weights.

>>> translator = Translator.from_run("runs/dates")  # doctest: +SKIP
>>> translator.translate(["3rd of March 1998", "Tue, 03.03.98"])  # doctest: +SKIP
['1998-03-03', '1998-03-03']
>>> translator.n_best(["3rd of March 1998"], translator.options(beam_size=5, n_best=2))  # doctest: +SKIP
[[Hypothesis(text='1998-03-03', score=-0.0012), Hypothesis(text='1998-03-13', score=-7.1)]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from textseq.data.tokenizer import Tokenizer
from textseq.decoding import DecodingOptions, decode
from textseq.errors import UserError
from textseq.models import Seq2Seq, build_seq2seq
from textseq.recipe import Recipe
from textseq.runs import Run


class Hypothesis(NamedTuple):
    text: str
    score: float  # sum of token log-probabilities, over the length penalty for beam search with alpha > 0


class Attention(NamedTuple):
    source_tokens: list[str]
    output_tokens: list[str]  # ends with "</s>" when the model ended the output
    weights: np.ndarray  # [output tokens, source tokens]; each row sums to 1


class Translator:
    def __init__(self, recipe: Recipe, model: Seq2Seq, source: Tokenizer, target: Tokenizer):
        self.recipe, self.model, self.source, self.target = recipe, model, source, target
        self._compiled: dict[DecodingOptions, Callable] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Translator":
        run = Run.open(run_dir)
        recipe = run.recipe()
        source_vocab, target_vocab = run.vocabularies(recipe.vocab.shared)
        model = build_seq2seq(recipe.model, source_vocab.size, target_vocab.size)
        model({"source": tf.ones([1, 2], tf.int32), "target_in": tf.ones([1, 2], tf.int32)})  # creates the weights
        model.load_weights(run.weights_file)
        return cls(recipe, model, Tokenizer(source_vocab), Tokenizer(target_vocab))

    def options(self, **overrides) -> DecodingOptions:
        """The recipe's decoding settings (`export` section), with the given ones (None: keep) replaced."""
        export = self.recipe.export
        settings = {"max_length": export.max_output_length, "beam_size": export.beam_size, "alpha": export.alpha}
        settings.update({key: value for key, value in overrides.items() if value is not None})
        if overrides.get("beam_size") is None and any(
                overrides.get(key) is not None for key in ("temperature", "top_k", "top_p")):
            settings["beam_size"] = 1  # sampling was asked for, the recipe's beam was not
        try:
            return DecodingOptions(**settings)
        except ValueError as error:
            raise UserError(f"decoding options: {error}") from None

    def encode(self, texts: list[str]) -> tf.Tensor:
        """Source ids `[batch, steps]`, truncated to the recipe's `data.max_source_length`, at least one step."""
        ids = self.source.encode(tf.constant(texts, tf.string))[:, : self.recipe.data.max_source_length]
        return ids.to_tensor(shape=[len(texts), max(int(ids.bounding_shape()[1]), 1)])

    def search(self, source_ids: tf.Tensor, options: DecodingOptions):
        """`decode` compiled once per options: (tokens, scores, weights) tensors."""
        if options not in self._compiled:
            self._compiled[options] = tf.function(
                lambda ids: decode(self.model, ids, options),
                input_signature=[tf.TensorSpec([None, None], tf.int32)])
        return self._compiled[options](source_ids)

    def n_best(self, texts: list[str], options: DecodingOptions | None = None, batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> list[list[Hypothesis]]:
        """The `options.n_best` best hypotheses of every text, in input order.

        Texts are decoded in batches of similar length (less padding); `progress(n)` is called
        after each batch with the number of texts it held.
        """
        options = options or self.options()
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
                progress(len(chunk))
        return results

    def translate(self, texts: list[str], options: DecodingOptions | None = None, batch_size: int = 64,
                  progress: Callable[[int], None] | None = None) -> list[str]:
        """The best translation of every text, in input order."""
        return [hyps[0].text for hyps in self.n_best(texts, options, batch_size, progress)]

    def attention(self, text: str, options: DecodingOptions | None = None) -> Attention:
        """The best translation of `text` with the attention weights of each produced token."""
        options = options or self.options()
        source_ids = self.encode([text])
        tokens, _, weights = self.search(source_ids, options)
        tokens, weights = tokens.numpy()[0, 0], weights.numpy()[0, 0]
        steps = int(np.count_nonzero(tokens))
        source_steps = int(np.count_nonzero(source_ids.numpy()[0]))
        vocab_out, vocab_in = self.target.tokens.numpy(), self.source.tokens.numpy()
        return Attention([vocab_in[i].decode("utf-8") for i in source_ids.numpy()[0, :source_steps]],
                         [vocab_out[i].decode("utf-8") for i in tokens[:steps]],
                         weights[:steps, :source_steps])
