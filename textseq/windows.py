"""A language model reading a text the way training reads its stream: window by window.

Position p of a text is predicted in window p // T (T = `data.continuation`): the encoder reads the
`data.context` tokens before the window's start, and the decoder begins at the window's start,
from the state it ended the previous window with (`data.carry_state`) or from the encoder's
states, and reads the tokens from there to p - 1. `read_texts` runs exactly this a window at a time,
each window's tokens in one pass of the recurrent layers (as training reads them), and scores only
the position after each text: what `predict`, the web API and the export's `next_words` ask.
`walk_windows` runs it one step per position, for a batch of texts in lockstep (so every row crosses
window borders together), and goes on past the end of each text, generating. What they answer is
what `evaluate` scores.

>>> logits = read_texts(model, ids, lengths, context=64, continuation=128, carry=True)  # doctest: +SKIP
>>> logits, produced = walk_windows(model, ids, lengths, context=64, continuation=128, carry=True, new_tokens=20)  # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from textseq.constants import BOS, PAD


def window_source(buffer: tf.Tensor, start: tf.Tensor, context: int) -> tf.Tensor:
    """The `context` tokens before position `start` of every row, right-padded to `context` steps."""
    first = tf.maximum(start - context, 0)
    positions = first + tf.range(context)
    real = tf.range(context) < start - first
    taken = tf.gather(buffer, tf.minimum(positions, tf.maximum(tf.shape(buffer)[1] - 1, 0)), axis=1)
    return tf.where(real[None, :], taken, PAD)


def read_texts(model, ids: tf.Tensor, lengths: tf.Tensor, context: int, continuation: int,
               carry: bool) -> tf.Tensor:
    """The logits `[batch, vocab]` (float32) of the token after each text, as `walk_windows` gives them.

    Reads a window per iteration: the encoder the context before it (only as many steps as the
    longest row has, so a first window costs one padded step), the decoder every position of it up
    to each row's end in one call, and the output layer once, at the position after the text. A
    text's own window is the last one read; without carried states only that window is read.

    Args:
        ids: int32 `[batch, steps]`, the texts' token ids, right-padded.
        lengths: int32 `[batch]`, each text's number of tokens.
        carry: whether the decoder's state goes on across window borders.
    """
    return read_to_the_end(model, ids, lengths, context, continuation, carry)[0]


def read_to_the_end(model, ids: tf.Tensor, lengths: tf.Tensor, context: int, continuation: int, carry: bool):
    """`read_texts`, with what `read_on` needs to go on reading each text in its own window:
    `(logits, decoder states after each text, the last window's encoder outputs and source mask)`.
    The outputs and mask are each row's own only where the rows end in one window (one text)."""
    ids = tf.cast(ids, tf.int32)
    lengths = tf.cast(lengths, tf.int32)
    batch = tf.shape(ids)[0]
    own_window = lengths // continuation  # position `length` is predicted there
    last = tf.reduce_max(tf.concat([own_window, [0]], 0))
    first = 0 if carry else tf.reduce_min(tf.concat([own_window, [last]], 0))
    width = (last + 1) * continuation
    # What the decoder reads at each position p: the token before it, <s> at 0; PAD past a row's end.
    previous = tf.concat([tf.fill([batch, 1], BOS), ids[:, :tf.maximum(width - 1, 0)]], axis=1)
    previous = tf.pad(previous, [[0, 0], [0, width - tf.shape(previous)[1]]])
    previous = tf.where(tf.range(width)[None, :] <= lengths[:, None], previous, PAD)
    buffer = tf.pad(ids, [[0, 0], [0, tf.maximum(width - tf.shape(ids)[1], 0)]])
    decoder = model.decoder

    def read_window(w, states, logits, outputs, source_mask):
        start = w * continuation
        source = window_source(buffer, start, context)[:, :tf.maximum(tf.minimum(start, context), 1)]
        outputs, encoder_states = model.encoder(source, training=False)
        source_mask = tf.not_equal(source, PAD)
        encoder_states = model.start_states(encoder_states)
        if carry:
            states = tf.nest.map_structure(lambda carried, fresh: tf.where(w > first, carried, fresh),
                                           states, encoder_states)
        else:
            states = encoder_states
        steps = tf.clip_by_value(tf.reduce_max(lengths) - start + 1, 1, continuation)  # none past the longest text
        attentional, _, states = decoder.attend(previous[:, start:start + steps], states, outputs, source_mask)
        # Assumes a row is read up to its own window: a row that ended earlier keeps its logits.
        here = tf.equal(own_window, w)
        at_end = tf.gather(attentional, tf.clip_by_value(lengths - start, 0, steps - 1), batch_dims=1)
        logits = tf.where(here[:, None], tf.cast(decoder.logits(at_end), tf.float32), logits)
        return w + 1, [list(layer) for layer in states], logits, outputs, source_mask

    dtype = decoder.compute_dtype
    start_states = [[tf.zeros([batch, size], dtype) for size in layer] for layer in decoder.state_sizes()]
    loop_vars = (tf.convert_to_tensor(first, tf.int32), start_states, tf.zeros([batch, decoder.vocab_size], tf.float32),
                 tf.zeros([batch, 1, model.encoder.units], dtype), tf.zeros([batch, 1], tf.bool))
    shapes = tf.nest.map_structure(lambda tensor: tf.TensorShape([None] * len(tensor.shape)), loop_vars)
    _, states, logits, outputs, source_mask = tf.while_loop(lambda w, *_: w <= last, read_window, loop_vars,
                                                            shape_invariants=shapes)
    return logits, states, outputs, source_mask


