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
        logits, _ = self.logits_and_attention(inputs["source"], inputs["target_in"], training=training)
        return logits

    def logits_and_attention(self, source, target_in, training=False, initial_states=None, reset=None,
                             return_states=False):
        """Teacher-forced logits `[batch, T, vocab]` and attention weights `[batch, T, S]`.

        The decoder starts from the encoder's final states, or, with `initial_states` (per layer, as
        `return_states` gives them), from those on every row where `reset` `[batch]` is false
        (truncated back-propagation through time: no gradient flows into them). `return_states`
        adds the decoder's final states.
        """
        outputs, states = self.encoder(source, training=training)
        if initial_states is not None:
            keep_encoder = ops.expand_dims(ops.cast(reset, "bool"), -1)
            states = [[ops.where(keep_encoder, state, ops.cast(ops.stop_gradient(given), state.dtype))
                       for state, given in zip(layer_states, layer_given)]
                      for layer_states, layer_given in zip(states, initial_states)]
        return self.decoder(target_in, states, outputs, ops.not_equal(source, PAD), training=training,
                            return_states=return_states)

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
