import keras
import numpy as np
import pytest
import tensorflow as tf

from textseq.layers.attention import BahdanauAttention

rng = np.random.default_rng(0)
QUERY = rng.normal(size=(2, 3, 4)).astype("float32")
KEYS = rng.normal(size=(2, 5, 6)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)


def test_basics_shapes():
    context, weights = BahdanauAttention(units=7)(QUERY, KEYS)
    assert context.shape == (2, 3, 6) and weights.shape == (2, 3, 5)


def test_weights_sum_to_one_over_unpadded_keys_and_are_zero_on_padding():
    _, weights = BahdanauAttention(units=7)(QUERY, KEYS, keys_mask=MASK)
    weights = np.asarray(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert (weights[0, :, 3:] == 0.0).all()  # exactly zero, not merely small
    assert (weights[0, :, :3] > 0).all()


def test_padded_keys_do_not_change_the_context():
    attention = BahdanauAttention(units=7)
    short, _ = attention(QUERY[:1], KEYS[:1, :3])
    junk = KEYS[:1].copy()
    junk[:, 3:] = 1e3  # whatever sits in padded positions
    padded, _ = attention(QUERY[:1], junk, keys_mask=MASK[:1])
    np.testing.assert_allclose(np.asarray(padded), np.asarray(short), rtol=1e-6, atol=1e-6)


def test_fully_padded_row_gives_zero_weights_and_context():
    mask = np.zeros((1, 5), dtype=bool)
    context, weights = BahdanauAttention(units=7)(QUERY[:1], KEYS[:1], keys_mask=mask)
    assert not np.asarray(weights).any() and not np.asarray(context).any()


def test_correctness_against_the_formula():
    attention = BahdanauAttention(units=3)
    attention(QUERY, KEYS)
    w1, w2, b, v = (np.asarray(x) for x in (attention.query_kernel, attention.key_kernel,
                                             attention.bias, attention.score_kernel))
    scores = np.tanh((QUERY @ w1)[:, :, None, :] + (KEYS @ w2)[:, None, :, :] + b) @ v
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    context, weights = attention(QUERY, KEYS)
    np.testing.assert_allclose(np.asarray(weights), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(context), expected @ KEYS, rtol=1e-5, atol=1e-5)


def test_get_config_round_trips():
    attention = BahdanauAttention(units=5, name="att")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attention))
    assert isinstance(restored, BahdanauAttention) and restored.get_config() == attention.get_config()


def test_attention_errors():
    with pytest.raises(ValueError, match="Received: units=0"):
        BahdanauAttention(units=0)


def _weights_and_gradients(attention, query, keys, training):
    query, keys = tf.constant(query), tf.constant(keys)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([query, keys])
        context, weights = attention(query, keys, keys_mask=MASK, training=training)
        loss = tf.reduce_sum(tf.cast(context, "float32") * np.arange(6.0)) + tf.reduce_sum(
            tf.cast(weights, "float32") * np.arange(5.0))
    gradients = tape.gradient(loss, [query, keys, *attention.trainable_variables])
    return [np.asarray(tf.cast(t, "float32")) for t in (context, weights, *gradients)]


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_training_scores_match_the_graph_ops_with_all_gradients(dtype):
    attention = BahdanauAttention(units=7, dtype=dtype)
    plain = _weights_and_gradients(attention, QUERY, KEYS, training=False)
    fused = _weights_and_gradients(attention, QUERY, KEYS, training=True)
    # bfloat16 keeps 8 bits: the fused path computes the tanh in float32, the graph ops in bf16.
    tolerance = 1e-5 if dtype == "float32" else 5e-2
    for expected, got in zip(plain, fused):
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    assert (fused[1][0, :, 3:] == 0.0).all()  # padded keys still get exactly zero weight


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
    attention = BahdanauAttention(units=7)
    fixed = tf.TensorSpec((2, 3, 4)), tf.TensorSpec((2, 5, 6))
    assert _uses_xla(attention, *fixed, training=True)
    assert not _uses_xla(attention, *fixed, training=False)  # inference graphs and exports stay plain
    varying = tf.TensorSpec((2, None, 4)), tf.TensorSpec((2, None, 6))  # translation batches
    assert not _uses_xla(attention, *varying, training=True)
