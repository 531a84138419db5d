"""The training loss of `textseq.metrics` with its gradient written out in TensorFlow ops (and, for
batches of one shape, in one XLA function): `TokenLoss`."""

from __future__ import annotations

import keras
import tensorflow as tf

from textseq import metrics
from textseq.constants import PAD
from textseq.kernels.xla import fixed_shape, xla_function


@keras.saving.register_keras_serializable(package="textseq.kernels")
class TokenLoss(metrics.TokenLoss):
    """`textseq.metrics.TokenLoss` in TensorFlow ops: (label-smoothed) cross-entropy over non-padding
    tokens, one mean per batch.

    Where the logits have a fixed shape, the loss and its gradient are one XLA function
    (`weighted_cross_entropy`); otherwise `token_cross_entropy` with its gradient written out. Either
    way a few passes over the logits, where TensorFlow's sparse softmax cross-entropy takes several
    times as long on CPUs.

    >>> loss = TokenLoss(0.1)
    >>> round(float(loss(tf.constant([[1, 0]]), tf.constant([[[0., 9, 0], [5., 0, 0]]]))), 4)
    0.6002
    """

    def call(self, y_true, y_pred):
        labels = tf.reshape(tf.cast(y_true, "int32"), [-1])
        logits = tf.reshape(tf.cast(y_pred, "float32"), [-1, tf.shape(y_pred)[-1]])
        real = tf.cast(tf.not_equal(labels, PAD), "float32")
        # Keras divides per-example losses by the number of replicas (their gradients are summed
        # across replicas) and multiplies the reported loss back; a scalar loss must do the first itself.
        weights = tf.math.divide_no_nan(real, tf.reduce_sum(real)) / tf.distribute.get_strategy().num_replicas_in_sync
        if fixed_shape(y_pred):
            return weighted_cross_entropy(logits, labels, weights, self.label_smoothing)
        return tf.reduce_sum(token_cross_entropy(logits, labels, self.label_smoothing) * weights)


def weighted_cross_entropy(logits, labels, weights, label_smoothing: float = 0.0):
    """`sum_i weights_i * cross_entropy_i` over float32 `logits` `[N, V]`, int `labels` `[N]` and
    `weights` `[N]`, computed with its gradient in one XLA function.

    The gradient `weights * (softmax - target)` reuses the forward pass's exponentials, so training
    takes three passes over the logits instead of four and one `exp` of each instead of two; the
    backward pass only hands it on (scaled when the upstream gradient is not 1, as under loss
    scaling). XLA compiles once per shape: for batches of one fixed shape.

    >>> round(float(weighted_cross_entropy(tf.constant([[0., 0.]]), tf.constant([1]), tf.constant([1.]))), 4)
    0.6931
    """
    smoothing = float(label_smoothing)  # a constant of the graph: without smoothing, no pass for the mean

    @tf.custom_gradient
    def cross_entropy(logits):
        value, gradient = _compiled_loss_and_gradient(logits, labels, weights, smoothing)

        def grad(upstream):
            return tf.cond(tf.equal(upstream, 1.0), lambda: gradient, lambda: gradient * upstream)

        return value, grad

    return cross_entropy(logits)


def _loss_and_gradient(logits, labels, weights, smoothing):
    exp, total, log_normalizer = _softmax_parts(logits)
    losses = _losses(logits, labels, smoothing, log_normalizer)
    vocab = tf.shape(logits)[-1]
    target = tf.where(tf.range(vocab)[None, :] == labels[:, None], 1.0 - smoothing, 0.0)
    if smoothing:
        target += smoothing / tf.cast(vocab, "float32")
    return tf.reduce_sum(losses * weights), (exp / total[:, None] - target) * weights[:, None]


_compiled_loss_and_gradient = xla_function(_loss_and_gradient)


def token_cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-row cross-entropy of float32 `logits` `[N, V]` against int `labels` `[N]`, with the gradient
    `softmax - target` written out (no one-hot tensor), as TensorFlow ops (for any shape).

    >>> round(float(token_cross_entropy(tf.constant([[0., 0.]]), tf.constant([1]))[0]), 4)  # log 2
    0.6931
    """
    smoothing = float(label_smoothing)

    @tf.custom_gradient
    def cross_entropy(logits):
        losses, log_normalizer = _cross_entropy_forward(logits, labels, smoothing)

        def grad(upstream):
            return _cross_entropy_backward(logits, labels, smoothing, log_normalizer, upstream)

        return losses, grad

    return cross_entropy(logits)


def _cross_entropy_forward(logits, labels, smoothing):
    log_normalizer = _softmax_parts(logits)[2]
    return _losses(logits, labels, smoothing, log_normalizer), log_normalizer


def _softmax_parts(logits):
    """Each row's `exp(logits - max)`, its sum and the log normaliser `log(sum exp(logits))`, stably."""
    top = tf.reduce_max(logits, -1, keepdims=True)
    exp = tf.exp(logits - top)
    total = tf.reduce_sum(exp, -1)
    return exp, total, tf.math.log(total) + top[:, 0]


def _losses(logits, labels, smoothing, log_normalizer):
    """Each row's cross-entropy against `(1 - smoothing)` on its label plus `smoothing` spread evenly."""
    losses = log_normalizer - (1.0 - smoothing) * tf.gather(logits, labels, batch_dims=1)
    if smoothing:
        losses -= smoothing * tf.reduce_mean(logits, -1)
    return losses


def _cross_entropy_backward(logits, labels, smoothing, log_normalizer, upstream):
    """Op by op: the softmax times the upstream gradient, then the labels' share taken off by one scatter."""
    gradient = tf.exp(logits - log_normalizer[:, None]) * upstream[:, None]
    if smoothing:
        gradient -= upstream[:, None] * (smoothing / tf.cast(tf.shape(logits)[-1], "float32"))
    rows = tf.stack([tf.range(tf.shape(labels)[0]), labels], 1)
    return tf.tensor_scatter_nd_sub(gradient, rows, (1.0 - smoothing) * upstream)


