"""Bridge: how the decoder starts from the encoder's final states when it is not their copy."""

from __future__ import annotations

import keras
from keras import ops

from textseq.layers.dense import Dense

KINDS = ("copy", "dense", "zero")


@keras.saving.register_keras_serializable(package="textseq")
class Bridge(keras.layers.Layer):
    """Maps the encoder's final states (per layer, `[h, c]` or `[h]`) to decoder states of `units`:
    a learned linear map per state ("dense", as OpenNMT-tf's DenseBridge) or zeros ("zero").
    A "copy" bridge is no layer at all: the decoder takes the encoder's states as they are.

    Args:
        kind: "dense" or "zero".
        units: the decoder's units.
        cell: "lstm" (two states per layer) or "gru" (one).
        num_layers: layers of the encoder and of the decoder.

    >>> bridge = Bridge("dense", units=3, cell="gru", num_layers=1)
    >>> [[tuple(s.shape) for s in layer] for layer in bridge([[ops.ones((2, 8))]])]
    [[(2, 3)]]
    """

    def __init__(self, kind: str, units: int, cell: str = "lstm", num_layers: int = 1, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS[1:]:
            raise ValueError(f"kind must be one of {', '.join(KINDS[1:])} (copy needs no layer). Received: kind={kind!r}")
        self.kind, self.units, self.cell, self.num_layers = kind, units, cell, num_layers
        per_layer = 2 if cell == "lstm" else 1
        self.maps = [[Dense(units, name=f"layer_{i}_state_{j}") for j in range(per_layer)]
                     for i in range(num_layers)] if kind == "dense" else []

    def build(self, states_shape):
        for maps, shapes in zip(self.maps, states_shape):
            for dense, shape in zip(maps, shapes):
                dense.build(shape)

    def call(self, states):
        if self.kind == "zero":
            return [[ops.zeros((ops.shape(state)[0], self.units), state.dtype) for state in layer] for layer in states]
        return [[dense(state) for dense, state in zip(maps, layer)] for maps, layer in zip(self.maps, states)]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units, "cell": self.cell,
                "num_layers": self.num_layers}
