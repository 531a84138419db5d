"""Translation corpora as tf.data streams: shards read as they are needed, never whole into memory.

`pair_stream` reads the shards of a split (parallel pairs or TSV, plain or gzip) in order, checking
as it goes what the in-memory readers check at once: lines that are not UTF-8 (as
`data.encoding_errors` says), parallel files whose line counts differ, TSV lines without exactly two
columns. Each such error names the file and the line. `training_batches` turns the training shards
into an endless stream of batches: every pass reads the files in a new seeded order (interleaved),
`data.shuffle_buffer` pairs are shuffled, pairs longer than the limits or with an empty side are
dropped, and batches are formed from buckets of similar lengths, of `train.batch_size` examples or of
at most `train.batch_tokens` tokens. Its iterator is checkpointable (`tf.train.Checkpoint`), so a
resumed run goes on from the exact pair it stopped at.

>>> batches = training_batches(corpora, weights, source_tok, target_tok, data, train)  # doctest: +SKIP
>>> inputs, target_out = next(iter(batches))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re

import numpy as np
import tensorflow as tf

from textseq.constants import BOS, EOS, PAD
from textseq.data.sampling import reservoir
from textseq.data.sources import BAD_COLUMNS, MISALIGNED, Shard, is_gzip, shard_pairs
from textseq.data.textfiles import NOT_UTF8
from textseq.data.tokenizer import Tokenizer
from textseq.errors import UserError
from textseq.recipe import DataConfig, TrainConfig

log = logging.getLogger(__name__)

DATA_ERROR = "textseq-data-error"  # marks the stream's own errors in TensorFlow's messages
READ_BATCH = 256  # lines checked and encoded together: vectorized string ops, yet little read ahead
BUCKET_BOUNDARIES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512)


def shard_table(shards: list[Shard]) -> tuple[tf.Tensor, tf.Tensor]:
    """The shards' file names `[shards, files]` and their compression ("GZIP" or "")."""
    names = [[str(path) for path in shard.files] for shard in shards]
    compression = [["GZIP" if is_gzip(path) else "" for path in shard.files] for shard in shards]
    return tf.constant(names, tf.string), tf.constant(compression, tf.string)


def numbered_lines(name: tf.Tensor, compression: tf.Tensor) -> tf.data.Dataset:
    """(line number from 1, line) of one file, then (-1, "") to mark its end."""
    lines = tf.data.TextLineDataset(name, compression_type=compression)
    numbered = tf.data.Dataset.zip(tf.data.Dataset.range(1, 2**62), lines)
    return numbered.concatenate(tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.constant(""))))


def fail_unless(ok: tf.Tensor, message: tf.Tensor) -> tf.Operation:
    """An assertion whose failure message `data_error` can find and show as it is."""
    return tf.debugging.Assert(ok, [DATA_ERROR, message], summarize=1)


def graph_message(template: str, **fields) -> tf.Tensor:
    """A message template of the Python readers, its `{fields}` filled with strings or tensors."""
    parts = []
    for index, piece in enumerate(re.split(r"\{(\w+)\}", template)):
        value = fields[piece] if index % 2 else piece
        parts.append(tf.strings.as_string(value) if isinstance(value, tf.Tensor) and value.dtype != tf.string
                     else value)
    return tf.strings.join(parts)


def data_error(error: tf.errors.OpError) -> UserError | None:
    """The stream's own error in a TensorFlow error (None for any other)."""
    text = str(error)
    if DATA_ERROR not in text:
        return None
    message = text.split(DATA_ERROR, 1)[1].split("] [", 1)[-1].split("]\n", 1)[0].rstrip("]").strip()
    return UserError(message.encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
                     .encode("latin-1", "replace").decode("utf-8", "replace"))


def clean(lines: tf.Tensor, numbers: tf.Tensor, name: tf.Tensor, key: str, errors: str):
    """Checked, stripped lines and which of them to keep (`errors` = data.encoding_errors)."""
    fixed = tf.strings.unicode_transcode(lines, "UTF-8", "UTF-8", errors="replace")
    valid = tf.equal(fixed, lines)
    first_bad = tf.gather(numbers, tf.argmin(tf.cast(valid, tf.int32)))
    checks = []
    if errors == "strict":
        checks.append(fail_unless(tf.reduce_all(valid), graph_message(
            NOT_UTF8, key=key, file=name, line=first_bad, what="")))
    with tf.control_dependencies(checks):
        text = tf.strings.strip(tf.strings.regex_replace(fixed, "^\ufeff", ""))
    keep = valid if errors == "skip" else tf.ones_like(valid)
    return text, keep


