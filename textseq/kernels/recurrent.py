"""LSTM and GRU sequence kernels for CPUs and TPUs, with a hand-written gradient.

Keras runs a recurrent layer without cuDNN as a loop over the cell: at every time step it
multiplies that step's inputs by the input kernel, and TensorFlow's gradient of the loop again
works step by step. Here everything that does not depend on the previous step is one large matrix
multiply over all steps at once, as cuDNN does it:

- forward: the input projections `x_t W + b` of all steps; the loop only adds `h_{t-1} U`;
- backward: the loop only computes the pre-activation gradients `dz_t` and `dz_t U^T`; the
  gradients of `W`, `U`, `b` and of the inputs are then single matrix multiplies over all steps.

The weights are Keras' own (`kernel`, `recurrent_kernel`, `bias`, gates in Keras' order), so
checkpoints and the per-step `cell` used for decoding are unchanged. Masks follow cuDNN (and
Keras' loop with `zero_output_for_mask=True`): on a masked step the states stay as they were and
the output is zero.

With `compiled=True` the two loops (and the backward pass's elementwise factors) run as XLA
functions: TensorFlow's executor spends several microseconds on each small op of every step, XLA
fuses a step's elementwise work into one kernel. XLA compiles once per shape, so batches of every
length run their loops over arrays padded to a multiple of 16 steps (`Steps`; the padded steps are
not run). `install` asks for it when training in float32; the matrix multiplies outside the loops
stay on oneDNN, and inference graphs (exports) need no XLA.

>>> import numpy as np
>>> x = tf.constant(np.ones((2, 3, 4), "float32")); h = tf.zeros((2, 5))
>>> kernel, recurrent, bias = tf.ones((4, 20)) * 0.1, tf.ones((5, 20)) * 0.1, tf.zeros((20,))
>>> outputs, h_last, c_last = lstm_sequence(x, h, h, tf.ones((2, 3), "bool"), kernel, recurrent, bias)
>>> tuple(outputs.shape), tuple(h_last.shape)
((2, 3, 5), (2, 5))
"""

from __future__ import annotations

import collections
import types

import keras
import tensorflow as tf

from textseq.kernels.xla import fixed_shape, xla_function


def _time_major(x):
    return tf.transpose(x, [1, 0, 2])


def _project(x_tm, kernel, bias):
    """`x W + b` for every step of time-major `x` `[T, B, D]`, as one matrix multiply."""
    steps, batch = tf.shape(x_tm)[0], tf.shape(x_tm)[1]
    flat = tf.matmul(tf.reshape(x_tm, [-1, tf.shape(x_tm)[2]]), kernel) + bias
    return tf.reshape(flat, [steps, batch, tf.shape(kernel)[1]])


def _weight_gradients(inputs_tm, previous_tm, d_input_tm, d_recurrent_tm, kernel):
    """Given the gradients of the input projection `x W + b_x` and of the recurrent one `h U + b_h`
    for every step, dX = dZx W^T, dW = X^T dZx and dU = H_prev^T dZh, each one matrix multiply.
    Also returns dZx and dZh flattened to `[T * B, width]`, whose column sums are the bias gradients.
    """
    width = tf.shape(kernel)[1]
    d_input = tf.reshape(d_input_tm, [-1, width])
    d_recurrent = tf.reshape(d_recurrent_tm, [-1, width])
    x = tf.reshape(inputs_tm, [-1, tf.shape(inputs_tm)[2]])
    h = tf.reshape(previous_tm, [-1, tf.shape(previous_tm)[2]])
    d_inputs = tf.reshape(tf.matmul(d_input, kernel, transpose_b=True), tf.shape(inputs_tm))
    return (d_inputs, tf.matmul(x, d_input, transpose_a=True), tf.matmul(h, d_recurrent, transpose_a=True),
            d_input, d_recurrent)


def _zeros_for_none(gradients, values):
    """Outputs nothing depends on get None as their gradient; the loops need zeros."""
    return [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, values)]


def _reversed(x_tm, go_backwards):
    return tf.reverse(x_tm, [0]) if go_backwards else x_tm


