"""textseq's token loss equals the textbook label-smoothed cross-entropy over non-padding tokens,
in value and gradient, on both of its paths (fixed shapes under XLA, any shape as graph ops)."""

import numpy as np
import pytest
import tensorflow as tf

from textseq.kernels.loss import TokenLoss

LABELS = np.array([[4, 2, 7, 0, 0], [1, 1, 3, 5, 0]], "int32")  # 0 is padding


def reference_loss(labels, logits, smoothing):
    """Mean over real tokens of -sum(target * log_softmax), target = (1 - e) one-hot + e / V."""
    vocab = logits.shape[-1]
    target = tf.one_hot(labels, vocab) * (1.0 - smoothing) + smoothing / vocab
    losses = -tf.reduce_sum(target * tf.nn.log_softmax(logits), -1)
    real = tf.cast(labels != 0, "float32")
    return tf.reduce_sum(losses * real) / tf.reduce_sum(real)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("fixed_shape", [True, False])
@pytest.mark.parametrize("upstream", [1.0, 3.0])  # 3: a loss scaled before its gradient (mixed float16)
def test_the_token_loss_and_its_gradient_equal_the_textbook_ones(smoothing, fixed_shape, upstream):
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 11)).astype("float32") * 3)
    loss = TokenLoss(smoothing)
    spec = tf.TensorSpec((2, 5, 11) if fixed_shape else (None, None, 11))

    @tf.function(input_signature=[spec])
    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(LABELS, x)
            scaled = value * upstream
        return value, tape.gradient(scaled, x)

    value, gradient = value_and_gradient(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        expected = reference_loss(LABELS, logits, smoothing)
        expected_scaled = expected * upstream
    expected_gradient = tape.gradient(expected_scaled, logits)
    np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), expected_gradient.numpy(), rtol=1e-4, atol=1e-7)
    assert not np.any(gradient.numpy()[LABELS == 0])  # padded positions get no gradient