def read_parallel(key: str, errors: str):
    """`(names[2], compression[2]) -> (source, target)` lines of one parallel shard, in order."""
    def read(names, compression):
        both = tf.data.Dataset.zip(numbered_lines(names[0], compression[0]), numbered_lines(names[1], compression[1]))

        def check(source, target):
            (source_numbers, source_lines), (target_numbers, target_lines) = source, target
            ends = tf.equal(source_numbers, -1)
            aligned = tf.equal(ends, tf.equal(target_numbers, -1))
            first = tf.argmin(tf.cast(aligned, tf.int32))
            short, long_ = tf.cond(tf.gather(ends, first), lambda: (names[0], names[1]), lambda: (names[1], names[0]))
            line = tf.strings.as_string(tf.maximum(tf.gather(source_numbers, first), tf.gather(target_numbers, first)))
            aligned_check = fail_unless(tf.reduce_all(aligned), graph_message(
                MISALIGNED, key=key, short=short, long=long_, line=line))
            with tf.control_dependencies([aligned_check]):
                source_text, source_keep = clean(source_lines, source_numbers, names[0], key, errors)
                target_text, target_keep = clean(target_lines, target_numbers, names[1], key, errors)
            keep = source_keep & target_keep & ~ends & (tf.strings.length(source_text) > 0) & (
                tf.strings.length(target_text) > 0)
            return tf.boolean_mask(source_text, keep), tf.boolean_mask(target_text, keep)

        return both.batch(READ_BATCH).map(check).unbatch()

    return read


def read_tsv(key: str, errors: str):
    """`(names[1], compression[1]) -> (source, target)` of one TSV shard, in order."""
    def read(names, compression):
        def check(numbers, lines):
            text, keep = clean(lines, numbers, names[0], key, errors)
            real = ~tf.equal(numbers, -1) & (tf.strings.length(text) > 0)
            columns = tf.strings.split(text, "\t")
            counts = columns.row_lengths()
            good = ~real | tf.equal(counts, 2)
            first = tf.argmin(tf.cast(good, tf.int32))
            check_columns = fail_unless(tf.reduce_all(good), graph_message(
                BAD_COLUMNS, key=key, file=names[0], line=tf.gather(numbers, first), count=tf.gather(counts, first),
                shown=""))
            with tf.control_dependencies([check_columns]):
                pairs = columns.to_tensor("", shape=[None, 2])
            source, target = tf.strings.strip(pairs[:, 0]), tf.strings.strip(pairs[:, 1])
            keep = keep & real & (tf.strings.length(source) > 0) & (tf.strings.length(target) > 0)
            return tf.boolean_mask(source, keep), tf.boolean_mask(target, keep)

        return numbered_lines(names[0], compression[0]).batch(READ_BATCH).map(check).unbatch()

    return read


def reader(config: DataConfig, split: str):
    key = f"data.{split}"
    return read_parallel(key, config.encoding_errors) if config.source == "parallel" else \
        read_tsv(key, config.encoding_errors)


def pair_stream(shards: list[Shard], config: DataConfig, split: str) -> tf.data.Dataset:
    """Every (source, target) pair of the shards, in their order: blank and empty-sided pairs left out."""
    names, compression = shard_table(shards)
    return tf.data.Dataset.from_tensor_slices((names, compression)).flat_map(reader(config, split))


def shuffled_pairs(shards: list[Shard], config: DataConfig, seed: int,
                   input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """An endless stream of training pairs: each pass reads the shards in a new seeded order, several
    at a time, interleaved. With several input pipelines (workers), each reads its own shards when
    there are at least as many as pipelines, else every pipeline-th pair of all of them."""
    pipelines = input_context.num_input_pipelines if input_context else 1
    index = input_context.input_pipeline_id if input_context else 0
    by_file = len(shards) >= pipelines
    if by_file:
        shards = shards[index::pipelines]
    names, compression = shard_table(shards)
    files = tf.data.Dataset.from_tensor_slices((names, compression))
    files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True).repeat()
    pairs = files.interleave(reader(config, "train"), cycle_length=min(len(shards), 8), block_length=16,
                             num_parallel_calls=min(len(shards), 8), deterministic=True)
    if not by_file:
        pairs = pairs.shard(pipelines, index)
    return pairs


