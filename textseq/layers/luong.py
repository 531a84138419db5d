"""LuongAttention: multiplicative attention scores (Luong et al., 2015), beside the additive default."""

from __future__ import annotations

import keras
from keras import ops

from textseq.layers.attention import masked_softmax

SCORES = ("general", "dot")


@keras.saving.register_keras_serializable(package="textseq")
class LuongAttention(keras.layers.Layer):
    """Multiplicative attention: `score(q, k) = q^T W k` ("general") or `q^T k` ("dot").

    The same layer API as `BahdanauAttention` (`call`, `project_keys`, `attention_weights`), so the
    decoder and every decoding path take either. The context is the weighted sum of the keys.

    Args:
        units: size of the queries (the decoder's units); "dot" needs keys of this size too.
        score: "general" (a learned `W`, keys of any size) or "dot" (no weights).

    Call arguments:
        query: `[batch, query_steps, units]`.
        keys: `[batch, key_steps, key_dim]`.
        keys_mask: optional boolean `[batch, key_steps]`, False on padding (exactly zero weight).

    Output:
        `(context, weights)`: context `[batch, query_steps, key_dim]`, weights `[batch, query_steps, key_steps]`.

    >>> attention = LuongAttention(units=4, score="general")
    >>> context, weights = attention(ops.ones((2, 3, 4)), ops.ones((2, 5, 6)))
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 3, 6), (2, 3, 5))
    """

    def __init__(self, units: int, score: str = "general", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}. Received: score={score!r}")
        self.units, self.score = units, score
        self.supports_masking = True

    def build(self, query_shape, keys_shape):
        if query_shape[-1] != self.units:
            raise ValueError(f"queries must have {self.units} features. Received: query_shape={query_shape}")
        if self.score == "dot" and keys_shape[-1] != self.units:
            raise ValueError(f"dot scores need keys of the queries' size ({self.units}). "
                             f"Received: keys_shape={keys_shape}")
        if self.score == "general":
            self.key_kernel = self.add_weight(name="key_kernel", shape=(keys_shape[-1], self.units))

    def call(self, query, keys, keys_mask=None, training=None):
        weights = self.attention_weights(query, self.project_keys(keys), keys_mask, training)
        return ops.matmul(weights, keys), weights

    def project_keys(self, keys):
        """`W k` ("general") or `k` ("dot") for every key: computed once per source."""
        return ops.matmul(keys, self.key_kernel) if self.score == "general" else keys

    def attention_weights(self, query, projected_keys, keys_mask=None, training=None):
        """Weights `[batch, query_steps, key_steps]` from queries and `project_keys(keys)`."""
        scores = ops.cast(ops.matmul(query, ops.transpose(projected_keys, (0, 2, 1))), "float32")
        return masked_softmax(scores, keys_mask, self.compute_dtype)

    def compute_output_shape(self, query_shape, keys_shape):
        return ((*query_shape[:-1], keys_shape[-1]), (*query_shape[:-1], keys_shape[1]))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "score": self.score}
