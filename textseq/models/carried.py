"""Training and scoring a language model over consecutive windows: the decoder's states carried from
one batch to the next (truncated back-propagation through time).

`Seq2Seq` is stateless: the states to start from are an input of `logits_and_attention` and its
final states an output. `CarriedStates` keeps them between calls, one row per stream, for the
language-model pipeline whose batches continue each other row by row (`reset` marks the rows that
begin a stream). It shares the model's layers, so its weights are the model's.

>>> carried = CarriedStates(model, rows=32)  # doctest: +SKIP
>>> carried.compile(...); carried.fit(windows)  # doctest: +SKIP
"""

from __future__ import annotations

import keras
from keras import ops

from textseq.models.seq2seq import Seq2Seq


class CarriedStates(Seq2Seq):
    """A `Seq2Seq` over the layers of `model` that starts each row's decoder from that row's final
    states of the previous call (or the encoder's, where `reset`), and keeps its new final states.

    Args:
        model: the `Seq2Seq` whose encoder and decoder it runs (weights shared).
        rows: rows of one call (per replica, under a distribution strategy).

    Call arguments:
        inputs: `{"source", "target_in", "reset"}`, `reset` int `[rows]`: 1 where a stream begins.

    The states are variables kept per replica and outside the weights (checkpoints do not depend
    on the batch): create it inside the strategy's scope.
    """

    def __init__(self, model: Seq2Seq, rows: int, **kwargs):
        super().__init__(model.encoder, model.decoder, bridge=model.bridge or "copy",
                         share_embeddings=model.share_embeddings, name=kwargs.pop("name", model.name), **kwargs)
        # A plain list of lists: Keras tracks no variable held this way, so none enters the checkpoints.
        self._states = _Untracked([[keras.Variable(ops.zeros((rows, size)), trainable=False, dtype="float32",
                                                   synchronization="on_read", aggregation="mean",
                                                   name=f"carried_{i}_{j}") for j, size in enumerate(sizes)]
                                   for i, sizes in enumerate(model.decoder.state_sizes())])

    def call(self, inputs, training=False):
        if "reset" not in inputs:  # a batch of its own (the one that builds the weights): nothing to carry
            return super().call(inputs, training=training)
        logits, _, final_states = self.logits_and_attention(
            inputs["source"], inputs["target_in"], training=training,
            initial_states=[[variable.value for variable in layer] for layer in self._states.value],
            reset=inputs["reset"], return_states=True)
        for layer_states, layer_variables in zip(final_states, self._states.value):
            for state, variable in zip(layer_states, layer_variables):
                variable.assign(ops.cast(ops.stop_gradient(state), "float32"))
        return logits


class _Untracked:
    """Holds a value out of sight of Keras' attribute tracking."""

    def __init__(self, value):
        self.value = value
