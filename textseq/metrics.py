"""The training loss and metrics that ignore padding, and sequence-level scores.

>>> exact_match(["1998-03-03", "x"], ["1998-03-03", "y"])
0.5
>>> corpus_scores(["a man rides a horse ."], ["a man rides a horse ."], tokenize="none")["bleu"]
100.0
"""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD


def token_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy per target token from float32 logits, averaged over non-padding tokens.

    With `label_smoothing` e, the target distribution is (1 - e) on the right token plus e spread
    evenly over the vocabulary (Szegedy et al. 2016), as most NMT systems train.
    """
    return TokenLoss(label_smoothing)


@keras.saving.register_keras_serializable(package="textseq")
class TokenLoss(keras.losses.Loss):
    """(Label-smoothed) cross-entropy over non-padding tokens, one mean per batch, in Keras ops.

    Each token's loss is weighted by `real / mean(real)` (`real`: 1 on a target token, 0 on
    padding), so Keras' mean over all positions is the mean over real tokens, and Keras scales it
    for the replicas of a distribution strategy. `textseq.kernels.loss` computes the same faster.

    >>> loss = TokenLoss(0.1)
    >>> round(float(loss(ops.array([[1, 0]]), ops.array([[[0., 9, 0], [5., 0, 0]]]))), 4)
    0.6002
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        losses = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1), -1)
        if self.label_smoothing:
            losses = (1.0 - self.label_smoothing) * losses - self.label_smoothing * ops.mean(log_probs, axis=-1)
        real = ops.cast(ops.not_equal(labels, PAD), "float32")
        return losses * ops.divide_no_nan(real, ops.mean(real))

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="textseq")
class TokenAccuracy(keras.metrics.Metric):
    """Share of non-padding target tokens whose most probable prediction is right.

    >>> metric = TokenAccuracy()
    >>> metric.update_state(ops.array([[5, 0]]), ops.array([[[0., 0, 0, 0, 0, 9], [9., 0, 0, 0, 0, 0]]]))
    >>> float(metric.result())
    1.0
    """

    def __init__(self, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        real = ops.not_equal(y_true, PAD)
        hit = ops.logical_and(real, ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true))
        self.correct.assign_add(ops.sum(ops.cast(hit, "float32")))
        self.total.assign_add(ops.sum(ops.cast(real, "float32")))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of hypotheses equal to their reference, character for character."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return sum(h == r for h, r in zip(hypotheses, references)) / max(len(references), 1)


def corpus_scores(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> dict:
    """Corpus BLEU and chrF with sacrebleu, one reference per hypothesis, with their signatures.

    `tokenize="none"` scores text that is already tokenized (as Multi30k papers do); "13a" is
    sacrebleu's default for detokenized text.
    """
    from sacrebleu.metrics import BLEU, CHRF

    # force: with tokenize "none" the text is tokenized on purpose, and sacrebleu's warning that it
    # "forgot to detokenize" would only be noise.
    bleu, chrf = BLEU(tokenize=tokenize, force=tokenize == "none"), CHRF()
    bleu_score, chrf_score = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(bleu_score.score, 2), "chrf": round(chrf_score.score, 2),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}