def _lstm_forward(projected, h0, c0, mask_tm, recurrent_kernel, steps):
    """The forward recurrence over the first `steps` of `projected`: the last states; gates, cell
    states and the hidden state each step starts from `[T, B, ...]`; the outputs `[B, T, H]` (zero on
    masked steps). Steps from `steps` on (a compiled loop's padding) stay zero."""

    def step(t, h, c, gates_ta, cells_ta, hidden_ta):
        gates = tf.sigmoid(projected[t] + tf.matmul(h, recurrent_kernel))
        i, f, g, o = tf.split(gates, 4, axis=1)
        c_new = f * c + i * (2 * g - 1)
        h_new = o * tf.tanh(c_new)
        m = mask_tm[t]
        c_new, h_new = tf.where(m, c_new, c), tf.where(m, h_new, h)
        return t + 1, h_new, c_new, gates_ta.write(t, gates), cells_ta.write(t, c_new), hidden_ta.write(t, h_new)

    arrays = [tf.TensorArray(projected.dtype, size=tf.shape(projected)[0]) for _ in range(3)]
    _, h_last, c_last, gates, cells, hidden = tf.while_loop(lambda t, *_: t < steps, step, [0, h0, c0, *arrays])
    return (h_last, c_last, gates.stack(), cells.stack(), *_previous_and_outputs(h0, hidden.stack(), mask_tm))


def _previous_and_outputs(h0, hidden, mask_tm):
    """The hidden state each step starts from `[T, B, H]`, and the outputs `[B, T, H]` (zero where masked)."""
    outputs = tf.transpose(tf.where(mask_tm, hidden, tf.zeros([], hidden.dtype)), [1, 0, 2])
    return tf.concat([h0[None], hidden[:-1]], 0), outputs


def _lstm_backward(d_outputs, d_h_last, d_c_last, gates, cells, c0, mask_tm, recurrent_kernel, steps):
    """The backward recurrence from the outputs' gradient `[B, T, H]` over the first `steps`: the
    pre-activation gradients `dz` `[T, B, 4H]` and those of `(h0, c0)`."""
    dtype = gates.dtype
    # Everything the loop multiplies by that does not depend on the carried gradients, over all
    # steps at once. Masked steps get zeros here, so that their gradients pass straight through.
    m = tf.cast(mask_tm, dtype)
    d_outputs_tm = tf.transpose(d_outputs, [1, 0, 2]) * m
    i, f, g, o = tf.split(gates, 4, axis=2)
    g = 2 * g - 1
    tanh_c = tf.tanh(cells)
    previous_cells = tf.concat([c0[None], cells[:-1]], 0)
    through_cell = o * (1 - tanh_c * tanh_c) * m  # d c_new / d h
    pre_activation = tf.concat([g * i * (1 - i), previous_cells * f * (1 - f), i * (1 - g * g),
                                tanh_c * o * (1 - o)], 2) * m
    forget = f * m + (1 - m)
    skip = 1 - m
    recurrent_transposed = tf.transpose(recurrent_kernel)  # once, not at every step

    def step(t, dh, dc, dz_ta):
        dh = dh + d_outputs_tm[t]
        dc_new = dc + dh * through_cell[t]
        dz = tf.concat([dc_new, dc_new, dc_new, dh], 1) * pre_activation[t]
        dh_previous = tf.matmul(dz, recurrent_transposed) + dh * skip[t]
        return t - 1, dh_previous, dc_new * forget[t], dz_ta.write(t, dz)

    _, d_h0, d_c0, dz = tf.while_loop(lambda t, *_: t >= 0, step,
                                      [steps - 1, d_h_last, d_c_last, tf.TensorArray(dtype, size=tf.shape(gates)[0])])
    return d_h0, d_c0, dz.stack()


def _gru_forward(projected, h0, mask_tm, recurrent_kernel, recurrent_bias, steps):
    """The forward recurrence over the first `steps`: the last state; `[z, r, candidate, h U_h + b_h]`
    and the state each step starts from `[T, B, ...]`; the outputs `[B, T, H]` (zero on masked steps)."""

    def step(t, h, gates_ta, hidden_ta):
        xz, xr, xh = tf.split(projected[t], 3, axis=1)
        rz, rr, rh = tf.split(tf.matmul(h, recurrent_kernel) + recurrent_bias, 3, axis=1)
        z, r = tf.sigmoid(xz + rz), tf.sigmoid(xr + rr)
        candidate = tf.tanh(xh + r * rh)
        h_new = tf.where(mask_tm[t], z * h + (1 - z) * candidate, h)
        return t + 1, h_new, gates_ta.write(t, tf.concat([z, r, candidate, rh], 1)), hidden_ta.write(t, h_new)

    arrays = [tf.TensorArray(projected.dtype, size=tf.shape(projected)[0]) for _ in range(2)]
    _, h_last, gates, hidden = tf.while_loop(lambda t, *_: t < steps, step, [0, h0, *arrays])
    return (h_last, gates.stack(), *_previous_and_outputs(h0, hidden.stack(), mask_tm))


