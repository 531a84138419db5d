"""Keras' optimizers with gradient clipping that keeps embedding gradients sparse and measures them exactly.

An embedding's gradient is a `tf.IndexedSlices`: one row per lookup, a row repeated wherever its
token is. Keras' `global_clipnorm` turns it into a dense `[vocabulary, dimension]` tensor, and
the update then rewrites every row of the table (on the ptb-small language model, a third of
the optimizer's time; benchmarks/README.md). `tf.clip_by_norm`, behind Keras' `clipnorm`, keeps it
sparse but measures the rows before repeats are summed, which is not the norm of the gradient.
Here repeated rows are summed before the norm is taken, and clipped gradients stay sparse.

>>> optimizer = Adam(1.0, global_clipnorm=5.0)
>>> rows = tf.IndexedSlices(tf.constant([[3.0], [3.0]]), tf.constant([1, 1]), tf.constant([4, 1]))
>>> float(gradient_norm([rows]))  # one row of 6, not two of 3
6.0
>>> clipped = optimizer._clip_gradients([rows])[0]
>>> type(clipped).__name__, clipped.values.numpy().ravel().tolist()
('IndexedSlices', [2.5, 2.5])
"""

from __future__ import annotations

import keras
import tensorflow as tf


def squared_norm(gradient) -> tf.Tensor:
    """The squared L2 norm of a dense or `IndexedSlices` gradient (repeated rows summed first)."""
    if isinstance(gradient, tf.IndexedSlices):
        rows, position = tf.unique(gradient.indices)
        gradient = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return 2.0 * tf.nn.l2_loss(tf.cast(gradient, "float32"))  # one pass, no squared copy


def gradient_norm(gradients: list) -> tf.Tensor:
    """The L2 norm of all `gradients` together (None entries skipped)."""
    return tf.sqrt(tf.add_n([squared_norm(g) for g in gradients if g is not None]))


def scale(gradient, factor: tf.Tensor):
    """`gradient * factor`; an `IndexedSlices` stays one."""
    if gradient is None:
        return None
    factor = tf.cast(factor, gradient.dtype)
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def clip_factor(norm: tf.Tensor, clipnorm: float) -> tf.Tensor:
    """`clipnorm / norm` where the norm is larger, else 1; NaN when the norm is not finite (as Keras),
    so that a diverged step shows in the loss instead of being scaled to zero."""
    return clipnorm / tf.maximum(norm, clipnorm) + (norm - norm)


class SparseClipping:
    """Mixin for a Keras optimizer: `clipnorm` (each weight) and `global_clipnorm` (all together)
    as Keras defines them, computed as above."""

    def _clip_gradients(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            return [scale(g, clip_factor(gradient_norm([g]), self.clipnorm)) if g is not None else None
                    for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            factor = clip_factor(gradient_norm(grads), self.global_clipnorm)
            return [scale(g, factor) for g in grads]
        return super()._clip_gradients(grads)


@keras.saving.register_keras_serializable(package="textseq")
class SGD(SparseClipping, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with sparse, exact clipping.

    With one replica, the clipping factor scales the learning rate instead of every gradient (the
    same step, one pass fewer over the weights), and a dense step without momentum is TensorFlow's
    fused `ResourceApplyGradientDescent`. With several replicas each clips its own gradients before
    they are summed, as Keras does, so the factor stays on the gradients there.
    """

    def _clip_gradients(self, grads):
        return grads if self._clips_by_learning_rate() else super()._clip_gradients(grads)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self._clips_by_learning_rate() and self.global_clipnorm:
            learning_rate = learning_rate * clip_factor(gradient_norm(grads), self.global_clipnorm)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if self._clips_by_learning_rate() and self.clipnorm:
            learning_rate = learning_rate * clip_factor(gradient_norm([gradient]), self.clipnorm)
        if self.momentum or isinstance(gradient, tf.IndexedSlices) or not isinstance(variable, tf.Variable):
            return super().update_step(gradient, variable, learning_rate)
        tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=tf.cast(learning_rate, variable.dtype),
                                                delta=tf.cast(gradient, variable.dtype))

    def _clips_by_learning_rate(self) -> bool:
        return bool(self.clipnorm or self.global_clipnorm) and tf.distribute.get_strategy().num_replicas_in_sync == 1


class FusedAdamStep:
    """Mixin for Keras' Adam: each weight's step as TensorFlow's fused `ResourceApplyAdam`, the same
    formula as Keras' `update_step` in one pass over the weight and its two moments. Keras' step is
    a dozen ops, each a pass over the weight with a temporary of its size: on the ~10M weights of the
    multi30k-de-en recipe 20-23 ms a step against 10-11 (benchmarks/README.md).

    Embeddings' `IndexedSlices` gradients and AMSGrad keep Keras' step. On slices Keras' step adds
    each repeated row's square to `v` apart, not the square of their sum as the fused op would; the
    recipes were tuned that way, and the summed form learned slower on multi30k-de-en.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or not isinstance(variable, tf.Variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="textseq")
class Adam(SparseClipping, FusedAdamStep, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with sparse, exact clipping and a fused step."""


@keras.saving.register_keras_serializable(package="textseq")
class AdamW(SparseClipping, FusedAdamStep, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with sparse, exact clipping and a fused step (the decay stays Keras')."""


@keras.saving.register_keras_serializable(package="textseq")
class RMSprop(SparseClipping, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with sparse, exact clipping."""


OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}
