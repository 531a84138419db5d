"""Decoder: LSTM/GRU stack, then additive attention over the encoder outputs, then the logits.

Training runs the recurrent stack over the whole target at once (the fused kernel), then scores
every decoder output against every encoder output in one batched computation. `step` runs the same
weights one token at a time for decoding.
"""

from __future__ import annotations

import keras
from keras import ops

from textseq.constants import PAD
from textseq.layers.attention import BahdanauAttention
from textseq.layers.dense import Dense
from textseq.models.recurrent import check_dropout, check_positive, recurrent_layer


@keras.saving.register_keras_serializable(package="textseq")
class Decoder(keras.layers.Layer):
    """Predicts the next target token from the previous ones, attending over the source.

    Args:
        vocab_size: number of target token ids (id 0 is padding).
        embedding_dim: size of the token embeddings.
        units: recurrent units per layer (equal to the encoder's output size).
        attention: a `BahdanauAttention` layer (or its serialized config).
        cell: "lstm" or "gru".
        num_layers: stacked recurrent layers, each started from the encoder layer's final state.
        dropout: dropout on embeddings, between layers and before the output.
        recurrent_dropout: dropout on the recurrent state (leaves the fused kernels; see recurrent.py).

    Call arguments:
        token_ids: int `[batch, steps]`, the target shifted right (BOS first), right-padded with 0.
        initial_states: per layer, the list of encoder final states.
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
                 num_layers: int = 1, dropout: float = 0.0, recurrent_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, units=units, num_layers=num_layers)
        check_dropout(dropout=dropout, recurrent_dropout=recurrent_dropout)
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        if not isinstance(attention, BahdanauAttention):
            raise ValueError(f"attention must be a BahdanauAttention layer. Received: attention={attention!r}")
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units
        self.cell, self.num_layers, self.dropout, self.recurrent_dropout = cell, num_layers, dropout, recurrent_dropout

        # Masks come from the ids (id 0 is padding) and are passed explicitly to every layer.
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.rnns = [recurrent_layer(cell, units, name=f"{cell}_{i}", recurrent_dropout=recurrent_dropout)
                     for i in range(num_layers)]
        self.attention = attention
        self.combine = Dense(units, activation="tanh", name="combine")
        # Logits stay float32 under mixed precision, so the softmax and the loss do too.
        self.logits = Dense(vocab_size, dtype="float32", name="logits")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, token_ids_shape, initial_states_shape, encoder_outputs_shape, encoder_mask_shape):
        self.embedding.build(token_ids_shape)
        features = self.embedding_dim
        for rnn in self.rnns:
            rnn.build((*token_ids_shape, features))
            features = self.units
        query_shape = (*token_ids_shape, self.units)
        if not self.attention.built:  # a deserialized attention layer arrives built
            self.attention.build(query_shape, encoder_outputs_shape)
        self.combine.build((*token_ids_shape, self.units + encoder_outputs_shape[-1]))
        self.logits.build((*token_ids_shape, self.units))

    def call(self, token_ids, initial_states, encoder_outputs, encoder_mask, training=False, return_states=False):
        mask = ops.not_equal(token_ids, PAD)
        x = self.drop(self.embedding(token_ids), training=training)
        final_states = []
        for rnn, states in zip(self.rnns, initial_states):
            x, *layer_states = rnn(x, initial_state=states, mask=mask, training=training)
            final_states.append(layer_states)  # at each row's last real step: padding leaves states alone
            x = self.drop(x, training=training)
        context, weights = self.attention(x, encoder_outputs, keys_mask=encoder_mask, training=training)
        if return_states:
            return self._output(x, context, training), weights, final_states
        return self._output(x, context, training), weights

    def step(self, token_ids, states, encoder_outputs, projected_keys, encoder_mask):
        """One decoding step: token ids `[batch]` -> logits `[batch, vocab]`, new states, weights `[batch, source_steps]`.

        `projected_keys` is `attention.project_keys(encoder_outputs)`, computed once per source.
        """
        x = self.embedding(token_ids)
        new_states = []
        for rnn, layer_states in zip(self.rnns, states):
            x, layer_states = rnn.cell(x, list(layer_states), training=False)
            new_states.append(list(layer_states))
        query = ops.expand_dims(x, 1)
        weights = self.attention.attention_weights(query, projected_keys, encoder_mask)
        context = ops.matmul(weights, encoder_outputs)
        logits = self._output(query, context, training=False)
        return logits[:, 0], new_states, weights[:, 0]

    def _output(self, x, context, training):
        combined = self.combine(ops.concatenate([x, context], axis=-1))
        return self.logits(self.drop(combined, training=training))

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim, "units": self.units,
            "attention": keras.saving.serialize_keras_object(self.attention), "cell": self.cell,
            "num_layers": self.num_layers, "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
        }