def _gru_backward(d_outputs, d_h_last, gates, previous_hidden, mask_tm, recurrent_transposed, steps):
    """The backward recurrence from the outputs' gradient `[B, T, H]` over the first `steps`: the
    gradients of the input projection and of `h U + b_h` `[T, B, 3H]` (zero on masked steps), and
    that of `h0`."""
    d_outputs_tm = tf.transpose(d_outputs, [1, 0, 2])

    def step(t, dh, dx_ta, dr_ta):
        m, zero = mask_tm[t], tf.zeros([], dh.dtype)
        dh = dh + tf.where(m, d_outputs_tm[t], zero)
        z, r, candidate, rh = tf.split(gates[t], 4, axis=1)
        d_candidate = tf.where(m, dh * (1 - z) * (1 - candidate * candidate), zero)  # d of xh + r * rh
        dz = tf.where(m, dh * (previous_hidden[t] - candidate) * z * (1 - z), zero)
        dr = d_candidate * rh * r * (1 - r)
        d_recurrent = tf.concat([dz, dr, d_candidate * r], 1)  # of h U + b_h
        dh_previous = tf.matmul(d_recurrent, recurrent_transposed) + tf.where(m, dh * z, dh)
        return t - 1, dh_previous, dx_ta.write(t, tf.concat([dz, dr, d_candidate], 1)), dr_ta.write(t, d_recurrent)

    arrays = [tf.TensorArray(d_h_last.dtype, size=tf.shape(gates)[0]) for _ in range(2)]
    _, d_h0, d_input, d_recurrent = tf.while_loop(lambda t, *_: t >= 0, step, [steps - 1, d_h_last, *arrays])
    return d_h0, d_input.stack(), d_recurrent.stack()


Loops = collections.namedtuple("Loops", "lstm_forward lstm_backward gru_forward gru_backward")
GRAPH_LOOPS = Loops(_lstm_forward, _lstm_backward, _gru_forward, _gru_backward)

COMPILED_LOOPS = Loops(*map(xla_function, GRAPH_LOOPS))


BUCKET = 16  # compiled loops over lengths known only when they run: one XLA compile per 16 lengths


class Steps:
    """How many steps the loops run, and the length of the arrays they run over: the same for graph
    loops and for compiled loops of a length fixed in the graph; for compiled loops over batches of
    every length, the arrays are padded to the next multiple of `BUCKET`, so that XLA compiles
    once per bucket instead of once per length, and the padded steps are never run."""

    def __init__(self, inputs, compiled: bool):
        # A length the graph fixes stays a Python number: a constant of the compiled loops, as before.
        self.count = inputs.shape[1] if inputs.shape[1] is not None else tf.shape(inputs)[1]
        self.padded = compiled and inputs.shape[1] is None
        self.length = (self.count + BUCKET - 1) // BUCKET * BUCKET if self.padded else self.count

    def pad(self, x, axis=0):
        """`x` with zeros (or False) after its steps along `axis`, up to the loops' length."""
        if not self.padded:
            return x
        paddings = [[0, 0]] * x.shape.rank
        paddings[axis] = [0, self.length - tf.shape(x)[axis]]
        return tf.pad(x, paddings)

    def cut(self, x, axis=0):
        """`x` without the padded steps along `axis`."""
        if not self.padded:
            return x
        return x[:self.count] if axis == 0 else x[:, :self.count]


