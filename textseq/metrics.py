"""Training loss and metrics that ignore padding, and sequence-level scores.

>>> exact_match(["1998-03-03", "x"], ["1998-03-03", "y"])
0.5
>>> corpus_scores(["a man rides a horse ."], ["a man rides a horse ."], tokenize="none")["bleu"]
100.0
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from textseq.data.vocab import PAD
from textseq.xla import fixed_shape, xla_function


def token_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy per target token from float32 logits, averaged over non-padding tokens.

    With `label_smoothing` e, the target distribution is (1 - e) on the right token plus e spread
    evenly over the vocabulary (Szegedy et al. 2016), as most NMT systems train.
    """
    return TokenLoss(label_smoothing)


@keras.saving.register_keras_serializable(package="textseq")
class TokenLoss(keras.losses.Loss):
    """(Label-smoothed) cross-entropy over non-padding tokens, one mean per batch.

    Computed by `token_cross_entropy` (under XLA where the logits have a fixed shape): a few passes
    over the logits, where TensorFlow's sparse softmax cross-entropy takes several times as long on CPUs.

    >>> loss = TokenLoss(0.1)
    >>> round(float(loss(ops.array([[1, 0]]), ops.array([[[0., 9, 0], [5., 0, 0]]]))), 4)
    0.6002
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, "int32")
        vocab = tf.shape(y_pred)[-1]
        losses = token_cross_entropy(tf.reshape(tf.cast(y_pred, "float32"), [-1, vocab]), tf.reshape(y_true, [-1]),
                                     self.label_smoothing, compiled=fixed_shape(y_pred))
        real = tf.cast(tf.not_equal(tf.reshape(y_true, [-1]), PAD), "float32")
        mean = tf.math.divide_no_nan(tf.reduce_sum(losses * real), tf.reduce_sum(real))
        # Keras divides per-example losses by the number of replicas (their gradients are summed
        # across replicas) and multiplies the reported loss back; a scalar loss must do the first itself.
        return mean / tf.distribute.get_strategy().num_replicas_in_sync

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def token_cross_entropy(logits, labels, label_smoothing: float = 0.0, compiled: bool = False):
    """Per-row cross-entropy of float32 `logits` `[N, V]` against int `labels` `[N]`, with the gradient
    `softmax - target` written out (no one-hot tensor).

    With `compiled`, forward and backward are each one XLA function: the max, the exponentials and
    their sum fuse into two passes over the logits, the gradient into one. XLA compiles once per
    shape, so `TokenLoss` asks for it only where batches have one fixed shape.

    >>> round(float(token_cross_entropy(tf.constant([[0., 0.]]), tf.constant([1]))[0]), 4)  # log 2
    0.6931
    """
    smoothing = float(label_smoothing)  # a constant of the graph: without smoothing, no pass for the mean
    forward, backward = ((_compiled_cross_entropy_forward, _compiled_cross_entropy_backward) if compiled
                         else (_cross_entropy_forward, _graph_cross_entropy_backward))

    @tf.custom_gradient
    def cross_entropy(logits):
        losses, log_normalizer = forward(logits, labels, smoothing)

        def grad(upstream):
            return backward(logits, labels, smoothing, log_normalizer, upstream)

        return losses, grad

    return cross_entropy(logits)


def _cross_entropy_forward(logits, labels, smoothing):
    top = tf.reduce_max(logits, -1, keepdims=True)
    log_normalizer = tf.math.log(tf.reduce_sum(tf.exp(logits - top), -1)) + top[:, 0]
    picked = tf.gather(logits, labels, batch_dims=1)
    losses = log_normalizer - (1.0 - smoothing) * picked
    if smoothing:
        losses -= smoothing * tf.reduce_mean(logits, -1)
    return losses, log_normalizer


def _compiled_cross_entropy_backward(logits, labels, smoothing, log_normalizer, upstream):
    """Fused by XLA into one pass: the one-hot comparison costs nothing there."""
    vocab = tf.shape(logits)[-1]
    target = tf.where(tf.range(vocab)[None, :] == labels[:, None], 1.0 - smoothing, 0.0)
    if smoothing:
        target += smoothing / tf.cast(vocab, "float32")
    return (tf.exp(logits - log_normalizer[:, None]) - target) * upstream[:, None]


def _graph_cross_entropy_backward(logits, labels, smoothing, log_normalizer, upstream):
    """Op by op: the softmax times the upstream gradient, then the labels' share taken off by one scatter."""
    gradient = tf.exp(logits - log_normalizer[:, None]) * upstream[:, None]
    if smoothing:
        gradient -= upstream[:, None] * (smoothing / tf.cast(tf.shape(logits)[-1], "float32"))
    rows = tf.stack([tf.range(tf.shape(labels)[0]), labels], 1)
    return tf.tensor_scatter_nd_sub(gradient, rows, (1.0 - smoothing) * upstream)


_compiled_cross_entropy_forward = xla_function(_cross_entropy_forward)
_compiled_cross_entropy_backward = xla_function(_compiled_cross_entropy_backward)


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
