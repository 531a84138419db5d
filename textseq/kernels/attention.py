"""Additive attention scores and their gradients under XLA, fused, for training steps of one shape.

`v^T tanh(q + k)` has a hidden layer of `batch x query_steps x key_steps x units` elements (268 MB for
a batch of 64 tiny-Shakespeare windows), which the graph ops write and read back, forward and
backward. Here the scores and their gradients are each one XLA function in float32 that recomputes
the tanh in the backward pass instead of storing it (measured in benchmarks/README.md). XLA
compiles once per shape, so it is for steps that repeat one shape.

>>> q, k, v = tf.ones((1, 2, 3)), tf.zeros((1, 4, 3)), tf.ones((3,))
>>> tuple(additive_scores(q, k, v, training=True).shape)
(1, 2, 4)
"""

from __future__ import annotations

import tensorflow as tf

from textseq.kernels.xla import fixed_shape, xla_function
from textseq.layers.attention import additive_scores as keras_additive_scores


def additive_scores(projected_query, projected_keys, score_kernel, training=None):
    """`textseq.layers.attention.additive_scores`, fused under XLA where a training step has fixed shapes."""
    if not (training is True and fixed_shape(projected_query, projected_keys)):
        return keras_additive_scores(projected_query, projected_keys, score_kernel)
    # Read variables here: inside, `tf.custom_gradient` would want their gradients separately.
    return fused_additive_scores(projected_query, projected_keys, tf.cast(score_kernel, "float32"))


@tf.custom_gradient
def fused_additive_scores(projected_query, projected_keys, score_kernel):
    dtypes = [t.dtype for t in (projected_query, projected_keys, score_kernel)]
    inputs = [tf.cast(t, "float32") for t in (projected_query, projected_keys, score_kernel)]

    def gradient(d_scores):
        grads = _compiled_scores_backward(*inputs, tf.cast(d_scores, "float32"))
        return [tf.cast(g, dtype) for g, dtype in zip(grads, dtypes)]

    return _compiled_scores_forward(*inputs), gradient


def _hidden(projected_query, projected_keys):
    return tf.tanh(projected_query[:, :, None, :] + projected_keys[:, None, :, :])


def _scores_forward(projected_query, projected_keys, score_kernel):
    return tf.einsum("btsu,u->bts", _hidden(projected_query, projected_keys), score_kernel)


def _scores_backward(projected_query, projected_keys, score_kernel, d_scores):
    hidden = _hidden(projected_query, projected_keys)
    d_hidden = d_scores[..., None] * score_kernel * (1.0 - hidden * hidden)
    # Three reductions of the recomputed tanh; XLA fuses each without writing the 4-D tensor.
    return (tf.reduce_sum(d_hidden, 2), tf.reduce_sum(d_hidden, 1),
            tf.einsum("bts,btsu->u", d_scores, hidden))


_compiled_scores_forward = xla_function(_scores_forward)
_compiled_scores_backward = xla_function(_scores_backward)