def _prepare(inputs, mask, go_backwards, compiled, *weights):
    """What both kernels start from: their loops, the time-major boolean mask `[T, B, 1]` in the
    order the steps run (all true without a mask) and padded as `Steps` says, the weights in the
    inputs' dtype, and the `Steps`."""
    loops, steps = COMPILED_LOOPS if compiled else GRAPH_LOOPS, Steps(inputs, compiled)
    if mask is None:
        mask = tf.ones(tf.shape(inputs)[:2], dtype="bool")
    mask_tm = steps.pad(_reversed(tf.transpose(mask)[:, :, None], go_backwards))
    return loops, mask_tm, [tf.cast(w, inputs.dtype) for w in weights], steps


def lstm_sequence(inputs, h0, c0, mask, kernel, recurrent_kernel, bias, go_backwards=False, compiled=False):
    """Runs an LSTM over `inputs` `[B, T, D]` from `(h0, c0)`.

    Returns `(outputs [B, T, H], h_last, c_last)`; with `go_backwards` the steps run from the last
    to the first and `outputs` are in the order they were computed (as Keras returns them).
    `mask` is boolean `[B, T]` or None; `compiled` runs the loops under XLA.
    """
    dtype = inputs.dtype
    loops, mask_tm, (kernel, recurrent_kernel, bias), steps = _prepare(
        inputs, mask, go_backwards, compiled, kernel, recurrent_kernel, bias)
    units = tf.shape(recurrent_kernel)[0]
    # tanh(x) = 2 sigmoid(2x) - 1: one sigmoid over all four gates, the cell input's pre-scaled by 2.
    gate_scale = tf.concat([tf.ones([2 * units], dtype), tf.fill([units], tf.constant(2, dtype)),
                            tf.ones([units], dtype)], 0)

    @tf.custom_gradient
    def run(inputs, h0, c0, kernel, recurrent_kernel, bias):
        x_tm = _reversed(_time_major(inputs), go_backwards)
        projected = _project(x_tm, kernel * gate_scale, bias * gate_scale)
        scaled_recurrent = recurrent_kernel * gate_scale

        h_last, c_last, gates, cells, previous_hidden, outputs = loops.lstm_forward(
            steps.pad(projected), h0, c0, mask_tm, scaled_recurrent, steps.count)
        outputs = steps.cut(outputs, axis=1)

        def grad(d_outputs, d_h_last, d_c_last):
            d_outputs, d_h_last, d_c_last = _zeros_for_none((d_outputs, d_h_last, d_c_last),
                                                            (outputs, h_last, c_last))
            d_h0, d_c0, dz = loops.lstm_backward(steps.pad(d_outputs, axis=1), tf.cast(d_h_last, dtype),
                                                 tf.cast(d_c_last, dtype), gates, cells, c0, mask_tm,
                                                 recurrent_kernel, steps.count)
            # the input and the recurrent projections share one pre-activation gradient, dz
            dz = steps.cut(dz)
            d_x_tm, d_kernel, d_recurrent, dz, _ = _weight_gradients(x_tm, steps.cut(previous_hidden), dz, dz, kernel)
            d_inputs = tf.transpose(_reversed(d_x_tm, go_backwards), [1, 0, 2])
            return d_inputs, d_h0, d_c0, d_kernel, d_recurrent, tf.reduce_sum(dz, 0)

        return (outputs, h_last, c_last), grad

    return run(inputs, h0, c0, kernel, recurrent_kernel, bias)


def gru_sequence(inputs, h0, mask, kernel, recurrent_kernel, bias, go_backwards=False, compiled=False):
    """Runs a GRU (Keras' `reset_after=True` form; `bias` is `[2, 3H]`) over `inputs` `[B, T, D]`
    from `h0`. Returns `(outputs [B, T, H], h_last)`; the other arguments as in `lstm_sequence`.
    """
    dtype = inputs.dtype
    loops, mask_tm, (kernel, recurrent_kernel, bias), steps = _prepare(
        inputs, mask, go_backwards, compiled, kernel, recurrent_kernel, bias)

    @tf.custom_gradient
    def run(inputs, h0, kernel, recurrent_kernel, bias):
        x_tm = _reversed(_time_major(inputs), go_backwards)
        projected = _project(x_tm, kernel, bias[0])

        h_last, gates, previous_hidden, outputs = loops.gru_forward(
            steps.pad(projected), h0, mask_tm, recurrent_kernel, bias[1], steps.count)
        outputs = steps.cut(outputs, axis=1)

        def grad(d_outputs, d_h_last):
            d_outputs, d_h_last = _zeros_for_none((d_outputs, d_h_last), (outputs, h_last))
            d_h0, d_input_part, d_recurrent_part = loops.gru_backward(
                steps.pad(d_outputs, axis=1), tf.cast(d_h_last, dtype), gates, previous_hidden, mask_tm,
                tf.transpose(recurrent_kernel), steps.count)
            d_x_tm, d_kernel, d_recurrent, d_input_part, d_recurrent_part = _weight_gradients(
                x_tm, steps.cut(previous_hidden), steps.cut(d_input_part), steps.cut(d_recurrent_part), kernel)
            d_inputs = tf.transpose(_reversed(d_x_tm, go_backwards), [1, 0, 2])
            d_bias = tf.stack([tf.reduce_sum(d_input_part, 0), tf.reduce_sum(d_recurrent_part, 0)])
            return d_inputs, d_h0, d_kernel, d_recurrent, d_bias

        return (outputs, h_last), grad

    return run(inputs, h0, kernel, recurrent_kernel, bias)


