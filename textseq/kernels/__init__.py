"""TensorFlow's speed path for textseq's models: the same results as the pure Keras layers, loss and
optimizers, computed faster on CPUs and TPUs. Training installs it (recipe `train.kernels: auto`,
the default, on the TensorFlow backend); `train.kernels: keras` leaves the pure Keras path.

- `recurrent`: LSTM and GRU loops with every matrix product that does not depend on the previous
  step hoisted out of the loop, forward and backward (under XLA for batches of one shape);
- `attention`: additive attention scores and their gradients fused under XLA;
- `loss`: the token cross-entropy with its gradient written out;
- `optimizers`: Keras' optimizers with exact, sparse gradient clipping;
- `xla`: the helpers they share.

`tests/kernels/` checks that each gives what the pure path gives: outputs, final states, gradients
and loss.

>>> model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 10, 12)  # doctest: +SKIP
>>> install(model)  # doctest: +SKIP
"""

from __future__ import annotations

import keras

from textseq.recipe import TrainConfig


def enabled(config: TrainConfig) -> bool:
    """Whether the recipe's `train.kernels` puts the speed path in: `auto` on the TensorFlow backend."""
    return config.kernels == "auto" and keras.backend.backend() == "tensorflow"


# A run of at least this many steps trains batches of every length on XLA loops: each new bucket
# of 16 lengths compiles a layer's loops (~1 s), and the fused steps save ~30 ms a step on the
# multi30k recipe, a few on small models. Shorter runs (the test suite's) keep the graph loops.
ANY_LENGTH_ON_XLA_FROM_STEPS = 1000


def install(model, planned_steps: int | None = None) -> None:
    """Puts the speed path into a `Seq2Seq`: the hoisted loops into its LSTM and GRU layers, the fused
    scores into its attention. Its weights, configuration and results stay what they were.
    `planned_steps`, the steps the run will train, decides whether batches of every length run their
    loops under XLA (`ANY_LENGTH_ON_XLA_FROM_STEPS`; None: they do)."""
    from textseq.kernels import attention, recurrent

    any_length = planned_steps is None or planned_steps >= ANY_LENGTH_ON_XLA_FROM_STEPS
    for layer in recurrent_layers(model):
        recurrent.install(layer, any_length)
    if hasattr(model.decoder.attention, "score_function"):  # additive scores (Luong's are one matrix product)
        model.decoder.attention.score_function = attention.additive_scores


def recurrent_layers(model) -> list[keras.layers.RNN]:
    """The LSTM and GRU layers of a `Seq2Seq`, each direction of a bidirectional one on its own."""
    found = []
    for rnn in [*model.encoder.rnns, *model.decoder.rnns]:
        found += [rnn.forward_layer, rnn.backward_layer] if isinstance(rnn, keras.layers.Bidirectional) else [rnn]
    return found


def token_loss(label_smoothing: float) -> keras.losses.Loss:
    """`textseq.metrics.token_loss`, computed by the speed path."""
    from textseq.kernels.loss import TokenLoss

    return TokenLoss(label_smoothing)
