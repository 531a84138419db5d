"""The recurrent layers shared by encoder and decoder, built on the fused-kernel path.

Keras picks the fused kernels (cuDNN on GPU) only for the default activations, no recurrent
dropout, no unrolling, a bias, `reset_after=True` for GRU and right-padded masks; these
constructors keep to that, so no recipe setting can leave the fast path.
"""

from __future__ import annotations

import keras

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def recurrent_layer(cell: str, units: int, name: str, go_backwards: bool = False) -> keras.layers.RNN:
    """An LSTM or GRU layer that returns its whole output sequence and its final states."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}. Received: cell={cell!r}")
    return CELLS[cell](units, return_sequences=True, return_state=True, go_backwards=go_backwards, name=name)


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
