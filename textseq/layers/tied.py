"""TiedLogits: the output layer that scores tokens with their embeddings (weight tying)."""

from __future__ import annotations

import keras
from keras import ops


class TiedLogits(keras.layers.Layer):
    """Logits `x P E^T + b` from the target embedding matrix `E` (Press & Wolf, 2017; Inan et al., 2017).

    The output layer and the embedding share one `[vocab, embedding_dim]` matrix; where the inputs
    are not of the embedding's size, a learned projection `P` (no bias) maps them to it. The products
    run in the layer's compute dtype and the logits are float32, as the untied `Logits` do.

    Args:
        embedding: the `keras.layers.Embedding` whose matrix scores the tokens (its owner builds it).

    The owner of the embedding (the `Decoder`) creates this layer and records `tie_embeddings` in its
    own config; the layer is not serialized on its own.

    >>> embedding = keras.layers.Embedding(10, 4)
    >>> embedding.build((None,))
    >>> tuple(TiedLogits(embedding)(ops.ones((2, 3, 6))).shape)
    (2, 3, 10)
    """

    def __init__(self, embedding: keras.layers.Embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding  # shared: its weights are saved once, where its owner holds it
        self.units = embedding.input_dim

    def build(self, input_shape):
        size = self.embedding.output_dim
        self.projection = (self.add_weight(name="projection", shape=(input_shape[-1], size))
                           if input_shape[-1] != size else None)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        x = ops.reshape(inputs, (-1, inputs.shape[-1]))
        if self.projection is not None:
            x = ops.matmul(x, self.projection)
        table = ops.cast(self.embedding.embeddings, x.dtype)
        logits = ops.cast(ops.matmul(x, ops.transpose(table)) + self.bias, "float32")
        return ops.reshape(logits, (*ops.shape(inputs)[:-1], self.units))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)
