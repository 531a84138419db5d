"""XLA functions that run inside a custom gradient, and where they pay off.

>>> double = xla_function(lambda x: 2 * x)
>>> float(double(tf.constant(3.0)))
6.0
"""

from __future__ import annotations

import tensorflow as tf


def xla_function(function):
    """`function` compiled by XLA (`tf.function(jit_compile=True)`), its tensor inputs cut from any
    tape; Python numbers are constants of the compiled function.

    textseq writes the gradients of these pieces out (`tf.custom_gradient`); a tape that watched the
    inputs would instead trace the function for differentiation, which XLA refuses.
    """
    compiled = tf.function(function, jit_compile=True, autograph=False)
    return lambda *inputs: compiled(*(t if isinstance(t, (int, float)) else tf.stop_gradient(t) for t in inputs))


def fixed_shape(*tensors) -> bool:
    """Whether every dimension of `tensors` is known when the graph is traced. XLA compiles once per
    shape (~0.7 s for a recurrent layer's loops), which pays off over many identical training steps
    (language-model windows, TPU batches), not over translation batches of every length.

    >>> fixed_shape(tf.TensorSpec((2, 3))), fixed_shape(tf.TensorSpec((2, None)))
    (True, False)
    """
    return all(dimension is not None for tensor in tensors for dimension in tensor.shape)
