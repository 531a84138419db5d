"""Decoding with the model's `encode` + `step`: greedy search, in backend-neutral Keras ops.

Runs eagerly or inside a `tf.function` (and so inside an exported graph).

>>> tokens, weights = greedy_search(model, source_ids, max_length=12)  # doctest: +SKIP
>>> tokens.shape, weights.shape  # [batch, 12], [batch, 12, source_steps]
"""

from __future__ import annotations

from keras import ops

from textseq.data.vocab import BOS, EOS, PAD


def greedy_search(model, source_ids, max_length: int):
    """Picks the most probable token at every step until EOS or `max_length` tokens.

    Returns `(tokens, weights)`: int32 `[batch, max_length]` ending with EOS where the model ended
    (PAD after it), and the attention weights `[batch, max_length, source_steps]` of each step.
    """
    memory, states = model.encode(source_ids)
    batch, source_steps = ops.shape(source_ids)[0], ops.shape(source_ids)[1]
    positions = ops.arange(max_length)

    def unfinished(i, previous, states, finished, tokens, weights):
        return ops.logical_and(i < max_length, ops.logical_not(ops.all(finished)))

    def advance(i, previous, states, finished, tokens, weights):
        logits, states, step_weights = model.step(previous, states, memory)
        next_ids = ops.where(finished, PAD, ops.cast(ops.argmax(logits, axis=-1), "int32"))
        at_i = ops.cast(ops.equal(positions, i), "int32")
        tokens = tokens + ops.expand_dims(next_ids, 1) * at_i
        weights = weights + ops.expand_dims(ops.cast(step_weights, "float32"), 1) * ops.cast(at_i, "float32")[:, None]
        return i + 1, next_ids, states, ops.logical_or(finished, ops.equal(next_ids, EOS)), tokens, weights

    start = (
        ops.convert_to_tensor(0, "int32"),
        ops.full((batch,), BOS, "int32"),
        states,
        ops.zeros((batch,), "bool"),
        ops.zeros((batch, max_length), "int32"),
        ops.zeros((batch, max_length, source_steps), "float32"),
    )
    _, _, _, _, tokens, weights = ops.while_loop(unfinished, advance, start)
    return tokens, weights
