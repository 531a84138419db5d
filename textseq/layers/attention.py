"""BahdanauAttention: additive attention that weights encoder outputs for every decoder step."""

from __future__ import annotations

import keras
from keras import ops

# Added to the scores of padded keys before the softmax; the weights are then set to exactly 0.
_MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="textseq")
class BahdanauAttention(keras.layers.Layer):
    """Additive attention (Bahdanau et al., 2015): `score(q, k) = v^T tanh(W1 q + W2 k + b)`.

    Every query attends over all keys; the context is the weighted sum of the keys (the encoder
    outputs serve as keys and values). Padded keys get exactly zero weight.

    Args:
        units: size of the hidden layer inside the score (`W1`, `W2` map to it).

    Call arguments:
        query: `[batch, query_steps, query_dim]`, e.g. decoder outputs.
        keys: `[batch, key_steps, key_dim]`, e.g. encoder outputs.
        keys_mask: optional boolean `[batch, key_steps]`, False on padding. A row with no true
            entry (an empty source) gets all-zero weights and a zero context.

    Output:
        `(context, weights)`: context `[batch, query_steps, key_dim]`, weights
        `[batch, query_steps, key_steps]` summing to 1 over unmasked keys.

    >>> attention = BahdanauAttention(units=8)
    >>> context, weights = attention(ops.ones((2, 3, 4)), ops.ones((2, 5, 6)))
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 3, 6), (2, 3, 5))
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        self.units = units
        # Outputs are per query step, so they keep the query's mask (e.g. target padding).
        self.supports_masking = True
        # `textseq.kernels.install` may put an equal, faster function of the same arguments here.
        self.score_function = additive_scores

    def build(self, query_shape, keys_shape):
        self.query_kernel = self.add_weight(name="query_kernel", shape=(query_shape[-1], self.units))
        self.key_kernel = self.add_weight(name="key_kernel", shape=(keys_shape[-1], self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_kernel = self.add_weight(name="score_kernel", shape=(self.units,))

    def call(self, query, keys, keys_mask=None, training=None):
        weights = self.attention_weights(query, self.project_keys(keys), keys_mask, training)
        return ops.matmul(weights, keys), weights

    def project_keys(self, keys):
        """`W2 k + b` for every key: computed once per source, reused at every decoding step."""
        return ops.matmul(keys, self.key_kernel) + self.bias

    def attention_weights(self, query, projected_keys, keys_mask=None, training=None):
        """Weights `[batch, query_steps, key_steps]` from queries and `project_keys(keys)`."""
        projected_query = ops.matmul(query, self.query_kernel)
        scores = self.score_function(projected_query, projected_keys, self.score_kernel, training)
        return masked_softmax(scores, keys_mask, self.compute_dtype)

    def compute_output_shape(self, query_shape, keys_shape):
        return ((*query_shape[:-1], keys_shape[-1]), (*query_shape[:-1], keys_shape[1]))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def masked_softmax(scores, keys_mask, dtype):
    """Attention weights from float32 scores `[batch, query_steps, key_steps]`: a softmax over the keys
    that `keys_mask` `[batch, key_steps]` keeps (padded keys get exactly 0), cast to `dtype`.

    The softmax runs in float32 even under mixed precision: it is where half precision loses mass.

    >>> weights = masked_softmax(ops.zeros((1, 1, 3)), ops.array([[True, True, False]]), "float32")
    >>> [round(float(w), 2) for w in weights[0, 0]]
    [0.5, 0.5, 0.0]
    """
    if keys_mask is None:
        return ops.cast(ops.softmax(scores, axis=-1), dtype)
    keep = ops.expand_dims(ops.cast(keys_mask, "bool"), 1)
    weights = ops.softmax(ops.where(keep, scores, _MASKED_SCORE), axis=-1)
    return ops.cast(ops.where(keep, weights, 0.0), dtype)


def additive_scores(projected_query, projected_keys, score_kernel, training=None):
    """`v^T tanh(q + k)` for every query and key: float32 `[batch, query_steps, key_steps]`.

    The hidden layer has `batch x query_steps x key_steps x units` elements; `training` is not used
    here (a kernel in this function's place may use it, see `textseq.kernels.attention`).

    >>> q, k, v = ops.ones((1, 2, 3)), ops.zeros((1, 4, 3)), ops.ones((3,))
    >>> tuple(additive_scores(q, k, v).shape)
    (1, 2, 4)
    """
    hidden = ops.tanh(ops.expand_dims(projected_query, 2) + ops.expand_dims(projected_keys, 1))
    return ops.cast(ops.einsum("btsu,u->bts", hidden, score_kernel), "float32")
