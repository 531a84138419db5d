"""Evaluation of a run on a data split: token loss, perplexity and accuracy (teacher forced); for
translation runs, the decoded outputs scored by exact match, BLEU and chrF (sacrebleu).

>>> evaluate("runs/dates", "test")  # doctest: +SKIP
{'split': 'test', 'examples': 2000, 'loss': 0.002, 'perplexity': 1.002, 'token_accuracy': 0.9995,
 'exact_match': 0.996, 'bleu': 99.8, 'chrf': 99.9, 'bleu_signature': 'nrefs:1|case:mixed|...', ...}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from textseq.constants import PAD
from textseq.data.sources import load_pairs
from textseq.data.tasks import TaskData
from textseq.data.textfiles import write_text
from textseq.decoding import DecodingOptions
from textseq.errors import UserError
from textseq.inference import LoadedRun, load
from textseq.metrics import corpus_scores, exact_match
from textseq.models import CarriedStates


def evaluate(run: str | Path | LoadedRun, split: str = "test", options: DecodingOptions | dict | None = None,
             batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
             save: bool = False) -> dict:
    """Metrics of the run's best weights on one split, as a JSON-ready dict.

    Translation runs are also decoded, in batches of `batch_size` (64), with `options`: the
    recipe's decoding settings by default, or those with a dict's settings (None: keep) replaced;
    `progress(done, total)` is called as sources are decoded. Language-
    model runs are scored on every token of the split's stream once, in `batch_size` rows (default
    the run's train.batch_size, the rows its validation loss was measured with); `options` do not
    apply to them. `save` writes the metrics to RUN/eval-SPLIT.json and the translations to
    RUN/hyp-SPLIT.txt. `run` is a run directory, or a run already loaded.
    """
    loaded = run if isinstance(run, LoadedRun) else load(run)
    recipe = loaded.recipe
    if isinstance(options, dict):
        options = {key: value for key, value in options.items() if value is not None}
    if recipe.train.steps and split == "train":
        raise UserError(f"--split train: {loaded.path} trains by steps on a stream (data.train) that is not read "
                        "whole; evaluate its validation or test split, or name a sample of the training text as "
                        "data.test in a copy of the recipe")
    if recipe.task == "language_model" and options:
        raise UserError("decoding options (beam size, temperature, ...) apply to translation runs; a language "
                        "model is scored on every token of the split")
    if recipe.task == "language_model":
        metrics = language_model_metrics(loaded, split, batch_size or recipe.train.batch_size)
    else:
        if not isinstance(options, DecodingOptions):
            options = loaded.options(**(options or {}))
        metrics = translation_metrics(loaded, split, options, batch_size or 64, progress,
                                      loaded.path / f"hyp-{split}.txt" if save else None)
    if loaded.weights:
        metrics["weights"] = loaded.weights  # which weights these numbers describe
    if save:
        try:
            write_text(loaded.path / f"eval-{split}.json", json.dumps(metrics, indent=2) + "\n",
                         "the metrics were not saved in the run")
        except UserError as error:
            raise MetricsNotSaved(str(error), metrics) from None
    return metrics


class MetricsNotSaved(UserError):
    """The evaluation ran but its metrics could not be written; `metrics` holds them."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def language_model_metrics(loaded: LoadedRun, split: str, batch_size: int) -> dict:
    """Loss, perplexity, top-1/top-3/top-5 accuracy (and bits per character) over every token of a split:
    top-3 is what a keyboard's three suggestions would have offered."""
    metrics, totals = teacher_forced_metrics(loaded, split, batch_size)
    metrics.update({f"{top}_accuracy": totals[top] / max(totals["tokens"], 1) for top in ("top1", "top3", "top5")})
    if loaded.target.unit == "character":
        metrics["bits_per_character"] = metrics["loss"] / math.log(2)
    return metrics


def translation_metrics(loaded: LoadedRun, split: str, options: DecodingOptions, batch_size: int, progress,
                        hypotheses_file: Path | None) -> dict:
    """Teacher-forced loss and accuracy, then the decoded split scored by exact match, BLEU and chrF."""
    metrics, totals = teacher_forced_metrics(loaded, split, batch_size)
    pairs = load_pairs(loaded.recipe.data, split)
    hypotheses = loaded.translate([s for s, _ in pairs], options, batch_size, progress)
    if hypotheses_file:
        write_text(hypotheses_file, "".join(h + "\n" for h in hypotheses), "evaluate writes its outputs into "
                     "the run directory: make it writable, or copy the run elsewhere")
    references = [t for _, t in pairs]
    return {
        **metrics,
        "token_accuracy": totals["top1"] / max(totals["tokens"], 1),
        "exact_match": exact_match(hypotheses, references),
        **corpus_scores(hypotheses, references, loaded.recipe.data.bleu_tokenize),
        "decoding": options.describe(),
    }


def teacher_forced_metrics(loaded: LoadedRun, split: str, batch_size: int) -> tuple[dict, dict]:
    """The split's size, tokens, loss and perplexity, and the raw totals behind them."""
    recipe = loaded.recipe
    data = TaskData.load(recipe, (loaded.source.vocab, loaded.target.vocab), splits=(split,))
    # Language-model windows: every row of a batch continues the previous batch's row.
    model = CarriedStates(loaded.model, batch_size) if data.carry_state else loaded.model
    totals = teacher_forced_totals(model, data.dataset(split, batch_size))
    loss = totals["loss"] / max(totals["tokens"], 1)
    unit = "windows" if recipe.task == "language_model" else "examples"
    return {"split": split, unit: int(data.examples[split][0].nrows()), "tokens": int(totals["tokens"]),
            "loss": loss, "perplexity": math.exp(loss)}, totals


def teacher_forced_totals(model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Sums over every non-padding target token: loss (nats), top-1, top-3 and top-5 hits, and the count."""
    @tf.function(reduce_retracing=True)  # batches of many lengths: one trace for all, not one each
    def sums(inputs, target_out):
        logits = tf.cast(model(inputs, training=False), tf.float32)
        real = tf.cast(tf.not_equal(target_out, PAD), tf.float32)
        losses = keras.losses.sparse_categorical_crossentropy(target_out, logits, from_logits=True)
        top5 = tf.math.top_k(logits, min(5, logits.shape[-1])).indices
        hits = tf.cast(tf.equal(top5, target_out[..., None]), tf.float32)
        return {"loss": tf.reduce_sum(losses * real), "top1": tf.reduce_sum(hits[..., 0] * real),
                "top3": tf.reduce_sum(tf.reduce_sum(hits[..., :3], -1) * real),
                "top5": tf.reduce_sum(tf.reduce_sum(hits, -1) * real), "tokens": tf.reduce_sum(real)}

    totals = {"loss": 0.0, "top1": 0.0, "top3": 0.0, "top5": 0.0, "tokens": 0.0}
    for inputs, target_out in dataset:
        for key, value in sums(inputs, target_out).items():
            totals[key] += float(value)
    return totals
