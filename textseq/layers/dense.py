"""A dense layer over the last axis that multiplies as one 2-D matrix product.

Keras' `Dense` applies its kernel to `[batch, steps, features]` inputs as a tensor contraction and
adds the bias as a separate pass; TensorFlow fuses a bias (and activation) into the matrix multiply
only for 2-D products (oneDNN's post-ops). For the output projection over a vocabulary, that
separate pass over `[batch, steps, vocab]` forward and backward is a measurable part of a training
step (benchmarks/README.md).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textseq")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` (same weights and config) that flattens inputs of rank > 2 to 2-D.

    >>> layer = Dense(3)
    >>> tuple(layer(ops.ones((2, 4, 5))).shape)
    (2, 4, 3)
    """

    def call(self, inputs, training=None):
        if len(inputs.shape) <= 2:
            return super().call(inputs, training=training)
        outputs = super().call(ops.reshape(inputs, (-1, inputs.shape[-1])), training=training)
        return ops.reshape(outputs, (*ops.shape(inputs)[:-1], self.units))
