"""textseq's optimizers clip as PyTorch's clip_grad_norm_ would on the dense gradient, and keep
embedding gradients sparse."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from textseq import optimizers
from textseq.recipe import TrainConfig
from textseq.training import make_optimizer

IDS = tf.constant([[3, 1, 3], [3, 0, 2]])  # row 3 looked up three times


def embedding_and_dense_gradients(scale: float):
    """An embedding table and a dense weight, and their gradients (the table's as IndexedSlices)."""
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(6, 4)).astype("float32"))
    dense = tf.Variable(rng.normal(size=(4, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        outputs = tf.matmul(tf.reshape(tf.gather(table, IDS), [-1, 4]), dense)
        loss = scale * tf.reduce_sum(outputs * tf.constant(rng.normal(size=(6, 2)).astype("float32")))
    return [table, dense], tape.gradient(loss, [table, dense])


def test_the_norm_of_an_embedding_gradient_is_that_of_its_dense_form():
    _, (rows, dense) = embedding_and_dense_gradients(1.0)
    assert isinstance(rows, tf.IndexedSlices) and len(rows.indices) == 6  # one slice per lookup
    expected = np.sqrt(np.sum(tf.convert_to_tensor(rows).numpy() ** 2) + np.sum(dense.numpy() ** 2))
    np.testing.assert_allclose(optimizers.gradient_norm([rows, None, dense]).numpy(), expected, rtol=1e-6)
    naive = np.sqrt(np.sum(rows.values.numpy() ** 2) + np.sum(dense.numpy() ** 2))  # tf.clip_by_norm's
    assert abs(naive - expected) > 1e-3 * expected


@pytest.mark.parametrize("clip", ["global_clipnorm", "clipnorm"])
def test_a_clipped_sgd_step_equals_the_step_on_dense_gradients_and_leaves_other_rows(clip):
    variables, gradients = embedding_and_dense_gradients(100.0)  # norms far above the limit
    dense_gradients = [tf.convert_to_tensor(g).numpy() for g in gradients]
    if clip == "global_clipnorm":
        norm = np.sqrt(sum(np.sum(g ** 2) for g in dense_gradients))
        expected_gradients = [g * 2.0 / norm for g in dense_gradients]
    else:
        expected_gradients = [g * 2.0 / np.sqrt(np.sum(g ** 2)) for g in dense_gradients]
    before = [v.numpy() for v in variables]

    optimizer = optimizers.SGD(0.5, **{clip: 2.0})
    clipped = optimizer._clip_gradients(gradients)
    assert isinstance(clipped[0], tf.IndexedSlices)
    optimizer.apply_gradients(zip(gradients, variables))

    for variable, start, gradient in zip(variables, before, expected_gradients):
        np.testing.assert_allclose(variable.numpy(), start - 0.5 * gradient, rtol=1e-5, atol=1e-6)
    untouched = [4, 5]  # rows no id looked up
    np.testing.assert_array_equal(variables[0].numpy()[untouched], before[0][untouched])


def test_a_gradient_under_the_limit_is_unchanged_and_a_nan_one_stays_nan():
    optimizer = optimizers.SGD(0.1, global_clipnorm=10.0)
    small = tf.constant([3.0, 4.0])
    np.testing.assert_array_equal(optimizer._clip_gradients([small])[0].numpy(), [3.0, 4.0])
    assert np.isnan(optimizer._clip_gradients([tf.constant([np.nan, 1.0])])[0].numpy()).all()


def test_the_recipe_picks_the_clipping_and_the_optimizer_round_trips():
    each = make_optimizer(TrainConfig(optimizer="sgd", clipnorm=5.0), 10)
    joint = make_optimizer(TrainConfig(optimizer="adam", clipnorm=5.0, clip="global"), 10)
    assert (type(each), each.clipnorm, each.global_clipnorm) == (optimizers.SGD, 5.0, None)
    assert (type(joint), joint.clipnorm, joint.global_clipnorm) == (optimizers.Adam, None, 5.0)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(joint))
    assert type(clone) is optimizers.Adam and clone.get_config() == joint.get_config()
