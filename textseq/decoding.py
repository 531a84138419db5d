"""Decoding with the model's `encode` + `step`: greedy search, beam search and sampling.

Backend-neutral Keras ops, so it runs eagerly or inside a `tf.function` (and so inside an exported
graph). Every search returns the same three tensors:

- tokens `int32 [batch, n, max_length]`: EOS where a hypothesis ended, PAD after it;
- scores `float32 [batch, n]`: the sum of the tokens' log-probabilities (divided by the length
  penalty for beam search with `alpha` > 0), best first;
- weights `float32 [batch, n, max_length, source_steps]`: the attention weights of each step.

Every search also takes a `prefix` `int32 [batch, steps]` (PAD-padded): each output then starts
with its row's tokens (forced decoding, for interactive translation), which count in its score.

>>> tokens, scores, weights = beam_search(model, source_ids, max_length=12, beam_size=5)  # doctest: +SKIP
>>> tokens.shape, scores.shape  # [batch, 1, 12], [batch, 1]
"""

from __future__ import annotations


import keras
from keras import ops

from textseq.constants import BOS, EOS, PAD
from textseq.recipe import DecodingOptions

NEG = -1e9  # a log-probability no hypothesis can reach; finite, so that no inf - inf makes a NaN


def decode(model, source_ids, options: DecodingOptions, prefix=None):
    """Decodes a batch of source ids the way `options` says (each output starting with its `prefix`
    row, when given); see the module docstring for the outputs."""
    if options.method == "sample":
        return sample(model, source_ids, options.max_length, temperature=options.temperature or 1.0,
                      top_k=options.top_k, top_p=options.top_p, seed=options.seed, num_samples=options.n_best,
                      prefix=prefix)
    if options.method == "beam":
        return beam_search(model, source_ids, options.max_length, options.beam_size, options.alpha, options.n_best,
                           prefix=prefix)
    return greedy_search(model, source_ids, options.max_length, prefix=prefix)


def forced_tokens(prefix):
    """`at(i) -> [batch]`: the prefix token each row must produce at step i, PAD where its prefix has
    ended; None without a prefix (the search's steps then do no forcing work at all)."""
    if prefix is None:
        return None
    padded = ops.pad(ops.cast(prefix, "int32"), [[0, 0], [0, 1]])  # a PAD column: every row's prefix ends
    last = ops.shape(padded)[1] - 1
    return lambda i: ops.take(padded, ops.minimum(i, last), axis=1)


def length_penalty(lengths, alpha: float):
    """GNMT's length penalty (Wu et al. 2016): ((5 + length) / 6) ** alpha; 1 when alpha is 0.

    >>> float(length_penalty(ops.convert_to_tensor(7.0), 1.0))
    2.0
    """
    return ops.power((5.0 + ops.cast(lengths, "float32")) / 6.0, alpha)


def greedy_search(model, source_ids, max_length: int, start_ids=None, stop_at_eos: bool = True, prefix=None):
    """Picks the most probable token at every step until EOS or `max_length` tokens.

    `start_ids` `[batch]` are the first decoder inputs (default BOS); a language model passes the
    last token of its context, and `stop_at_eos=False`, as EOS only ends a line there.
    """
    return _search(model, source_ids, max_length, lambda log_probs, i: ops.argmax(log_probs, axis=-1),
                   start_ids, stop_at_eos, prefix)


def sample(model, source_ids, max_length: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int | None = None, num_samples: int = 1, start_ids=None,
           stop_at_eos: bool = True, uniforms=None, prefix=None):
    """Draws each token from the model's distribution, sharpened or flattened by `temperature`.

    `top_k` keeps the k most probable tokens, `top_p` the smallest set whose probability reaches p
    (nucleus sampling); both renormalise. The same `seed` gives the same samples. With
    `num_samples` > 1 each source gets that many independent samples, best-scored first.
    `uniforms` `[max_length, batch * num_samples]` in [0, 1), when given, replace the draws from `seed`.
    """
    batch = ops.shape(source_ids)[0]
    repeated = ops.repeat(source_ids, num_samples, axis=0)
    if uniforms is None:
        # All the uniform draws at once, from the seed: the same seed gives the same text in a graph too.
        uniforms = keras.random.uniform((max_length, batch * num_samples), seed=seed)

    draw = sampler(temperature, top_k, top_p)

    def pick(log_probs, i):
        return draw(log_probs, ops.take(uniforms, i, axis=0))

    if start_ids is not None:
        start_ids = ops.repeat(start_ids, num_samples, axis=0)
    if prefix is not None:
        prefix = ops.repeat(prefix, num_samples, axis=0)
    tokens, scores, weights = _search(model, repeated, max_length, pick, start_ids, stop_at_eos, prefix)
    tokens, scores, weights = (ops.reshape(x, (batch, num_samples, *ops.shape(x)[2:]))
                               for x in (tokens, scores, weights))
    order = ops.argsort(-scores, axis=-1)
    return along(tokens, order), along(scores, order), along(weights, order)


