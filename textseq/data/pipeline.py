"""tf.data pipelines: encode once, cache, shuffle, bucket by length, pad, batch, prefetch.

A batch is `({"source": ids[B, S], "target_in": ids[B, T]}, target_out[B, T])`, padded with 0;
`target_in` starts with BOS and `target_out` ends with EOS (teacher forcing).

>>> dataset = translation_dataset(pairs, src_tok, tgt_tok, batch_size=64, shuffle_seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import tensorflow as tf

from textseq.data.tokenizer import Tokenizer
from textseq.data.vocab import BOS, EOS


def encode_pairs(pairs: list[tuple[str, str]], source: Tokenizer, target: Tokenizer,
                 max_source_length: int, max_target_length: int) -> tf.data.Dataset:
    """Unbatched (source_ids, target_in, target_out) examples, truncated to the maximum lengths."""
    sources = tf.constant([s for s, _ in pairs] or [""], tf.string)[: len(pairs)]
    targets = tf.constant([t for _, t in pairs] or [""], tf.string)[: len(pairs)]

    def encode(src, tgt):
        src_ids = source.encode(src)[:, :max_source_length]
        tgt_ids = target.encode(tgt)[:, : max_target_length - 1]
        rows = tgt_ids.nrows()
        bos = tf.fill([rows, 1], BOS)
        eos = tf.fill([rows, 1], EOS)
        return src_ids, tf.concat([bos, tgt_ids], axis=1), tf.concat([tgt_ids, eos], axis=1)

    return (tf.data.Dataset.from_tensor_slices((sources, targets))
            .batch(4096)
            .map(encode, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
            # Unbatched ragged rows are rank-0 ragged specs; one map makes them plain tensors.
            .map(lambda s, t_in, t_out: (s, t_in, t_out)))


def length_buckets(max_length: int, growth: float = 1.1) -> list[int]:
    """Bucket boundaries 2, 3, ... growing by ~10% each, so a batch wastes little on padding."""
    bounds, edge = [], 2
    while edge <= max_length:
        bounds.append(edge)
        edge = max(edge + 1, math.ceil(edge * growth))
    return bounds


def translation_dataset(pairs: list[tuple[str, str]], source: Tokenizer, target: Tokenizer,
                        batch_size: int, max_source_length: int, max_target_length: int,
                        shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches for training (`shuffle_seed` set: shuffled, bucketed) or evaluation (stored order)."""
    examples = encode_pairs(pairs, source, target, max_source_length, max_target_length).cache()
    if shuffle_seed is not None:
        examples = examples.shuffle(max(len(pairs), 1), seed=shuffle_seed, reshuffle_each_iteration=True)
        bounds = length_buckets(max(max_source_length, max_target_length))
        batches = examples.bucket_by_sequence_length(
            lambda s, t_in, t_out: tf.maximum(tf.shape(s)[0], tf.shape(t_in)[0]),
            bucket_boundaries=bounds, bucket_batch_sizes=[batch_size] * (len(bounds) + 1))
    else:
        batches = examples.padded_batch(batch_size)
    return batches.map(lambda s, t_in, t_out: ({"source": s, "target_in": t_in}, t_out)).prefetch(tf.data.AUTOTUNE)
