"""tf.data pipelines: encode once, shuffle per epoch, group by length, pad, batch, prefetch.

A batch is `({"source": ids[B, S], "target_in": ids[B, T]}, target_out[B, T])`, padded with 0;
`target_in` starts with BOS and `target_out` ends with EOS (teacher forcing).

Training batches are made the way NMT toolkits make them: shuffle the examples, sort them by
length within pools of 100 batches, cut the pools into full batches and shuffle the batches. Every
epoch has exactly `len(pairs) // batch_size` batches of `batch_size` examples (the few left over
differ from epoch to epoch), so the epoch length is known up front and every replica and worker of
a distributed run gets the same number of equally sized batches: none waits on a batch that never
comes.

Language models cut one token stream into windows (`language_model_examples`): the `context`
tokens before position t are the source, the `continuation` tokens from t on are the target, and t
steps by `continuation`, so the windows cover every token of the stream exactly once.

>>> examples = encode_pairs(pairs, src_tok, tgt_tok, 50, 50)  # doctest: +SKIP
>>> dataset = examples_dataset(examples, 64, 50, 50, shuffle_seed=0)  # doctest: +SKIP
>>> windows = language_model_examples(tf.constant([5, 6, 7, 3, 8]), context=2, continuation=2)
>>> [part.to_list() for part in windows]  # sources, decoder inputs, targets
[[[], [5, 6], [7, 3]], [[2, 5], [6, 7], [3]], [[5, 6], [7, 3], [8]]]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textseq.constants import BOS, EOS, PAD
from textseq.data.tokenizer import Tokenizer

POOL_BATCHES = 100  # batches per length-sorting pool: little padding, yet every batch mixes the data


def encode_pairs(pairs: list[tuple[str, str]], source: Tokenizer, target: Tokenizer,
                 max_source_length: int, max_target_length: int) -> tuple[tf.RaggedTensor, ...]:
    """All pairs encoded at once: ragged (source_ids, target_in, target_out), truncated to the maximum lengths."""
    return encode_texts(tf.constant([s for s, _ in pairs], tf.string), tf.constant([t for _, t in pairs], tf.string),
                        source.encode, target.encode, max_source_length, max_target_length)


def encode_texts(sources: tf.Tensor, targets: tf.Tensor, encode_source, encode_target, max_source_length: int,
                 max_target_length: int) -> tuple[tf.RaggedTensor, ...]:
    """Strings -> ragged (source_ids, target_in, target_out), truncated to the maximum lengths."""
    src_ids = encode_source(sources)[:, :max_source_length]
    tgt_ids = encode_target(targets)[:, : max_target_length - 1]
    bos = tf.fill(tf.stack([tf.shape(targets)[0], 1]), BOS)
    eos = tf.fill(tf.stack([tf.shape(targets)[0], 1]), EOS)
    return src_ids, tf.concat([bos, tgt_ids], axis=1), tf.concat([tgt_ids, eos], axis=1)


def encode_text(text: str, tokenizer: Tokenizer) -> tf.Tensor:
    """One text as a stream of ids `[tokens]`: characters as they are (newlines too), or the words
    of each non-blank line followed by EOS (the Penn Treebank convention)."""
    if tokenizer.level == "char":
        return tokenizer.encode(tf.constant([text])).flat_values
    lines = [line for line in text.split("\n") if line.strip()]
    ids = tokenizer.encode(tf.constant(lines, tf.string))
    return tf.concat([ids, tf.fill([len(lines), 1], EOS)], axis=1).flat_values


def language_model_examples(stream: tf.Tensor, context: int, continuation: int) -> tuple[tf.RaggedTensor, ...]:
    """Windows over a token stream: ragged (source, target_in, target_out), see the module docstring.

    The decoder's first input is the token before the window (BOS at the start of the stream), so
    every prediction conditions on the real previous token.
    """
    ids = np.asarray(stream, np.int32)
    starts = np.arange(0, len(ids), continuation)
    ends = np.minimum(starts + continuation, len(ids))
    context_starts = np.maximum(starts - context, 0)

    def ragged(begin, end, values):
        lengths = end - begin
        positions = np.repeat(begin - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return tf.RaggedTensor.from_row_lengths(values[positions], lengths.astype(np.int64))

    shifted = np.concatenate([[BOS], ids])  # shifted[i] is the token before ids[i]
    return ragged(context_starts, starts, ids), ragged(starts, ends, shifted), ragged(starts, ends, ids)


def shuffled_batches(lengths: tf.Tensor, batch_size: int, seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """Example indices of every batch of one epoch, `[len(lengths) // batch_size, batch_size]`.

    A function of (seed, epoch) only, so a resumed run replays the epochs an uninterrupted run sees.
    """
    count = lengths.shape[0]
    batches = count // batch_size
    seed_pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    order = tf.argsort(tf.random.stateless_uniform([count], seed=seed_pair))[: batches * batch_size]
    pool = tf.range(batches * batch_size, dtype=tf.int64) // (POOL_BATCHES * batch_size)
    by_pool_then_length = pool * (tf.reduce_max(lengths) + 1) + tf.gather(lengths, order)
    rows = tf.reshape(tf.gather(order, tf.argsort(by_pool_then_length, stable=True)), [batches, batch_size])
    batch_order = tf.random.experimental.stateless_fold_in(seed_pair, 1)
    return tf.gather(rows, tf.argsort(tf.random.stateless_uniform([batches], seed=batch_order)))


def stored_batches(count: int, batch_size: int, whole: bool) -> tf.Tensor:
    """Indices 0..count-1 in batches; `whole` pads the last batch with -1 (examples that count for nothing)."""
    batches = -(-count // batch_size)
    indices = tf.range(count, dtype=tf.int32)
    if whole:
        indices = tf.concat([indices, tf.fill([batches * batch_size - count], -1)], 0)
    return indices


def replica_pieces(rows: tf.Tensor, context: tf.distribute.InputContext | None,
                   lengths: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """This input pipeline's share of every global batch, and the lengths to pad each piece to.

    A global batch of B examples becomes `replicas` pieces of B / replicas; pipeline k (a worker)
    takes pieces k*L .. k*L+L-1, where L is its number of replicas, so one step of the strategy sees
    exactly the examples that one step of a single device would. All pieces of a global batch are
    padded to that batch's longest source and target, so the replicas' tensors have equal shapes.
    """
    real_rows = tf.maximum(rows, 0)
    longest = [tf.reduce_max(tf.gather(length, real_rows), axis=1) for length in lengths]
    if context is None or context.num_replicas_in_sync == 1:
        return rows, *longest
    replicas, local = context.num_replicas_in_sync, context.num_replicas_in_sync // context.num_input_pipelines
    first = context.input_pipeline_id * local
    pieces = tf.reshape(rows, [tf.shape(rows)[0], replicas, -1])[:, first: first + local]
    return (tf.reshape(pieces, [-1, tf.shape(rows)[1] // replicas]),
            *(tf.repeat(length, local) for length in longest))


def examples_dataset(examples: tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor], batch_size: int,
                     max_source_length: int, max_target_length: int, shuffle_seed: int | None = None,
                     epoch: tf.Variable | None = None, input_context: tf.distribute.InputContext | None = None,
                     static_shapes: bool = False, resample=None) -> tf.data.Dataset:
    """Batches of encoded examples, ragged (source, target_in, target_out): for training (`shuffle_seed`
    set) or evaluation (stored order, every example once).

    When shuffling, the order of an epoch is a function of `shuffle_seed` and the value of `epoch`
    when iteration starts; the training loop sets it at the beginning of every epoch. With an
    `input_context` (from `strategy.distribute_datasets_from_function`) the dataset yields this
    pipeline's per-replica pieces of each global batch of `batch_size`. `static_shapes` pads every
    batch to the maximum lengths (what TPUs need).

    `resample(rows) -> (source, target_in, target_out)` re-encodes the batch's rows (subword
    regularization: a new segmentation every time); batches are still formed by the stored lengths.
    """
    src_ids, target_in, target_out = examples
    count = int(src_ids.nrows())
    src_lengths, target_lengths = src_ids.row_lengths(), target_in.row_lengths()
    padded_lengths = ((tf.fill([count], tf.constant(max_source_length, tf.int64)),
                       tf.fill([count], tf.constant(max_target_length, tf.int64)))
                      if static_shapes else (src_lengths, target_lengths))
    replicas = input_context.num_replicas_in_sync if input_context else 1
    if batch_size % replicas:
        raise ValueError(f"batch size {batch_size} is not divisible by {replicas} replicas")
    if shuffle_seed is not None:
        if count < batch_size:
            raise ValueError(f"{count} training examples are fewer than one batch of {batch_size}")
        epoch = epoch if epoch is not None else tf.Variable(0, dtype=tf.int64, trainable=False)
        sort_key = tf.maximum(src_lengths, target_lengths)
        batches = count // batch_size

        def epoch_batches(_):
            rows = shuffled_batches(sort_key, batch_size, shuffle_seed, epoch.read_value())
            return tf.data.Dataset.from_tensor_slices(replica_pieces(rows, input_context, padded_lengths))

        rows = tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
    else:
        indices = stored_batches(count, batch_size, whole=replicas > 1)
        batches = -(-count // batch_size)
        if replicas > 1:
            rows = tf.data.Dataset.from_tensor_slices(
                replica_pieces(tf.reshape(indices, [batches, batch_size]), input_context, padded_lengths))
        else:
            rows = tf.data.Dataset.from_tensor_slices(indices).batch(batch_size).map(
                lambda batch: (batch, *(tf.reduce_max(tf.gather(n, batch)) for n in padded_lengths)))
    local = replicas // (input_context.num_input_pipelines if input_context else 1)

    def gather(indices, source_length, target_length):
        real = indices >= 0
        rows = tf.maximum(indices, 0)
        parts = resample(rows) if resample else [tf.gather(part, rows) for part in (src_ids, target_in, target_out)]
        if resample and not static_shapes:  # a sampled segmentation may be longer than the stored one
            source_length = tf.maximum(source_length, tf.reduce_max(parts[0].row_lengths()))
            target_length = tf.maximum(target_length, tf.reduce_max(parts[1].row_lengths()))

        def pad(ragged, length, static_length):
            dense = ragged.to_tensor(PAD, shape=tf.stack([tf.size(rows, tf.int64), length]))
            return tf.ensure_shape(dense, [None, static_length if static_shapes else None])

        # At least one (padding) step: the window at the start of a stream has no context yet.
        source_ids = pad(parts[0], tf.maximum(source_length, 1), max_source_length)
        decoder_in = pad(parts[1], target_length, max_target_length)
        decoder_out = pad(parts[2], target_length, max_target_length)
        decoder_out = tf.where(real[:, None], decoder_out, PAD)  # padding examples count for nothing
        return {"source": source_ids, "target_in": decoder_in}, decoder_out

    return (rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(batches * local))
            .prefetch(tf.data.AUTOTUNE))


def window_dataset(stream, context: int, continuation: int, batch_size: int, shuffle_seed: int | None = None,
                   epoch: tf.Variable | None = None,
                   input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Batches of consecutive windows for a decoder that carries its state from window to window.

    The stream is cut into `batch_size` contiguous rows, and batch k holds window k of every row, so
    row r of batch k+1 continues exactly where row r of batch k stopped (truncated back-propagation
    through time, as Penn Treebank language models are trained). Inputs add `reset` `[rows]`, true
    in the first batch, where the decoder starts from the encoder's states instead of its carried
    ones (int32: 1 resets). Training (`shuffle_seed` set) starts the rows at an offset in [0, continuation) drawn
    from (seed, epoch), so window borders move between epochs, and keeps only full windows;
    evaluation covers every token once (the last windows of a row are padded, and rows past the
    stream's end are empty). Sources always have `context` steps (right-padded), targets
    `continuation`. With an `input_context`, this pipeline yields its replicas' slices of every
    batch, one per replica, and a replica always gets the same rows.

    >>> batches = list(window_dataset(np.arange(4, 14), context=2, continuation=2, batch_size=2))
    >>> [b[1].numpy().tolist() for b in batches]  # rows: 4..8 and 9..13
    [[[4, 5], [9, 10]], [[6, 7], [11, 12]], [[8, 0], [13, 0]]]
    >>> batches[1][0]["source"].numpy().tolist(), batches[1][0]["reset"].numpy().tolist()
    ([[4, 5], [9, 10]], [0, 0])
    """
    ids = tf.constant(np.asarray(stream, np.int32))
    count = int(ids.shape[0])
    shifted = tf.concat([[BOS], ids], axis=0)  # shifted[i] is the token before ids[i]
    replicas = input_context.num_replicas_in_sync if input_context else 1
    pipelines = input_context.num_input_pipelines if input_context else 1
    if batch_size % replicas:
        raise ValueError(f"batch size {batch_size} is not divisible by {replicas} replicas")
    local, rows_per_replica = replicas // pipelines, batch_size // replicas
    first_replica = (input_context.input_pipeline_id if input_context else 0) * local
    if shuffle_seed is not None:
        windows = (count - continuation + 1) // batch_size // continuation  # the same for every offset
        if windows < 1:
            raise ValueError(f"{count} training tokens are fewer than one window of {continuation} for each of "
                             f"{batch_size} rows")
    else:
        row_length = -(-count // batch_size)
        windows = -(-row_length // continuation)
    epoch = epoch if epoch is not None else tf.Variable(0, dtype=tf.int64, trainable=False)

    def batch(element, offset, row_length):
        k, replica = element // local, first_replica + element % local
        rows = tf.range(rows_per_replica, dtype=tf.int64) + replica * rows_per_replica
        row_start = offset + rows * row_length
        starts = row_start + k * continuation
        ends = tf.minimum(tf.minimum(starts + continuation, row_start + row_length), count)
        steps = tf.range(continuation, dtype=tf.int64)
        targets = starts[:, None] + steps
        real = steps[None, :] < (ends - starts)[:, None]
        context_start = tf.maximum(starts - context, 0)
        sources = context_start[:, None] + tf.range(context, dtype=tf.int64)
        real_source = tf.range(context, dtype=tf.int64)[None, :] < (starts - context_start)[:, None]

        def take(values, positions, keep):
            return tf.where(keep, tf.gather(values, tf.clip_by_value(positions, 0, count - 1)), PAD)

        inputs = {"source": take(ids, sources, real_source), "target_in": take(shifted, targets, real),
                  # int32, not bool: Keras reduces a first batch across replicas, and bools do not add up
                  "reset": tf.fill([rows_per_replica], tf.cast(tf.equal(k, 0), tf.int32))}
        return inputs, take(ids, targets, real)

    def epoch_batches(_):
        if shuffle_seed is None:
            offset, row_length = tf.constant(0, tf.int64), tf.constant(-(-count // batch_size), tf.int64)
        else:
            seed = tf.stack([tf.constant(shuffle_seed, tf.int64), tf.cast(epoch.read_value(), tf.int64)])
            offset = tf.random.stateless_uniform([], seed=seed, maxval=continuation, dtype=tf.int64)
            row_length = (count - offset) // batch_size
        return tf.data.Dataset.range(windows * local).map(lambda element: batch(element, offset, row_length))

    return (tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
            .apply(tf.data.experimental.assert_cardinality(windows * local))
            .prefetch(tf.data.AUTOTUNE))
