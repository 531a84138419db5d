"""A trained run, loaded for use: translate strings, with the run's own vocabulary and weights.

>>> translator = Translator.from_run("runs/dates")  # doctest: +SKIP
>>> translator.translate(["3rd of March 1998", "Tue, 03.03.98"])  # doctest: +SKIP
['1998-03-03', '1998-03-03']
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from textseq.data.tokenizer import Tokenizer
from textseq.decoding import greedy_search
from textseq.models import Seq2Seq, build_seq2seq
from textseq.recipe import Recipe
from textseq.runs import Run


class Translator:
    def __init__(self, recipe: Recipe, model: Seq2Seq, source: Tokenizer, target: Tokenizer):
        self.recipe, self.model, self.source, self.target = recipe, model, source, target
        max_length = recipe.export.max_output_length
        self._search = tf.function(
            lambda ids: greedy_search(model, ids, max_length),
            input_signature=[tf.TensorSpec([None, None], tf.int32)])

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Translator":
        run = Run.open(run_dir)
        recipe = run.recipe()
        source_vocab, target_vocab = run.vocabularies(recipe.vocab.shared)
        model = build_seq2seq(recipe.model, source_vocab.size, target_vocab.size)
        model({"source": tf.ones([1, 2], tf.int32), "target_in": tf.ones([1, 2], tf.int32)})  # creates the weights
        model.load_weights(run.weights_file)
        return cls(recipe, model, Tokenizer(source_vocab), Tokenizer(target_vocab))

    def encode(self, texts: list[str]) -> tf.Tensor:
        """Source ids `[batch, steps]`, truncated to the recipe's `data.max_source_length`, at least one step."""
        ids = self.source.encode(tf.constant(texts, tf.string))[:, : self.recipe.data.max_source_length]
        return ids.to_tensor(shape=[len(texts), max(int(ids.bounding_shape()[1]), 1)])

    def translate(self, texts: list[str], batch_size: int = 256) -> list[str]:
        """Greedy translations of `texts`, in order."""
        out = []
        for start in range(0, len(texts), batch_size):
            tokens, _ = self._search(self.encode(texts[start:start + batch_size]))
            out.extend(t.decode("utf-8") for t in self.target.decode(tokens).numpy())
        return out
