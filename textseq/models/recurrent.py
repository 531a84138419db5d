"""The recurrent layers shared by encoder and decoder, built on the fused-kernel path.

Keras runs an LSTM or GRU layer as one fused kernel (cuDNN on NVIDIA GPUs) only with the default
activations (tanh, sigmoid), `recurrent_dropout=0`, no unrolling, a bias, `reset_after=True` for
GRU, and masks that are right-padded (every sequence's real tokens first): otherwise it steps
through time in Python-level ops, several times slower. These constructors keep all of that except
`recurrent_dropout`, which a recipe may ask for; `fast_path_warnings` says when it does.

Where there is no cuDNN (CPUs, TPUs), Keras' fallback loop multiplies each step's inputs by the
input kernel one step at a time and differentiates the loop step by step. `LSTM` and `GRU` here
replace that fallback with the kernels in `textseq.kernels.recurrent`, which hoist every
matrix multiply that does not depend on the previous step out of the loop, forward and backward.
They are Keras' layers otherwise: same weights, same config, same per-step `cell`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from textseq.kernels.recurrent import gru_sequence, lstm_sequence
from textseq.kernels.xla import fixed_shape


def _hoisted_kernel_applies(layer: keras.layers.RNN, training: bool) -> bool:
    """True where Keras would otherwise take its slow step-by-step loop for this layer."""
    return (keras.backend.backend() == "tensorflow" and not layer.unroll and layer.cell.use_bias
            and layer.cell.activation is keras.activations.tanh
            and layer.cell.recurrent_activation is keras.activations.sigmoid
            and getattr(layer, "reset_after", True)  # GRU: the kernel is the cuDNN-compatible form
            and not (training and (layer.cell.dropout or layer.cell.recurrent_dropout))
            and not tf.config.list_logical_devices("GPU"))


def _xla_loops_pay_off(sequences) -> bool:
    """XLA loops where batch and length are fixed (`fixed_shape`). Float32 only: XLA on CPUs
    multiplies bfloat16 by converting it, where oneDNN's graph ops use the CPU's bf16 (AMX) units,
    2.5x float32's rate. Training only (the caller's condition): inference graphs, and so exports,
    stay free of XLA.
    """
    return fixed_shape(sequences) and sequences.dtype == "float32"


class _HoistedLoop:
    """Shared by `LSTM` and `GRU`: zero outputs on masked steps on every path, and the hoisted kernel
    (`_run_hoisted`) wherever Keras would otherwise step through time.
    """

    def __init__(self, units, **kwargs):
        kwargs.setdefault("zero_output_for_mask", True)  # as cuDNN and the hoisted kernel do
        super().__init__(units, **kwargs)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _hoisted_kernel_applies(self, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        outputs, *states = self._run_hoisted(sequences, initial_state, mask,
                                             compiled=training is True and _xla_loops_pay_off(sequences))
        return outputs[:, -1], outputs, states


@keras.saving.register_keras_serializable(package="textseq")
class LSTM(_HoistedLoop, keras.layers.LSTM):
    """`keras.layers.LSTM` with the hoisted CPU/TPU kernel (see the module docstring).

    >>> layer = LSTM(4, return_sequences=True, return_state=True)
    >>> outputs, h, c = layer(keras.ops.ones((2, 3, 5)))
    >>> tuple(outputs.shape), tuple(h.shape)
    ((2, 3, 4), (2, 4))
    """

    def _run_hoisted(self, sequences, initial_state, mask, compiled):
        cell = self.cell
        return lstm_sequence(sequences, initial_state[0], initial_state[1], mask, cell.kernel.value,
                             cell.recurrent_kernel.value, cell.bias.value, self.go_backwards, compiled)


@keras.saving.register_keras_serializable(package="textseq")
class GRU(_HoistedLoop, keras.layers.GRU):
    """`keras.layers.GRU` with the hoisted CPU/TPU kernel (`reset_after=True`, Keras' default).

    >>> outputs, h = GRU(4, return_sequences=True, return_state=True)(keras.ops.ones((2, 3, 5)))
    >>> tuple(outputs.shape), tuple(h.shape)
    ((2, 3, 4), (2, 4))
    """

    def _run_hoisted(self, sequences, initial_state, mask, compiled):
        cell = self.cell
        initial = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        return gru_sequence(sequences, initial, mask, cell.kernel.value, cell.recurrent_kernel.value,
                            cell.bias.value, self.go_backwards, compiled)


CELLS = {"lstm": LSTM, "gru": GRU}


def recurrent_layer(cell: str, units: int, name: str, go_backwards: bool = False,
                    recurrent_dropout: float = 0.0) -> keras.layers.RNN:
    """An LSTM or GRU layer that returns its whole output sequence and its final states."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}. Received: cell={cell!r}")
    return CELLS[cell](units, return_sequences=True, return_state=True, go_backwards=go_backwards,
                       recurrent_dropout=recurrent_dropout, name=name)


def fast_path_warnings(model) -> list[str]:
    """Why the recipe's `model` (a ModelConfig) keeps its recurrent layers off the fused kernels, if it does."""
    if model.recurrent_dropout:
        return [f"model.recurrent_dropout: {model.recurrent_dropout} takes every {model.cell.upper()} layer off the "
                "fused (cuDNN) kernel, several times slower on GPUs; model.dropout regularises between layers "
                "and keeps it"]
    return []


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def check_dropout(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")