def training_batches(corpora: list[list[Shard]], weights: list[float], source: Tokenizer, target: Tokenizer,
                     data: DataConfig, train: TrainConfig, input_context: tf.distribute.InputContext | None = None,
                     static_shapes: bool = False) -> tf.data.Dataset:
    """Endless training batches `({"source", "target_in"}, target_out)` from the corpora (mixed by weight).

    A pipeline yields its replicas' batches, each `batch_size / replicas` examples (or
    `batch_tokens / replicas` tokens per side at most), padded with 0 to the longest in the batch
    (to the maximum lengths with `static_shapes`).
    """
    seed = train.seed
    streams = [shuffled_pairs(shards, data, seed + number, input_context) for number, shards in enumerate(corpora)]
    pairs = streams[0] if len(streams) == 1 else tf.data.Dataset.sample_from_datasets(
        streams, weights=[w / sum(weights) for w in weights], seed=seed)
    pairs = pairs.shuffle(data.shuffle_buffer, seed=seed)
    max_source, max_target = data.max_source_length, data.max_target_length

    def encode(sources, targets):
        source_ids, target_ids = source.encode(sources), target.encode(targets)
        keep = ((source_ids.row_lengths() > 0) & (source_ids.row_lengths() <= max_source)
                & (target_ids.row_lengths() > 0) & (target_ids.row_lengths() < max_target))
        return tf.ragged.boolean_mask(source_ids, keep), tf.ragged.boolean_mask(target_ids, keep)

    def example(source_ids, target_ids):
        return source_ids, tf.concat([[BOS], target_ids], 0), tf.concat([target_ids, [EOS]], 0)

    examples = (pairs.batch(READ_BATCH).map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .unbatch().map(example))
    replicas = input_context.num_replicas_in_sync if input_context else 1
    longest = max(max_source, max_target)
    boundaries = [b for b in BUCKET_BOUNDARIES if b < longest] + [longest]
    if train.batch_tokens:
        tokens = train.batch_tokens // replicas
        sizes = [max(1, tokens // bound) for bound in boundaries]
        if tokens < longest:
            raise UserError(f"train.batch_tokens: {train.batch_tokens} tokens over {replicas} replica(s) leave "
                            f"{tokens} per batch, fewer than the longest example ({longest} tokens, "
                            "data.max_source_length/max_target_length); raise batch_tokens")
    else:
        sizes = [train.batch_size // replicas] * len(boundaries)
    shapes = ([max_source], [max_target], [max_target]) if static_shapes else ([None], [None], [None])
    batches = examples.bucket_by_sequence_length(
        lambda s, t_in, t_out: tf.maximum(tf.shape(s)[0], tf.shape(t_in)[0]),
        bucket_boundaries=[b + 1 for b in boundaries[:-1]], bucket_batch_sizes=sizes,
        padded_shapes=shapes, padding_values=(PAD, PAD, PAD), drop_remainder=True)
    return batches.map(lambda s, t_in, t_out: ({"source": s, "target_in": t_in}, t_out)).prefetch(tf.data.AUTOTUNE)


def encoded_split(shards: list[Shard], config: DataConfig, split: str, source: Tokenizer, target: Tokenizer):
    """A (small) evaluation split read through the stream and encoded: ragged (source, target_in,
    target_out), truncated to the maximum lengths as the in-memory path does, and its pair count."""
    from textseq.data.pipeline import encode_texts

    parts = [[], [], []]
    for sources, targets in pair_stream(shards, config, split).batch(READ_BATCH * 8):
        for store, part in zip(parts, encode_texts(sources, targets, source.encode, target.encode,
                                                   config.max_source_length, config.max_target_length)):
            store.append(part)
    if not parts[0]:
        raise UserError(f"data.{split}: {', '.join(str(s) for s in shards)} has no pairs")
    return tuple(tf.concat(store, axis=0) for store in parts)


class PairSample:
    """A sample of pairs held as UTF-8 bytes (half the memory of Python strings), decoded as read.

    >>> sample = PairSample([b"ein hund\x00a dog"])
    >>> list(sample), list(sample.side(1))
    ([('ein hund', 'a dog')], ['a dog'])
    """

    def __init__(self, packed: list[bytes]):
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __iter__(self):
        for item in self.packed:
            source, _, target = item.decode("utf-8").partition("\x00")
            yield source, target

    def __eq__(self, other) -> bool:
        return isinstance(other, PairSample) and self.packed == other.packed

    def side(self, index: int):
        """The sources (0) or targets (1), one at a time."""
        return (pair[index] for pair in self)


def sample_pairs(shards: list[Shard], config: DataConfig, count: int, seed: int,
                 split: str = "train") -> tuple[PairSample, int]:
    """At most `count` pairs drawn uniformly from all shards in one pass (`reservoir`), and the number
    of pairs there are (an empty side or a skipped line not counted).

    The pass reads every line with `shard_pairs`, which checks what the stream checks, so a new run
    stops on bad data before its first step, naming the file and the line.
    """
    key = f"data.{split}"
    pairs = (f"{source}\x00{target}".encode("utf-8") for shard in shards
             for source, target in shard_pairs(shard, config, key))
    packed, seen = reservoir(pairs, count, seed)
    return PairSample(packed), seen


def sample_length_share(sample, source: Tokenizer, target: Tokenizer, data: DataConfig,
                        most: int = 20_000) -> tuple[int, int]:
    """How many of (the first `most` of) the sampled pairs the training stream drops for their
    length, and how many were looked at."""
    sample = [pair for pair, _ in zip(sample, range(most))]
    if not sample:
        return 0, 0
    source_lengths = source.encode(tf.constant([s for s, _ in sample])).row_lengths().numpy()
    target_lengths = target.encode(tf.constant([t for _, t in sample])).row_lengths().numpy()
    over = (source_lengths > data.max_source_length) | (target_lengths >= data.max_target_length)
    return int(np.sum(over)), len(sample)
