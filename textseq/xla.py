"""XLA functions that run inside a custom gradient.

>>> double = xla_function(lambda x: 2 * x)
>>> float(double(tf.constant(3.0)))
6.0
"""

from __future__ import annotations

import tensorflow as tf


def xla_function(function):
    """`function` compiled by XLA (`tf.function(jit_compile=True)`), its inputs cut from any tape.

    textseq writes the gradients of these pieces out (`tf.custom_gradient`); a tape that watched the
    inputs would instead trace the function for differentiation, which XLA refuses.
    """
    compiled = tf.function(function, jit_compile=True, autograph=False)
    return lambda *tensors: compiled(*(tf.stop_gradient(t) for t in tensors))
