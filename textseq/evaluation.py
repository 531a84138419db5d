"""Evaluation of a run on a data split: token loss, perplexity and accuracy (teacher forced); for
translation runs, the decoded outputs scored by exact match, BLEU and chrF (sacrebleu).

>>> evaluate("runs/dates", "test")  # doctest: +SKIP
{'split': 'test', 'examples': 2000, 'loss': 0.002, 'perplexity': 1.002, 'token_accuracy': 0.9995,
 'exact_match': 0.996, 'bleu': 99.8, 'chrf': 99.9, 'bleu_signature': 'nrefs:1|case:mixed|...', ...}
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import tensorflow as tf

from textseq.constants import PAD
from textseq.data.sources import load_pairs
from textseq.data.tasks import TaskData
from textseq.decoding import DecodingOptions
from textseq.inference import LoadedRun, load
from textseq.metrics import corpus_scores, exact_match


def evaluate(run: str | Path | LoadedRun, split: str = "test", options: DecodingOptions | None = None,
             batch_size: int = 64, progress=None, hypotheses_file: str | Path | None = None) -> dict:
    """Metrics of the run's best weights on one split, as a JSON-ready dict.

    Translation runs are also decoded: `options` default to the recipe's `export` settings (beam
    size, alpha, max output length); `progress(n)` is called as sources are decoded;
    `hypotheses_file` keeps the outputs, one a line. Language-model runs are scored on every token
    of the split's stream, once. `run` is a run directory, or a run already loaded.
    """
    loaded = run if isinstance(run, LoadedRun) else load(run)
    recipe = loaded.recipe
    data = TaskData.load(recipe, (loaded.source.vocab, loaded.target.vocab), splits=(split,))
    examples = data.examples[split]
    if data.carry_state:
        loaded.model.carry_states(batch_size)  # every row of a batch continues the previous batch's row
    try:
        totals = teacher_forced_totals(loaded.model, data.dataset(split, batch_size))
    finally:
        loaded.model.carry_states(None)
    loss = totals["loss"] / max(totals["tokens"], 1)
    unit = "windows" if recipe.task == "language_model" else "examples"
    metrics = {"split": split, unit: int(examples[0].nrows()), "tokens": int(totals["tokens"]),
               "loss": loss, "perplexity": math.exp(loss)}
    if recipe.task == "language_model":
        metrics.update(top1_accuracy=totals["top1"] / max(totals["tokens"], 1),
                       top5_accuracy=totals["top5"] / max(totals["tokens"], 1))
        if recipe.vocab.level == "char":
            metrics["bits_per_character"] = loss / math.log(2)
        return metrics

    pairs = load_pairs(recipe.data, split)
    options = options or loaded.options()
    hypotheses = loaded.translate([s for s, _ in pairs], options, batch_size, progress)
    if hypotheses_file:
        Path(hypotheses_file).write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    references = [t for _, t in pairs]
    return {
        **metrics,
        "token_accuracy": totals["top1"] / max(totals["tokens"], 1),
        "exact_match": exact_match(hypotheses, references),
        **corpus_scores(hypotheses, references, recipe.data.bleu_tokenize),
        "decoding": options.describe(),
    }


def teacher_forced_totals(model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Sums over every non-padding target token: loss (nats), top-1 and top-5 hits, and the count."""
    @tf.function
    def sums(inputs, target_out):
        logits = tf.cast(model(inputs, training=False), tf.float32)
        real = tf.cast(tf.not_equal(target_out, PAD), tf.float32)
        losses = keras.losses.sparse_categorical_crossentropy(target_out, logits, from_logits=True)
        top5 = tf.math.top_k(logits, min(5, logits.shape[-1])).indices
        hits = tf.cast(tf.equal(top5, target_out[..., None]), tf.float32)
        return {"loss": tf.reduce_sum(losses * real), "top1": tf.reduce_sum(hits[..., 0] * real),
                "top5": tf.reduce_sum(tf.reduce_sum(hits, -1) * real), "tokens": tf.reduce_sum(real)}

    totals = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "tokens": 0.0}
    for inputs, target_out in dataset:
        for key, value in sums(inputs, target_out).items():
            totals[key] += float(value)
    return totals
