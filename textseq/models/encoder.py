"""Encoder: token embedding, then 1..N stacked (optionally bidirectional) LSTM or GRU layers."""

from __future__ import annotations

import functools

import keras
from keras import ops

from textseq.constants import PAD
from textseq.models.embedding import token_embedding
from textseq.models.recurrent import check_dropout, check_positive, recurrent_layer


@keras.saving.register_keras_serializable(package="textseq")
class Encoder(keras.layers.Layer):
    """Reads source token ids into one output vector per token and a final state per layer.

    Args:
        vocab_size: number of source token ids (id 0 is padding and is masked).
        embedding_dim: size of the token embeddings.
        units: output size of every layer; a bidirectional layer gives each direction half.
        cell: "lstm" or "gru".
        num_layers: stacked recurrent layers.
        bidirectional: read the source in both directions (concatenating their outputs/states).
        dropout: dropout on the embeddings and on every layer's output.
        recurrent_dropout: dropout on the recurrent state (leaves the fused kernels; see recurrent.py).
        embedding: a `keras.layers.Embedding` to read tokens with (shared with a decoder: a language
            model's weight tying) instead of one of its own; not part of the config.

    Call arguments:
        token_ids: int `[batch, steps]`, right-padded with 0.
        training: whether dropout is active.

    Output:
        `(outputs, states)`: outputs `[batch, steps, units]`; states, per layer, the list of
        final state tensors `[batch, units]` (`[h, c]` for LSTM, `[h]` for GRU).

    >>> encoder = Encoder(vocab_size=10, embedding_dim=4, units=6, bidirectional=True)
    >>> outputs, states = encoder(ops.array([[5, 6, 7, 0]]))
    >>> tuple(outputs.shape), [tuple(s.shape) for s in states[0]]
    ((1, 4, 6), [(1, 6), (1, 6)])
    """

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, cell: str = "lstm",
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, embedding: keras.layers.Embedding | None = None,
                 embedding_init: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, units=units, num_layers=num_layers)
        check_dropout(dropout=dropout, recurrent_dropout=recurrent_dropout)
        if bidirectional and units % 2:
            raise ValueError(f"units must be even when bidirectional. Received: units={units}")
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units
        self.cell, self.num_layers, self.bidirectional, self.dropout = cell, num_layers, bidirectional, dropout
        self.recurrent_dropout, self.embedding_init = recurrent_dropout, embedding_init
        layer = functools.partial(recurrent_layer, cell, recurrent_dropout=recurrent_dropout)

        # Masks come from the ids (id 0 is padding) and are passed explicitly to every layer.
        if embedding is not None and (embedding.input_dim, embedding.output_dim) != (vocab_size, embedding_dim):
            raise ValueError(f"a shared embedding must be {vocab_size} x {embedding_dim}. "
                             f"Received: {embedding.input_dim} x {embedding.output_dim}")
        self.embedding = embedding or token_embedding(vocab_size, embedding_dim, embedding_init)
        if bidirectional:
            self.rnns = [
                keras.layers.Bidirectional(
                    layer(units // 2, name=f"{cell}_{i}_forward"),
                    backward_layer=layer(units // 2, name=f"{cell}_{i}_backward", go_backwards=True),
                    merge_mode="concat", name=f"bidirectional_{i}")
                for i in range(num_layers)
            ]
        else:
            self.rnns = [layer(units, name=f"{cell}_{i}") for i in range(num_layers)]
        self.drop = keras.layers.Dropout(dropout)

    def build(self, token_ids_shape):
        if not self.embedding.built:
            self.embedding.build(token_ids_shape)
        features = self.embedding_dim
        for rnn in self.rnns:
            rnn.build((*token_ids_shape, features))
            features = self.units

    def call(self, token_ids, training=False):
        mask = ops.not_equal(token_ids, PAD)
        x = self.drop(self.embedding(token_ids), training=training)
        states = []
        for rnn in self.rnns:
            x, *layer_states = rnn(x, mask=mask, training=training)
            if self.bidirectional:
                half = len(layer_states) // 2
                layer_states = [ops.concatenate([f, b], axis=-1)
                                for f, b in zip(layer_states[:half], layer_states[half:])]
            states.append(list(layer_states))
            x = self.drop(x, training=training)
        return x, states

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim, "units": self.units,
            "cell": self.cell, "num_layers": self.num_layers, "bidirectional": self.bidirectional,
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "embedding_init": self.embedding_init,
        }
