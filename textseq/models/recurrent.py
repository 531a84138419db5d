"""The recurrent layers shared by encoder and decoder: Keras' LSTM and GRU, on their fused path.

Keras runs an LSTM or GRU layer as one fused kernel (cuDNN on NVIDIA GPUs) only with the default
activations (tanh, sigmoid), `recurrent_dropout=0`, no unrolling, a bias, `reset_after=True` for
GRU, and masks that are right-padded (every sequence's real tokens first): otherwise it steps
through time in Python-level ops, several times slower. These constructors keep all of that except
`recurrent_dropout`, which a recipe may ask for; `fast_path_warnings` says when it does. Where there
is no cuDNN (CPUs, TPUs), training installs `textseq.kernels.recurrent`'s loops into these layers.
"""

from __future__ import annotations

import keras

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def recurrent_layer(cell: str, units: int, name: str, go_backwards: bool = False,
                    recurrent_dropout: float = 0.0) -> keras.layers.RNN:
    """An LSTM or GRU layer that returns its whole output sequence and its final states, with zero
    outputs on masked steps (as cuDNN gives them).

    >>> outputs, h, c = recurrent_layer("lstm", 4, name="lstm_0")(keras.ops.ones((2, 3, 5)))
    >>> tuple(outputs.shape), tuple(h.shape)
    ((2, 3, 4), (2, 4))
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}. Received: cell={cell!r}")
    return CELLS[cell](units, return_sequences=True, return_state=True, go_backwards=go_backwards,
                       recurrent_dropout=recurrent_dropout, zero_output_for_mask=True, name=name)


def fast_path_warnings(model) -> list[str]:
    """Why the recipe's `model` (a ModelConfig) keeps its recurrent layers off the fused kernels, if it does."""
    found = []
    if model.recurrent_dropout:
        found.append(f"model.recurrent_dropout: {model.recurrent_dropout} takes every {model.cell.upper()} layer off "
                     "the fused (cuDNN) kernel, several times slower on GPUs; model.dropout regularises between "
                     "layers and keeps it")
    if model.input_feeding:
        found.append("model.input_feeding: true steps the decoder through the target one token at a time in "
                     "training (each step reads the attention of the one before), slower than its fused layers")
    return found


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def check_dropout(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")
