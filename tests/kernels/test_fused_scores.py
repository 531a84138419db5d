"""The fused additive attention scores (textseq.kernels.attention) give what the layer's Keras ops
give, weights and every gradient, and run under XLA only in training steps of one shape."""

import numpy as np
import pytest
import tensorflow as tf

from textseq.kernels.attention import additive_scores
from textseq.layers.attention import BahdanauAttention

rng = np.random.default_rng(0)
QUERY = rng.normal(size=(2, 3, 4)).astype("float32")
KEYS = rng.normal(size=(2, 5, 6)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)


def _weights_and_gradients(attention, query, keys, training):
    query, keys = tf.constant(query), tf.constant(keys)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([query, keys])
        context, weights = attention(query, keys, keys_mask=MASK, training=training)
        loss = tf.reduce_sum(tf.cast(context, "float32") * np.arange(6.0)) + tf.reduce_sum(
            tf.cast(weights, "float32") * np.arange(5.0))
    gradients = tape.gradient(loss, [query, keys, *attention.trainable_variables])
    return [np.asarray(tf.cast(t, "float32")) for t in (context, weights, *gradients)]


def fused(attention: BahdanauAttention) -> BahdanauAttention:
    attention.score_function = additive_scores  # what textseq.kernels.install does
    return attention


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_training_scores_match_the_keras_ops_with_all_gradients(dtype):
    attention = BahdanauAttention(units=7, dtype=dtype)
    plain = _weights_and_gradients(attention, QUERY, KEYS, training=True)
    fused_scores = _weights_and_gradients(fused(attention), QUERY, KEYS, training=True)
    # bfloat16 keeps 8 bits: the fused path computes the tanh in float32, the graph ops in bf16.
    tolerance = 1e-5 if dtype == "float32" else 5e-2
    for expected, got in zip(plain, fused_scores):
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    assert (fused_scores[1][0, :, 3:] == 0.0).all()  # padded keys still get exactly zero weight


def _uses_xla(attention, query_spec, keys_spec, training) -> bool:
    @tf.function(input_signature=[query_spec, keys_spec])
    def call(query, keys):
        with tf.GradientTape() as tape:
            tape.watch(query)
            context, _ = attention(query, keys, training=training)
        return tape.gradient(tf.reduce_sum(context), query)

    graph = call.get_concrete_function().graph.as_graph_def()
    functions = [node.attr for function in graph.library.function for node in function.node_def]
    return any(attr["_XlaMustCompile"].b for attr in [*(n.attr for n in graph.node), *functions])


def test_fused_scores_only_in_training_steps_of_one_shape():
    assert not _uses_xla(BahdanauAttention(units=7), tf.TensorSpec((2, 3, 4)), tf.TensorSpec((2, 5, 6)), True)
    attention = fused(BahdanauAttention(units=7))
    fixed = tf.TensorSpec((2, 3, 4)), tf.TensorSpec((2, 5, 6))
    assert _uses_xla(attention, *fixed, training=True)
    assert not _uses_xla(attention, *fixed, training=False)  # inference graphs and exports stay plain
    varying = tf.TensorSpec((2, None, 4)), tf.TensorSpec((2, None, 6))  # translation batches
    assert not _uses_xla(attention, *varying, training=True)