def sampler(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
    """`draw(log_probs [batch, vocab], u [batch] in [0, 1)) -> ids [batch]`: inverse-CDF sampling from
    the distribution at `temperature`, cut to the `top_k` tokens and to the nucleus `top_p`."""
    def draw(log_probs, u):
        sorted_log_probs, sorted_ids = ops.top_k(log_probs / temperature, ops.shape(log_probs)[-1])
        probs = ops.softmax(sorted_log_probs, axis=-1)
        keep = ops.ones_like(probs, dtype="bool")
        if top_k is not None:
            keep = ops.logical_and(keep, ops.arange(ops.shape(probs)[-1]) < top_k)
        if top_p is not None:  # keep a token when the ones before it have not reached p yet
            keep = ops.logical_and(keep, ops.cumsum(probs, axis=-1) - probs < top_p)
        probs = ops.where(keep, probs, 0.0)
        cdf = ops.cumsum(probs, axis=-1) / ops.sum(probs, axis=-1, keepdims=True)
        position = ops.sum(ops.cast(cdf < ops.expand_dims(u, -1), "int32"), axis=-1)
        position = ops.minimum(position, ops.sum(ops.cast(keep, "int32"), axis=-1) - 1)  # cdf may end below 1.0
        return ops.squeeze(ops.take_along_axis(sorted_ids, ops.expand_dims(position, -1), axis=-1), -1)
    return draw


def _search(model, source_ids, max_length: int, pick, start_ids=None, stop_at_eos: bool = True, prefix=None):
    """One hypothesis per source, extended by `pick(log_probs [batch, vocab], step) -> ids [batch]`."""
    memory, states = model.encode(source_ids)
    batch, source_steps = ops.shape(source_ids)[0], ops.shape(source_ids)[1]
    positions = ops.arange(max_length)
    forced = forced_tokens(prefix)

    def unfinished(i, previous, states, finished, tokens, scores, weights):
        return ops.logical_and(i < max_length, ops.logical_not(ops.all(finished)))

    def advance(i, previous, states, finished, tokens, scores, weights):
        logits, states, step_weights = model.step(previous, states, memory)
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        next_ids = ops.cast(pick(log_probs, i), "int32")
        if forced is not None:
            must = forced(i)
            next_ids = ops.where(ops.not_equal(must, PAD), must, next_ids)
        next_ids = ops.where(finished, PAD, next_ids)
        chosen = ops.reshape(along(ops.expand_dims(log_probs, -1), ops.expand_dims(next_ids, -1)), (-1,))
        scores = scores + ops.where(finished, 0.0, chosen)
        at_i = ops.equal(positions, i)
        tokens = tokens + ops.expand_dims(next_ids, 1) * ops.cast(at_i, "int32")
        weights = weights + ops.expand_dims(ops.cast(step_weights, "float32"), 1) * ops.cast(at_i, "float32")[:, None]
        if stop_at_eos:
            finished = ops.logical_or(finished, ops.equal(next_ids, EOS))
        return i + 1, next_ids, states, finished, tokens, scores, weights

    start = (
        ops.convert_to_tensor(0, "int32"),
        ops.full((batch,), BOS, "int32") if start_ids is None else ops.cast(start_ids, "int32"),
        states,
        ops.zeros((batch,), "bool"),
        ops.zeros((batch, max_length), "int32"),
        ops.zeros((batch,), "float32"),
        ops.zeros((batch, max_length, source_steps), "float32"),
    )
    _, _, _, _, tokens, scores, weights = ops.while_loop(unfinished, advance, start)
    return tokens[:, None], scores[:, None], weights[:, None]


def beam_search(model, source_ids, max_length: int, beam_size: int, alpha: float = 0.0, n_best: int = 1,
                prefix=None):
    """Keeps the `beam_size` best hypotheses per source at every step; returns the `n_best` best.

    Hypotheses are ranked by log-probability divided by `length_penalty(length, alpha)`. A hypothesis
    that produced EOS stays in the beam, unchanged, until better ones push it out; the search stops
    when the `n_best` of every source can no longer change (its best hypotheses have ended, ranked
    above anything the open ones could still reach), or after `max_length` tokens. With
    `beam_size=1` it returns exactly what `greedy_search` does.
    """
    memory, states = model.encode(source_ids)
    batch, source_steps = ops.shape(source_ids)[0], ops.shape(source_ids)[1]
    memory, states = (keras.tree.map_structure(lambda x: ops.repeat(x, beam_size, axis=0), s) for s in (memory, states))
    positions = ops.arange(max_length)
    offsets = ops.expand_dims(ops.arange(batch) * beam_size, 1)  # row of each source's first hypothesis
    forced = forced_tokens(prefix)

    def unfinished(i, previous, states, finished, lengths, tokens, scores, weights):
        return ops.logical_and(i < max_length, ops.logical_not(settled(finished, lengths, scores)))

    def settled(finished, lengths, scores):
        """Whether no later step can change the `n_best` of any source: each source's `n_best` best
        ended hypotheses rank above the best that any open one could still reach (its log-probability
        only falls, and its length penalty grows at most to `max_length`'s)."""
        ended = ops.where(finished, scores / length_penalty(lengths, alpha), NEG)
        nth_ended = ops.top_k(ended, n_best)[0][:, -1]
        best_open = ops.max(ops.where(finished, NEG, scores / length_penalty(max_length, alpha)), axis=1)
        return ops.all(ops.logical_or(ops.all(finished, axis=1), nth_ended > best_open))

    def advance(i, previous, states, finished, lengths, tokens, scores, weights):
        logits, states, step_weights = model.step(previous, states, memory)
        vocab = ops.shape(logits)[-1]
        log_probs = ops.reshape(ops.log_softmax(ops.cast(logits, "float32"), axis=-1), (batch, beam_size, vocab))
        # An ended hypothesis has one continuation, PAD, which costs nothing.
        pad_only = ops.where(ops.equal(ops.arange(vocab), PAD), 0.0, NEG)
        log_probs = ops.where(ops.expand_dims(finished, -1), pad_only, log_probs)
        if forced is not None:  # within a prefix, its token is every hypothesis' one continuation
            must = forced(i)[:, None, None]
            only_forced = ops.where(ops.equal(ops.arange(vocab), must), log_probs, NEG)
            log_probs = ops.where(ops.not_equal(must, PAD), only_forced, log_probs)
        candidates = ops.expand_dims(scores, -1) + log_probs
        candidate_lengths = ops.where(finished, lengths, i + 1)
        ranked = candidates / ops.expand_dims(length_penalty(candidate_lengths, alpha), -1)
        # The best beam_size of all beam_size * vocab candidates are among each hypothesis' own best
        # beam_size: two small top-k's instead of one over the whole vocabulary times the beam. Ties
        # go to the lower (hypothesis, token) in both, as in one top-k of the flattened candidates.
        row_ranked, row_ids = ops.top_k(ranked, beam_size)
        _, best = ops.top_k(ops.reshape(row_ranked, (batch, beam_size * beam_size)), beam_size)
        parents = best // beam_size
        next_ids = ops.cast(along(ops.reshape(row_ids, (batch, beam_size * beam_size)), best), "int32")
        scores = along(ops.reshape(candidates, (batch, beam_size * vocab)), parents * vocab + next_ids)

        rows = ops.reshape(parents + offsets, (-1,))
        states = keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), states)
        was_finished = along(finished, parents)
        lengths = ops.where(was_finished, along(lengths, parents), i + 1)
        next_ids = ops.where(was_finished, PAD, next_ids)
        at_i = ops.equal(positions, i)
        tokens = along(tokens, parents) + next_ids[:, :, None] * ops.cast(at_i, "int32")
        step_weights = ops.take(ops.reshape(ops.cast(step_weights, "float32"), (batch * beam_size, -1)), rows, axis=0)
        step_weights = ops.where(ops.reshape(was_finished, (-1, 1)), 0.0, step_weights)
        weights = along(weights, parents)
        weights = weights + ops.reshape(step_weights, (batch, beam_size, 1, -1)) * ops.cast(at_i, "float32")[:, None]
        finished = ops.logical_or(was_finished, ops.equal(next_ids, EOS))
        return i + 1, ops.reshape(next_ids, (-1,)), states, finished, lengths, tokens, scores, weights

    first_only = ops.where(ops.equal(ops.arange(beam_size), 0), 0.0, NEG)  # one start, not beam_size copies
    start = (
        ops.convert_to_tensor(0, "int32"),
        ops.full((batch * beam_size,), BOS, "int32"),
        states,
        ops.zeros((batch, beam_size), "bool"),
        ops.zeros((batch, beam_size), "int32"),
        ops.zeros((batch, beam_size, max_length), "int32"),
        ops.broadcast_to(first_only, (batch, beam_size)),
        ops.zeros((batch, beam_size, max_length, source_steps), "float32"),
    )
    _, _, _, _, lengths, tokens, scores, weights = ops.while_loop(unfinished, advance, start)
    ranked, order = ops.top_k(scores / length_penalty(lengths, alpha), n_best)
    return along(tokens, order), ranked, along(weights, order)


def along(x, index):
    """`x[b, index[b, j], ...]` for `x` `[batch, n, ...]` and `index` `[batch, k]`: one gather of rows
    of the flattened `x` (on TensorFlow, `ops.take_along_axis` broadcasts and transposes both operands)."""
    shape = ops.shape(x)
    rows = ops.reshape(index + ops.arange(shape[0])[:, None] * shape[1], (-1,))
    taken = ops.take(ops.reshape(x, (-1, *shape[2:])), rows, axis=0)
    return ops.reshape(taken, (shape[0], ops.shape(index)[1], *shape[2:]))
