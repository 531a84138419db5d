"""Metrics that ignore padding, and sequence-level scores.

>>> exact_match(["1998-03-03", "x"], ["1998-03-03", "y"])
0.5
>>> corpus_scores(["a man rides a horse ."], ["a man rides a horse ."], tokenize="none")["bleu"]
100.0
"""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD


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

    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    bleu_score, chrf_score = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(bleu_score.score, 2), "chrf": round(chrf_score.score, 2),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}
