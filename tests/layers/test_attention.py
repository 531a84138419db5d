import keras
import numpy as np
import pytest

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