def install(layer: keras.layers.RNN, any_length: bool = True) -> None:
    """Runs `layer` (a Keras LSTM or GRU) on the hoisted loops wherever Keras would otherwise step
    through time in graph ops: TensorFlow without a GPU, the default activations, a bias,
    `reset_after=True` for GRU, and no dropout while training. Elsewhere Keras' own loop runs.
    `any_length=False` keeps XLA loops to batches whose shape the graph fixes (`_xla_loops_pay_off`).

    >>> layer = keras.layers.LSTM(4, return_sequences=True, zero_output_for_mask=True)
    >>> install(layer)
    >>> tuple(layer(tf.ones((2, 3, 5))).shape)
    (2, 3, 4)
    """
    keras_loop = layer.inner_loop
    run = _run_lstm if isinstance(layer, keras.layers.LSTM) else _run_gru

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _hoisted_loop_applies(self, training):
            return keras_loop(sequences, initial_state, mask, training=training)
        outputs, *states = run(self, sequences, initial_state, mask,
                               compiled=training is True and _xla_loops_pay_off(sequences, any_length))
        return outputs[:, -1], outputs, states

    layer.inner_loop = types.MethodType(inner_loop, layer)


def _hoisted_loop_applies(layer: keras.layers.RNN, training: bool) -> bool:
    """True where Keras would otherwise take its slow step-by-step loop for this layer."""
    return (keras.backend.backend() == "tensorflow" and not layer.unroll and layer.cell.use_bias
            and layer.cell.activation is keras.activations.tanh
            and layer.cell.recurrent_activation is keras.activations.sigmoid
            and getattr(layer, "reset_after", True)  # GRU: the kernel is the cuDNN-compatible form
            and layer.zero_output_for_mask  # as these loops give masked steps
            and not (training and (layer.cell.dropout or layer.cell.recurrent_dropout))
            and not tf.config.list_logical_devices("GPU"))


def _xla_loops_pay_off(sequences, any_length: bool) -> bool:
    """XLA loops for float32 training: XLA fuses a step's elementwise work, which TensorFlow's
    executor runs as a dozen small ops. Batches of every length compile once per `BUCKET` of
    lengths (`Steps`), which a long run pays back and a short one does not (`any_length`: see
    `textseq.kernels.install`); fixed shapes compile once. Not for bfloat16: XLA on CPUs multiplies
    bfloat16 by converting it, where oneDNN's graph ops use the CPU's bf16 (AMX) units, 2.5x float32's
    rate. Training only (the caller's condition): inference graphs, and so exports, stay free of XLA.
    """
    return sequences.dtype == "float32" and (any_length or fixed_shape(sequences))


def _run_lstm(layer, sequences, initial_state, mask, compiled):
    cell = layer.cell
    return lstm_sequence(sequences, initial_state[0], initial_state[1], mask, cell.kernel.value,
                         cell.recurrent_kernel.value, cell.bias.value, layer.go_backwards, compiled)


def _run_gru(layer, sequences, initial_state, mask, compiled):
    cell = layer.cell
    initial = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
    return gru_sequence(sequences, initial, mask, cell.kernel.value, cell.recurrent_kernel.value,
                        cell.bias.value, layer.go_backwards, compiled)
