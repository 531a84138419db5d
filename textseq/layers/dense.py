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


@keras.saving.register_keras_serializable(package="textseq")
class Logits(Dense):
    """The output layer over a vocabulary: `Dense` whose product runs in the layer's compute dtype and
    whose logits are float32, so that the softmax and the loss are float32 under mixed precision too.

    Under mixed_bfloat16 the product, the largest of a decoder step, uses the bfloat16 units of the
    CPU (AVX512_BF16, AMX) or TPU, as PyTorch's autocast and Keras' mixed-precision guide do it.

    >>> layer = Logits(3, dtype="mixed_bfloat16")
    >>> keras.backend.standardize_dtype(layer(ops.ones((2, 4, 5))).dtype), layer.compute_dtype
    ('float32', 'bfloat16')
    """

    def call(self, inputs, training=None):
        return ops.cast(super().call(inputs, training=training), "float32")
