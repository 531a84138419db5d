"""Seq2Seq: the keras.Model joining an Encoder and a Decoder; teacher-forced `call`, `encode` + `step` for decoding."""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD
from textseq.layers.attention import BahdanauAttention
from textseq.models.decoder import Decoder
from textseq.models.encoder import Encoder
from textseq.recipe import ModelConfig


@keras.saving.register_keras_serializable(package="textseq")
class Seq2Seq(keras.Model):
    """An encoder-decoder with additive attention.

    Args:
        encoder: an `Encoder` (or its serialized config).
        decoder: a `Decoder` whose units equal the encoder's.

    Call arguments:
        inputs: `{"source": ids[batch, S], "target_in": ids[batch, T]}`, right-padded with 0.

    Output:
        logits `[batch, T, target_vocab]`, float32.

    >>> model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 10, 12)
    >>> logits = model({"source": ops.array([[4, 5, 0]]), "target_in": ops.array([[2, 6]])})
    >>> tuple(logits.shape)
    (1, 2, 12)
    """

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self._carried = None
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if isinstance(decoder, dict):
            decoder = keras.saving.deserialize_keras_object(decoder)
        if encoder.units != decoder.units or encoder.num_layers != decoder.num_layers or encoder.cell != decoder.cell:
            raise ValueError(
                "encoder and decoder must agree on units, num_layers and cell (the decoder starts from "
                f"the encoder's states). Received: encoder {encoder.units}/{encoder.num_layers}/{encoder.cell}, "
                f"decoder {decoder.units}/{decoder.num_layers}/{decoder.cell}")
        self.encoder = encoder
        self.decoder = decoder

    def call(self, inputs, training=False):
        if "reset" in inputs and self._carried is not None:
            logits, _, final_states = self.logits_and_attention(
                inputs["source"], inputs["target_in"], training=training, reset=inputs["reset"], return_states=True)
            self._carried.keep(final_states)
            return logits
        logits, _ = self.logits_and_attention(inputs["source"], inputs["target_in"], training=training)
        return logits

    def logits_and_attention(self, source, target_in, training=False, reset=None, return_states=False):
        """Teacher-forced logits `[batch, T, vocab]` and attention weights `[batch, T, S]`.

        With `reset` `[batch]` (after `carry_states`), rows where it is false start the decoder from
        the states carried from the previous call instead of the encoder's.
        """
        outputs, states = self.encoder(source, training=training)
        if reset is not None:
            states = self._carried.initial_states(states, reset)
        return self.decoder(target_in, states, outputs, ops.not_equal(source, PAD), training=training,
                            return_states=return_states)

    def carry_states(self, batch_size: int | None) -> None:
        """Carries the decoder's final states from one call to the next for inputs with a `reset` flag
        (truncated back-propagation through time); `batch_size` is the rows of one call (per replica).
        None stops carrying. Call it inside the strategy's scope: each replica keeps its own states.
        """
        self._carried = None if batch_size is None else CarriedStates(self.decoder, batch_size)

    def encode(self, source):
        """What every decoding step needs about the source, as a dict of tensors."""
        outputs, states = self.encoder(source, training=False)
        return {
            "outputs": outputs,
            "projected_keys": self.decoder.attention.project_keys(outputs),
            "mask": ops.not_equal(source, PAD),
        }, states

    def step(self, token_ids, states, memory):
        """One decoding step from `encode`'s memory: logits `[batch, vocab]`, new states, weights."""
        return self.decoder.step(token_ids, states, memory["outputs"], memory["projected_keys"], memory["mask"])

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class CarriedStates:
    """The decoder's final states of the last call, one variable per state tensor, kept per replica
    (synchronized on read) and outside the model's weights, so checkpoints do not depend on the batch.
    """

    def __init__(self, decoder: Decoder, batch_size: int):
        per_layer = 2 if decoder.cell == "lstm" else 1
        self.variables = [[keras.Variable(ops.zeros((batch_size, decoder.units)), trainable=False, dtype="float32",
                                          synchronization="on_read", aggregation="mean", name=f"carried_{i}_{j}")
                           for j in range(per_layer)] for i in range(decoder.num_layers)]

    def initial_states(self, encoder_states, reset):
        """Per row: the encoder's states where `reset`, else the carried ones (no gradient flows back)."""
        reset = ops.expand_dims(ops.cast(reset, "bool"), -1)
        return [[ops.where(reset, state, ops.cast(ops.stop_gradient(variable.value), state.dtype))
                 for state, variable in zip(layer_states, layer_variables)]
                for layer_states, layer_variables in zip(encoder_states, self.variables)]

    def keep(self, final_states) -> None:
        for layer_states, layer_variables in zip(final_states, self.variables):
            for state, variable in zip(layer_states, layer_variables):
                variable.assign(ops.cast(ops.stop_gradient(state), "float32"))


def build_seq2seq(config: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
    """The model a recipe's `model` section describes."""
    encoder = Encoder(source_vocab_size, config.embedding_dim, config.units, cell=config.cell,
                      num_layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout,
                      recurrent_dropout=config.recurrent_dropout, name="encoder")
    decoder = Decoder(target_vocab_size, config.embedding_dim, config.units,
                      attention=BahdanauAttention(config.attention_units, name="attention"),
                      cell=config.cell, num_layers=config.layers, dropout=config.dropout,
                      recurrent_dropout=config.recurrent_dropout, name="decoder")
    return Seq2Seq(encoder, decoder, name="seq2seq")
