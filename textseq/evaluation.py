"""Evaluation of a run on a data split: token loss and accuracy (teacher forced), then the decoded
outputs scored by exact match, BLEU and chrF (sacrebleu).

>>> evaluate("runs/dates", "test")  # doctest: +SKIP
{'split': 'test', 'examples': 2000, 'loss': 0.002, 'perplexity': 1.002, 'token_accuracy': 0.9995,
 'exact_match': 0.996, 'bleu': 99.8, 'chrf': 99.9, 'bleu_signature': 'nrefs:1|case:mixed|...', ...}
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import tensorflow as tf

from textseq.data.pipeline import translation_dataset
from textseq.data.sources import load_pairs
from textseq.data.vocab import PAD
from textseq.decoding import DecodingOptions
from textseq.inference import Translator
from textseq.metrics import corpus_scores, exact_match


def evaluate(run_dir: str | Path, split: str = "test", options: DecodingOptions | None = None,
             batch_size: int = 64, progress=None, hypotheses_file: str | Path | None = None) -> dict:
    """Metrics of the run's best weights on one split, as a JSON-ready dict.

    `options` default to the recipe's `export` settings (beam size, alpha, max output length);
    `progress(n)` is called as sources are decoded; `hypotheses_file` keeps the outputs, one a line.
    """
    translator = Translator.from_run(run_dir)
    options = options or translator.options()
    recipe, model = translator.recipe, translator.model
    pairs = load_pairs(recipe.data, split)
    data = translation_dataset(pairs, translator.source, translator.target, batch_size,
                               recipe.data.max_source_length, recipe.data.max_target_length)

    @tf.function
    def sums(inputs, target_out):
        logits = model(inputs, training=False)
        real = tf.not_equal(target_out, PAD)
        losses = keras.losses.sparse_categorical_crossentropy(target_out, logits, from_logits=True)
        hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), target_out) & real
        real_f = tf.cast(real, tf.float32)
        return tf.reduce_sum(losses * real_f), tf.reduce_sum(tf.cast(hits, tf.float32)), tf.reduce_sum(real_f)

    total_loss = correct = tokens = 0.0
    for inputs, target_out in data:
        batch_loss, batch_correct, batch_tokens = (float(x) for x in sums(inputs, target_out))
        total_loss, correct, tokens = total_loss + batch_loss, correct + batch_correct, tokens + batch_tokens

    hypotheses = translator.translate([s for s, _ in pairs], options, batch_size, progress)
    if hypotheses_file:
        Path(hypotheses_file).write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    references = [t for _, t in pairs]
    loss = total_loss / max(tokens, 1)
    return {
        "split": split,
        "examples": len(pairs),
        "tokens": int(tokens),
        "loss": loss,
        "perplexity": math.exp(loss),
        "token_accuracy": correct / max(tokens, 1),
        "exact_match": exact_match(hypotheses, references),
        **corpus_scores(hypotheses, references, recipe.data.bleu_tokenize),
        "decoding": options.describe(),
    }
