"""tf.data pipelines: encode once, shuffle per epoch, group by length, pad, batch, prefetch.

A batch is `({"source": ids[B, S], "target_in": ids[B, T]}, target_out[B, T])`, padded with 0;
`target_in` starts with BOS and `target_out` ends with EOS (teacher forcing).

Training batches are made the way NMT toolkits make them: shuffle the examples, sort them by
length within pools of 100 batches, cut the pools into full batches and shuffle the batches. Every
epoch has exactly `len(pairs) // batch_size` batches of `batch_size` examples (the few left over
differ from epoch to epoch), so the epoch length is known up front and every replica and worker of
a distributed run gets the same number of equally sized batches: none waits on a batch that never
comes.

>>> dataset = translation_dataset(pairs, src_tok, tgt_tok, batch_size=64, shuffle_seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from textseq.data.tokenizer import Tokenizer
from textseq.data.vocab import BOS, EOS, PAD

POOL_BATCHES = 100  # batches per length-sorting pool: little padding, yet every batch mixes the data


def encode_pairs(pairs: list[tuple[str, str]], source: Tokenizer, target: Tokenizer,
                 max_source_length: int, max_target_length: int) -> tuple[tf.RaggedTensor, ...]:
    """All pairs encoded at once: ragged (source_ids, target_in, target_out), truncated to the maximum lengths."""
    src_ids = source.encode(tf.constant([s for s, _ in pairs], tf.string))[:, :max_source_length]
    tgt_ids = target.encode(tf.constant([t for _, t in pairs], tf.string))[:, : max_target_length - 1]
    bos = tf.fill([len(pairs), 1], BOS)
    eos = tf.fill([len(pairs), 1], EOS)
    return src_ids, tf.concat([bos, tgt_ids], axis=1), tf.concat([tgt_ids, eos], axis=1)


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


def translation_dataset(pairs: list[tuple[str, str]], source: Tokenizer, target: Tokenizer,
                        batch_size: int, max_source_length: int, max_target_length: int,
                        shuffle_seed: int | None = None, epoch: tf.Variable | None = None,
                        input_context: tf.distribute.InputContext | None = None,
                        static_shapes: bool = False) -> tf.data.Dataset:
    """Batches for training (`shuffle_seed` set) or evaluation (stored order, every pair once).

    When shuffling, the order of an epoch is a function of `shuffle_seed` and the value of `epoch`
    when iteration starts; the training loop sets it at the beginning of every epoch. With an
    `input_context` (from `strategy.distribute_datasets_from_function`) the dataset yields this
    pipeline's per-replica pieces of each global batch of `batch_size`. `static_shapes` pads every
    batch to the maximum lengths (what TPUs need).
    """
    src_ids, target_in, target_out = encode_pairs(pairs, source, target, max_source_length, max_target_length)
    src_lengths, target_lengths = src_ids.row_lengths(), target_in.row_lengths()
    padded_lengths = ((tf.fill([len(pairs)], tf.constant(max_source_length, tf.int64)),
                       tf.fill([len(pairs)], tf.constant(max_target_length, tf.int64)))
                      if static_shapes else (src_lengths, target_lengths))
    replicas = input_context.num_replicas_in_sync if input_context else 1
    if batch_size % replicas:
        raise ValueError(f"batch size {batch_size} is not divisible by {replicas} replicas")
    if shuffle_seed is not None:
        if len(pairs) < batch_size:
            raise ValueError(f"{len(pairs)} training pairs are fewer than one batch of {batch_size}")
        epoch = epoch if epoch is not None else tf.Variable(0, dtype=tf.int64, trainable=False)
        sort_key = tf.maximum(src_lengths, target_lengths)
        batches = len(pairs) // batch_size

        def epoch_batches(_):
            rows = shuffled_batches(sort_key, batch_size, shuffle_seed, epoch.read_value())
            return tf.data.Dataset.from_tensor_slices(replica_pieces(rows, input_context, padded_lengths))

        rows = tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
    else:
        indices = stored_batches(len(pairs), batch_size, whole=replicas > 1)
        batches = -(-len(pairs) // batch_size)
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

        def pad(ragged, length, static_length):
            dense = tf.gather(ragged, rows).to_tensor(PAD, shape=tf.stack([tf.size(rows, tf.int64), length]))
            return tf.ensure_shape(dense, [None, static_length if static_shapes else None])

        source_ids = pad(src_ids, source_length, max_source_length)
        decoder_in = pad(target_in, target_length, max_target_length)
        decoder_out = pad(target_out, target_length, max_target_length)
        decoder_out = tf.where(real[:, None], decoder_out, PAD)  # padding examples count for nothing
        return {"source": source_ids, "target_in": decoder_in}, decoder_out

    return (rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(batches * local))
            .prefetch(tf.data.AUTOTUNE))
