"""textseq's Dense computes what Keras' Dense computes, on inputs of any rank, and round-trips."""

import keras
import numpy as np
import tensorflow as tf

from textseq.layers import Dense, Logits


def test_dense_matches_keras_dense_on_3d_inputs_with_gradients():
    ours, reference = Dense(5, activation="tanh"), keras.layers.Dense(5, activation="tanh")
    inputs = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)), "float32")
    ours.build(inputs.shape)
    reference.build(inputs.shape)
    reference.set_weights(ours.get_weights())

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4])])  # batch and steps unknown, as in training
    def outputs_and_gradients(x):
        results = []
        for layer in (ours, reference):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                total = tf.reduce_sum(y * tf.range(5, dtype="float32"))
            results.append((y, tape.gradient(total, [x, *layer.trainable_variables])))
        return results

    (y, gradients), (expected, expected_gradients) = outputs_and_gradients(inputs)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient.numpy(), expected_gradient.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(inputs[0]).numpy(), reference(inputs[0]).numpy(), rtol=1e-6)  # 2-D as well


def test_dense_round_trips_through_its_config():
    layer = Dense(7, activation="tanh", dtype="float32", name="logits")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is Dense and clone.get_config() == layer.get_config()


def test_dense_under_mixed_bfloat16_matches_keras_dense_and_keeps_float32_weight_gradients():
    ours = Dense(5, dtype="mixed_bfloat16")
    reference = keras.layers.Dense(5, dtype="mixed_bfloat16")
    inputs = tf.constant(np.random.default_rng(2).normal(size=(3, 4, 6)), "float32")
    ours.build(inputs.shape)
    reference.build(inputs.shape)
    reference.set_weights(ours.get_weights())
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            y = layer(inputs)
            total = tf.reduce_sum(tf.cast(y, "float32") * tf.range(5, dtype="float32"))
        results.append((y, tape.gradient(total, layer.trainable_variables)))
    (y, gradients), (expected, expected_gradients) = results
    assert y.dtype == tf.bfloat16 and [g.dtype for g in gradients] == [tf.float32, tf.float32]
    np.testing.assert_allclose(tf.cast(y, "float32").numpy(), tf.cast(expected, "float32").numpy(), rtol=2e-2, atol=2e-2)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient.numpy(), expected_gradient.numpy(), rtol=2e-2, atol=2e-2)


def test_logits_multiply_in_bfloat16_under_mixed_bfloat16_and_return_float32():
    ours = Logits(5, dtype="mixed_bfloat16")
    reference = keras.layers.Dense(5, dtype="mixed_bfloat16")
    full = Logits(5)  # float32: exactly textseq's Dense
    inputs = tf.constant(np.random.default_rng(3).normal(size=(3, 4, 6)), "float32")
    for layer in (ours, reference, full):
        layer.build(inputs.shape)
    reference.set_weights(ours.get_weights())
    full.set_weights(ours.get_weights())
    with tf.GradientTape() as tape:
        y = ours(inputs)
        total = tf.reduce_sum(y * tf.range(5, dtype="float32"))
    gradients = tape.gradient(total, ours.trainable_variables)
    assert y.dtype == tf.float32 and [g.dtype for g in gradients] == [tf.float32, tf.float32]
    # the bfloat16 product, cast: what Keras' mixed Dense gives, not the float32 product
    np.testing.assert_array_equal(y.numpy(), tf.cast(reference(inputs), "float32").numpy())
    exact = full(inputs).numpy()
    assert 0 < np.abs(y.numpy() - exact).max() < 5e-2
    dense = Dense(5)
    dense.build(inputs.shape)
    dense.set_weights(ours.get_weights())
    np.testing.assert_array_equal(exact, dense(inputs).numpy())
