"""The callbacks `textseq.training.train` hands `fit` besides the checkpoint (`textseq.checkpoints`):
a clock for the summary, a stop on request (Ctrl-C, SIGTERM) and on a non-finite loss, and the
validation translations' BLEU and chrF for train.select_by.

>>> request_stop()  # doctest: +SKIP
"""

from __future__ import annotations

import array
import math
import threading
import time

import keras

from textseq.data.sources import load_pairs
from textseq.data.tasks import TaskData
from textseq.translating import TextTranslator
from textseq.metrics import corpus_scores
from textseq.optimization import averaged_weights, swap_averaged
from textseq.recipe import DecodingOptions, Recipe


class StepClock(keras.callbacks.Callback):
    """How long this call took to start (`setup_seconds`: data, vocabularies, model and restore, from
    `started` to the first batch), its first step (`first_step_seconds`: tracing the training step
    and building its kernels) and the step rate of the second half (once the batch shapes seen most
    have run).

    >>> clock = StepClock(started=time.monotonic())
    >>> sorted(clock.summary())
    ['first_step_seconds', 'setup_seconds', 'steps_per_second']
    """

    def __init__(self, started: float):
        super().__init__()
        self.started = started  # time.monotonic() when train() was called
        self.first_begins: float | None = None
        self.times = array.array("d")

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_begins is None:
            self.first_begins = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.monotonic())

    def summary(self) -> dict:
        times, begins = self.times, self.first_begins
        started = {"setup_seconds": round(begins - self.started, 1) if begins else None,
                   "first_step_seconds": round(times[0] - begins, 1) if times and begins else None}
        if len(times) < 4:
            return {**started, "steps_per_second": None}
        middle = len(times) // 2
        return {**started, "steps_per_second": round((len(times) - 1 - middle) / (times[-1] - times[middle]), 3)}


STOP = threading.Event()  # set by request_stop(); cleared when train() returns


def request_stop() -> None:
    """Asks a running `train` to stop at its next batch, keeping its last finished epoch (what Ctrl-C
    and SIGTERM do in the CLI). The signal's own KeyboardInterrupt is not enough: when it lands in a
    finalizer (a file or tensor being freed) Python prints "Exception ignored" and trains on."""
    STOP.set()


class StopWhenRequested(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the first batch end after `request_stop()`."""

    def on_train_batch_end(self, batch, logs=None):
        if STOP.is_set():
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


class TranslationScores(keras.callbacks.Callback):
    """After each validation: BLEU and chrF (sacrebleu, data.bleu_tokenize) of the validation split's
    translations, decoded as the recipe's `decode:` says (greedy where it samples: a score that
    picks weights must not be random), as `val_bleu` and `val_chrf` in the logs."""

    def __init__(self, recipe: Recipe, data: TaskData):
        super().__init__()
        self.recipe, self.data = recipe, data
        self.pairs = load_pairs(recipe.data, "validation")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "val_loss" not in logs:
            return
        translator = TextTranslator(self.model, self.data.source, self.data.target, self.recipe.data.max_source_length)
        options = self.recipe.decode
        if options.method == "sample":
            options = DecodingOptions(max_length=options.max_length)
        with averaged_weights(self.model):
            hypotheses = translator.translate([source for source, _ in self.pairs], options)
        scores = corpus_scores(hypotheses, [target for _, target in self.pairs], self.recipe.data.bleu_tokenize)
        logs.update(val_bleu=scores["bleu"], val_chrf=scores["chrf"])


class ValidateAveraged(keras.callbacks.Callback):
    """Validates the moving average of the weights (train.ema) instead of the weights being trained."""

    def on_test_begin(self, logs=None):
        swap_averaged(self.model.optimizer)

    def on_test_end(self, logs=None):
        swap_averaged(self.model.optimizer)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, and remembers where."""

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self.value = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.stopped_at is None and not math.isfinite(float(loss)):
            self.stopped_at, self.value = (self.epoch + 1, batch + 1), float(loss)
            self.model.stop_training = True
