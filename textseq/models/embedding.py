"""The token embedding of the encoder and the decoder, and how its values start (model.embedding_init)."""

from __future__ import annotations

import keras

EMBEDDING_INITS = ("uniform", "normal")


def token_embedding(vocab_size: int, embedding_dim: int, init: str = "uniform") -> keras.layers.Embedding:
    """A `vocab_size` x `embedding_dim` embedding named "embedding". `init`: "uniform" is Keras' default
    (uniform in +-0.05); "normal" draws from a normal of standard deviation 1 / sqrt(embedding_dim),
    so that a token's vector has about unit length (the scale tied output layers use), which the
    recurrent layers and attention learn from sooner than from Keras' small values.

    >>> vectors = token_embedding(4000, 64, "normal")(keras.ops.arange(4000))
    >>> round(float(keras.ops.std(vectors)) * 64 ** 0.5, 1)
    1.0
    """
    if init not in EMBEDDING_INITS:
        raise ValueError(f"embedding_init must be one of {', '.join(EMBEDDING_INITS)}. Received: {init!r}")
    initializer = keras.initializers.RandomNormal(stddev=embedding_dim ** -0.5) if init == "normal" else "uniform"
    return keras.layers.Embedding(vocab_size, embedding_dim, embeddings_initializer=initializer, name="embedding")
