"""Seq2Seq: the keras.Model joining an Encoder and a Decoder; teacher-forced `call`, `encode` + `step` for decoding."""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD
from textseq.layers.attention import BahdanauAttention
from textseq.layers.luong import LuongAttention
from textseq.models.bridge import Bridge
from textseq.models.decoder import Decoder
from textseq.models.encoder import Encoder
from textseq.recipe import ModelConfig


@keras.saving.register_keras_serializable(package="textseq")
class Seq2Seq(keras.Model):
    """An encoder-decoder with attention.

    Args:
        encoder: an `Encoder` (or its serialized config).
        decoder: a `Decoder` with as many layers of the same cell as the encoder.
        bridge: how the decoder starts from the encoder's final states: "copy" (decoder units equal
            to the encoder's), "dense" (a learned map, see `Bridge`) or "zero"; or a `Bridge` layer.
        share_embeddings: the encoder reads tokens with the decoder's embedding (source and target
            share one vocabulary).

    Call arguments:
        inputs: `{"source": ids[batch, S], "target_in": ids[batch, T]}`, right-padded with 0.

    Output:
        logits `[batch, T, target_vocab]`, float32.

    >>> model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 10, 12)
    >>> logits = model({"source": ops.array([[4, 5, 0]]), "target_in": ops.array([[2, 6]])})
    >>> tuple(logits.shape)
    (1, 2, 12)
    """

    def __init__(self, encoder, decoder, bridge: str = "copy", share_embeddings: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(decoder, dict):
            decoder = keras.saving.deserialize_keras_object(decoder)
        if isinstance(encoder, dict):
            shared = {"embedding": decoder.embedding} if share_embeddings else {}
            encoder = Encoder.from_config({**encoder.get("config", encoder), **shared})
        if encoder.num_layers != decoder.num_layers or encoder.cell != decoder.cell:
            raise ValueError(
                "encoder and decoder must agree on num_layers and cell (the decoder starts from the encoder's "
                f"states). Received: encoder {encoder.num_layers}/{encoder.cell}, decoder {decoder.num_layers}/{decoder.cell}")
        if isinstance(bridge, str) and bridge == "copy" and encoder.units != decoder.units:
            raise ValueError(f"a copy bridge needs decoder units equal to the encoder's; use bridge='dense' or 'zero'. "
                             f"Received: encoder units {encoder.units}, decoder units {decoder.units}")
        if share_embeddings and encoder.embedding is not decoder.embedding:
            raise ValueError("share_embeddings needs an encoder built with embedding=decoder.embedding")
        self.encoder = encoder
        self.decoder = decoder
        self.share_embeddings = share_embeddings
        # A copy bridge is no layer: the weights files of models without one stay as they were.
        if isinstance(bridge, Bridge):  # another model's (CarriedStates shares the layers it runs)
            self.bridge, self.bridge_kind = bridge, bridge.kind
        else:
            self.bridge_kind = bridge
            self.bridge = None if bridge == "copy" else Bridge(bridge, decoder.units, decoder.cell,
                                                               decoder.num_layers, name="bridge")

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
        states = self.start_states(states)
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
        }, self.start_states(states)

    def start_states(self, encoder_states):
        """The decoder's initial states (the structure `step` takes) from the encoder's final states."""
        return self.decoder.start_states(encoder_states if self.bridge is None else self.bridge(encoder_states))

    def step(self, token_ids, states, memory):
        """One decoding step from `encode`'s memory: logits `[batch, vocab]`, new states, weights."""
        return self.decoder.step(token_ids, states, memory["outputs"], memory["projected_keys"], memory["mask"])

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "bridge": self.bridge_kind, "share_embeddings": self.share_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_seq2seq(config: ModelConfig, source_vocab_size: int, target_vocab_size: int,
                  one_vocabulary: bool = False) -> Seq2Seq:
    """The model a recipe's `model` section describes; `one_vocabulary`: source and target share
    theirs (`vocab.shared`), so `model.tie_embeddings` ties the encoder's embedding too."""
    units = config.decoder_units or config.units
    attention = (BahdanauAttention(config.attention_units, name="attention") if config.attention == "additive"
                 else LuongAttention(units, score=config.attention, name="attention"))

    def decoder():
        return Decoder(target_vocab_size, config.embedding_dim, units, attention=attention, cell=config.cell,
                       num_layers=config.layers, dropout=config.dropout, recurrent_dropout=config.recurrent_dropout,
                       tie_embeddings=config.tie_embeddings, input_feeding=config.input_feeding,
                       embedding_init=config.embedding_init, name="decoder")

    def encoder(embedding=None):
        return Encoder(source_vocab_size, config.embedding_dim, config.units, cell=config.cell,
                       num_layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout,
                       recurrent_dropout=config.recurrent_dropout, embedding=embedding,
                       embedding_init=config.embedding_init, name="encoder")

    share = config.tie_embeddings and one_vocabulary
    if share:  # the decoder owns the one embedding
        target = decoder()
        return Seq2Seq(encoder(target.embedding), target, bridge=config.bridge, share_embeddings=True, name="seq2seq")
    return Seq2Seq(encoder(), decoder(), bridge=config.bridge, name="seq2seq")
