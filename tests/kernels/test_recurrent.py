"""The hoisted LSTM/GRU kernels compute what Keras' own loop computes: outputs, final states and
every gradient, with masks, initial states and both directions, with the loops under XLA (training:
on the batch's own length where the graph fixes it, else padded to a bucket of lengths) and as
graph loops (inference)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from textseq.kernels.recurrent import install

LSTM, GRU = keras.layers.LSTM, keras.layers.GRU


def hoisted(layer_class, units, **kwargs):
    """A Keras layer (with zero outputs on masked steps, as the kernels give) with the kernels installed."""
    layer = layer_class(units, zero_output_for_mask=True, **kwargs)
    install(layer)
    return layer


def _pair(layer_class, go_backwards):
    ours = hoisted(layer_class, 6, return_sequences=True, return_state=True, go_backwards=go_backwards)
    reference = layer_class(6, return_sequences=True, return_state=True, go_backwards=go_backwards,
                            zero_output_for_mask=True)
    ours.build((3, 5, 4))
    reference.build((3, 5, 4))
    reference.set_weights(ours.get_weights())
    return ours, reference


def _run(layer, inputs, initial_state, mask, training, any_length=False):
    """Outputs, states and every gradient; `any_length`: in a graph that leaves the length open (as
    training batches of every length do), so that compiled loops run on padded arrays."""

    def run(inputs, initial_state, mask):
        with tf.GradientTape() as tape:
            tape.watch([inputs, *initial_state])
            outputs, *states = layer(inputs, initial_state=initial_state, mask=mask, training=training)
            # Weighted sums, so that each output and state gets its own upstream gradient.
            total = tf.reduce_sum(outputs * tf.cos(tf.range(6, dtype="float32")))
            total += sum(tf.reduce_sum(s * (i + 2.0)) for i, s in enumerate(states))
        return [outputs, *states], tape.gradient(total, [inputs, *initial_state, *layer.trainable_variables])

    if any_length:
        run = tf.function(run, input_signature=[tf.TensorSpec([3, None, 4]), [tf.TensorSpec([3, 6])] * len(initial_state),
                                                tf.TensorSpec([3, None], tf.bool)])
    return run(inputs, initial_state, mask)


@pytest.mark.parametrize("layer_class", [LSTM, GRU])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("training,any_length", [(True, False), (True, True), (False, False)],
                         ids=["xla-loops", "xla-loops-padded", "graph-loops"])
def test_hoisted_kernels_match_keras_outputs_states_and_gradients(layer_class, go_backwards, training, any_length):
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(3, 5, 4)), "float32")
    mask = tf.constant([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]) > 0  # right-padded rows
    states = 2 if layer_class is LSTM else 1
    initial_state = [tf.constant(rng.normal(size=(3, 6)), "float32") for _ in range(states)]
    ours, reference = _pair(layer_class, go_backwards)

    values, gradients = _run(ours, inputs, initial_state, mask, training, any_length)
    assert values[0].shape == (3, 5, 6)  # the padded steps are cut off again
    expected_values, expected_gradients = _run(reference, inputs, initial_state, mask, training)

    for value, expected in zip(values, expected_values):
        np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert len(gradients) == len(expected_gradients)
    for gradient, expected in zip(gradients, expected_gradients):
        np.testing.assert_allclose(np.asarray(gradient), np.asarray(expected), rtol=1e-4, atol=1e-5)
    # The padded steps of row 2 leave its states alone and pass the state's gradient straight through.
    assert np.any(np.abs(gradients[1].numpy()[2]) > 0)


def test_hoisted_kernels_run_in_a_graph_under_bfloat16():
    layer = hoisted(LSTM, 8, return_sequences=True, return_state=True, dtype="mixed_bfloat16")
    inputs = tf.ones((2, 4, 3))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs, h, c = layer(inputs, training=True)
            loss = tf.reduce_sum(tf.cast(outputs, "float32"))
        return outputs, tape.gradient(loss, layer.trainable_variables)

    outputs, gradients = step()
    assert outputs.dtype == tf.bfloat16
    assert [g.dtype for g in gradients] == [tf.float32] * 3  # variables stay float32
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


def test_installing_changes_neither_the_layer_nor_its_config():
    for layer_class in (LSTM, GRU):
        plain = layer_class(4, go_backwards=True, zero_output_for_mask=True, name="l")
        layer = hoisted(layer_class, 4, go_backwards=True, name="l")
        assert type(layer) is layer_class and layer.get_config() == plain.get_config()
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is layer_class and clone.get_config() == layer.get_config()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("fixed_shape", [True, False], ids=["xla", "graph"])
def test_token_loss_and_its_gradient_match_the_textbook_formula(label_smoothing, fixed_shape):
    from textseq.kernels.loss import TokenLoss

    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(size=(2, 3, 7)) * 3, "float32")
    labels = tf.constant([[4, 2, 0], [6, 0, 0]])  # 0 is padding
    loss = TokenLoss(label_smoothing)
    # Logits of a fixed shape take the XLA functions, others TensorFlow's ops.
    spec = [tf.TensorSpec([2, 3], tf.int32), tf.TensorSpec([2, 3, 7])] if fixed_shape else [
        tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None, 7])]

    @tf.function(input_signature=spec)
    def ours_and_gradient(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits)
        return value, tape.gradient(value, logits)

    ours, gradient = ours_and_gradient(labels, logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        log_probs = tf.nn.log_softmax(logits)
        target = (1 - label_smoothing) * tf.one_hot(labels, 7) + label_smoothing / 7
        real = tf.cast(labels > 0, "float32")
        expected = tf.reduce_sum(-tf.reduce_sum(target * log_probs, -1) * real) / tf.reduce_sum(real)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(gradient.numpy(), tape.gradient(expected, logits).numpy(), rtol=1e-5, atol=1e-7)
    assert not np.any(gradient.numpy()[1, 1:])  # padded tokens get no gradient


def _uses_xla(layer, inputs, training) -> bool:
    """Whether the graph of `layer(inputs)` (with its gradient when training) calls an XLA function."""

    @tf.function(input_signature=[tf.TensorSpec(inputs.shape, inputs.dtype)])  # a tensor or a TensorSpec
    def call(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=training)
        return outputs, tape.gradient(tf.reduce_sum(tf.cast(outputs, "float32")), x)

    graph = call.get_concrete_function().graph.as_graph_def()
    functions = [node.attr for function in graph.library.function for node in function.node_def]
    return any(attr["_XlaMustCompile"].b for attr in [*(n.attr for n in graph.node), *functions])


def test_xla_loops_only_where_they_pay_off():
    fixed = tf.ones((2, 4, 3))
    assert _uses_xla(hoisted(LSTM, 8, return_sequences=True), fixed, training=True)  # float32 training, fixed shape
    assert not _uses_xla(hoisted(LSTM, 8, return_sequences=True), fixed, training=False)  # inference: exports stay plain
    # bfloat16: oneDNN's graph ops use the CPU's bf16 units, XLA converts to float32.
    assert not _uses_xla(hoisted(LSTM, 8, return_sequences=True, dtype="mixed_bfloat16"), fixed, training=True)
    # Batches of every length compile once per 16 lengths (their arrays are padded to a bucket)...
    assert _uses_xla(hoisted(GRU, 8, return_sequences=True), tf.TensorSpec((2, None, 3)), training=True)
    assert _uses_xla(hoisted(GRU, 8, return_sequences=True), fixed, training=True)
    # ...which a short run does not pay back (kernels.install with the run's planned steps).
    short = LSTM(8, return_sequences=True, zero_output_for_mask=True)
    install(short, any_length=False)
    assert not _uses_xla(short, tf.TensorSpec((2, None, 3)), training=True)
    assert _uses_xla(short, fixed, training=True)
    assert not _uses_xla(LSTM(8, return_sequences=True), fixed, training=True)  # not installed: Keras' own loop
