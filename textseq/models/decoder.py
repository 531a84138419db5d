"""Decoder: LSTM/GRU stack, then attention over the encoder outputs, then the logits.

Training runs the recurrent stack over the whole target at once (the fused kernel), then scores
every decoder output against every encoder output in one batched computation. `step` runs the same
weights one token at a time for decoding. With input feeding (Luong et al., 2015) each step also
reads the previous step's attentional vector, so training steps through time as decoding does.
"""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD
from textseq.layers.attention import BahdanauAttention
from textseq.layers.dense import Dense, Logits
from textseq.layers.luong import LuongAttention
from textseq.layers.tied import TiedLogits
from textseq.models.embedding import token_embedding
from textseq.models.recurrent import check_dropout, check_positive, recurrent_layer
from textseq.models.stepping import Stepping


@keras.saving.register_keras_serializable(package="textseq")
class Decoder(Stepping, keras.layers.Layer):
    """Predicts the next target token from the previous ones, attending over the source; one token
    at a time for decoding with `step` (see `Stepping`).

    Args:
        vocab_size: number of target token ids (id 0 is padding).
        embedding_dim: size of the token embeddings.
        units: recurrent units per layer.
        attention: a `BahdanauAttention` or `LuongAttention` layer (or its serialized config).
        cell: "lstm" or "gru".
        num_layers: stacked recurrent layers, each started from the encoder layer's final state.
        dropout: dropout on embeddings, between layers and before the output.
        recurrent_dropout: dropout on the recurrent state (leaves the fused kernels; see recurrent.py).
        tie_embeddings: score tokens with the embedding matrix (`TiedLogits`) instead of a matrix of their own.
        input_feeding: feed each step the previous step's attentional vector beside its token; the
            states then end with one more entry, `[attentional]` (`start_states` adds it).

    Call arguments:
        token_ids: int `[batch, steps]`, the target shifted right (BOS first), right-padded with 0.
        initial_states: per layer, the list of its initial states (`start_states` of the encoder's).
        encoder_outputs: `[batch, source_steps, units]`.
        encoder_mask: boolean `[batch, source_steps]`, False on source padding.

        return_states: also return the final states, per layer (what `initial_states` takes).

    Output:
        `(logits, weights)`: logits `[batch, steps, vocab_size]` (float32), attention weights
        `[batch, steps, source_steps]`; with `return_states`, `(logits, weights, states)`.

    >>> decoder = Decoder(vocab_size=10, embedding_dim=4, units=6, attention=BahdanauAttention(5))
    >>> h = ops.zeros((1, 6))
    >>> logits, weights = decoder(ops.array([[2, 5]]), [[h, h]], ops.zeros((1, 3, 6)), ops.ones((1, 3), "bool"))
    >>> tuple(logits.shape), tuple(weights.shape)
    ((1, 2, 10), (1, 2, 3))
    """

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, attention, cell: str = "lstm",
                 num_layers: int = 1, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 tie_embeddings: bool = False, input_feeding: bool = False, embedding_init: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, units=units, num_layers=num_layers)
        check_dropout(dropout=dropout, recurrent_dropout=recurrent_dropout)
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        if not isinstance(attention, (BahdanauAttention, LuongAttention)):
            raise ValueError("attention must be a BahdanauAttention or LuongAttention layer. "
                             f"Received: attention={attention!r}")
        if input_feeding and recurrent_dropout:
            raise ValueError("input_feeding steps the cells one at a time, without recurrent dropout. "
                             f"Received: recurrent_dropout={recurrent_dropout}")
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units
        self.cell, self.num_layers, self.dropout, self.recurrent_dropout = cell, num_layers, dropout, recurrent_dropout
        self.tie_embeddings, self.input_feeding, self.embedding_init = tie_embeddings, input_feeding, embedding_init

        # Masks come from the ids (id 0 is padding) and are passed explicitly to every layer.
        self.embedding = token_embedding(vocab_size, embedding_dim, embedding_init)
        self.rnns = [recurrent_layer(cell, units, name=f"{cell}_{i}", recurrent_dropout=recurrent_dropout)
                     for i in range(num_layers)]
        self.attention = attention
        self.combine = Dense(units, activation="tanh", name="combine")
        # Logits are float32 under mixed precision (the product is not), so the softmax and the loss are too.
        self.logits = (TiedLogits(self.embedding, name="logits") if tie_embeddings
                       else Logits(vocab_size, name="logits"))
        self.drop = keras.layers.Dropout(dropout)

    def build(self, token_ids_shape, initial_states_shape, encoder_outputs_shape, encoder_mask_shape):
        self.embedding.build(token_ids_shape)
        features = self.embedding_dim + (self.units if self.input_feeding else 0)
        for rnn in self.rnns:
            rnn.build((*token_ids_shape, features))
            features = self.units
        query_shape = (*token_ids_shape, self.units)
        if not self.attention.built:  # a deserialized attention layer arrives built
            self.attention.build(query_shape, encoder_outputs_shape)
        self.combine.build((*token_ids_shape, self.units + encoder_outputs_shape[-1]))
        self.logits.build((*token_ids_shape, self.units))

    def call(self, token_ids, initial_states, encoder_outputs, encoder_mask, training=False, return_states=False):
        attentional, weights, final_states = self.attend(token_ids, initial_states, encoder_outputs, encoder_mask,
                                                         training=training)
        logits = self.logits(self.drop(attentional, training=training))
        return (logits, weights, final_states) if return_states else (logits, weights)

    def attend(self, token_ids, initial_states, encoder_outputs, encoder_mask, training=False):
        """`call` up to the output layer: (attentional vectors `[batch, steps, units]`, attention
        weights, final states per layer). For callers that need the logits of a few steps only:
        `self.logits(attentional[:, -1])` scores the last one.
        """
        mask = ops.not_equal(token_ids, PAD)
        x = self.drop(self.embedding(token_ids), training=training)
        if self.input_feeding:
            return self.input_fed(x, mask, initial_states, encoder_outputs, encoder_mask, training)
        final_states = []
        for rnn, states in zip(self.rnns, initial_states):
            x, *layer_states = rnn(x, initial_state=states, mask=mask, training=training)
            final_states.append(layer_states)  # at each row's last real step: padding leaves states alone
            x = self.drop(x, training=training)
        context, weights = self.attention(x, encoder_outputs, keys_mask=encoder_mask, training=training)
        return self._attentional(x, context), weights, final_states

    def _attentional(self, x, context):
        return self.combine(ops.concatenate([x, context], axis=-1))

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim, "units": self.units,
            "attention": keras.saving.serialize_keras_object(self.attention), "cell": self.cell,
            "num_layers": self.num_layers, "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "tie_embeddings": self.tie_embeddings, "input_feeding": self.input_feeding,
            "embedding_init": self.embedding_init,
        }