def read_on(model, previous_ids: tf.Tensor, states, outputs: tf.Tensor, source_mask: tf.Tensor):
    """Goes on reading texts that `read_to_the_end` read, in the same window: `previous_ids`
    `[batch, n]` are the tokens before the next n positions (the last n - 1 known ones and the one
    typed since, say). Returns the logits after the last of them and the decoder states there."""
    attentional, _, states = model.decoder.attend(tf.cast(previous_ids, tf.int32), states, outputs, source_mask)
    return tf.cast(model.decoder.logits(attentional[:, -1]), tf.float32), [list(layer) for layer in states]


def walk_windows(model, ids: tf.Tensor, lengths: tf.Tensor, context: int, continuation: int, carry: bool,
         new_tokens=0, pick=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Reads every text, then adds `new_tokens` tokens to each.

    Args:
        ids: int32 `[batch, steps]`, the texts' token ids, right-padded.
        lengths: int32 `[batch]`, each text's number of tokens.
        carry: whether the decoder's state goes on across window borders (else it restarts from the
            encoder's states at every border).
        new_tokens: tokens to generate per text (an int or a scalar tensor).
        pick: `pick(log_probs [batch, vocab], index [batch]) -> ids [batch]` chooses the `index`-th new
            token of each row; default: the most probable one.

    Returns:
        `(logits, produced)`: the logits of the token after each text `[batch, vocab]`, and the
        generated ids `[batch, new_tokens]`.
    """
    ids = tf.cast(ids, tf.int32)
    lengths = tf.cast(lengths, tf.int32)
    batch = tf.shape(ids)[0]
    new_tokens = tf.convert_to_tensor(new_tokens, tf.int32)
    longest = tf.reduce_max(tf.concat([lengths, [0]], 0))
    last = longest + tf.maximum(new_tokens, 1)  # positions 0 .. last-1 are stepped
    ids = ids[:, :longest]
    buffer = tf.pad(ids, [[0, 0], [0, last - tf.shape(ids)[1]]])  # the texts, then room for what is generated
    # Without carried states only the current window matters: start at the window of the shortest text.
    first = 0 if carry else tf.reduce_min(tf.concat([lengths, [longest]], 0)) // continuation * continuation
    pick = pick or (lambda log_probs, index: tf.argmax(log_probs, axis=-1, output_type=tf.int32))

    def encode(buffer, p):
        memory, states = model.encode(window_source(buffer, p, context))
        return memory, [list(layer) for layer in states]

    memory, states = encode(buffer, first)
    vocab = model.decoder.vocab_size

    def step(p, buffer, memory, states, logits_next):
        def new_window():
            new_memory, encoder_states = encode(buffer, p)
            return new_memory, (states if carry else encoder_states)

        memory, states = tf.cond(tf.logical_and(p % continuation == 0, p > first), new_window,
                                 lambda: (memory, states))
        previous = tf.where(p > 0, tf.gather(buffer, tf.maximum(p - 1, 0), axis=1), BOS)
        logits, states, _ = model.step(previous, states, memory)
        logits = tf.cast(logits, tf.float32)
        states = [list(layer) for layer in states]
        logits_next = tf.where((p == lengths)[:, None], logits, logits_next)
        generating = tf.logical_and(p >= lengths, p < lengths + new_tokens)
        chosen = tf.cast(pick(tf.nn.log_softmax(logits), tf.maximum(p - lengths, 0)), tf.int32)
        column = tf.equal(tf.range(tf.shape(buffer)[1]), p)[None, :]
        buffer = tf.where(tf.logical_and(column, generating[:, None]), chosen[:, None], buffer)
        return p + 1, buffer, memory, states, logits_next

    _, buffer, _, _, logits_next = tf.while_loop(
        lambda p, *_: p < last, step,
        (tf.convert_to_tensor(first, tf.int32), buffer, memory, states, tf.zeros([batch, vocab], tf.float32)))
    produced = tf.gather(buffer, lengths[:, None] + tf.range(new_tokens)[None, :], batch_dims=1)
    return logits_next, produced
