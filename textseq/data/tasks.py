"""A recipe's data, ready for the pipeline: tokenizers and encoded examples per split, for either task.

- translate: (source, target) pairs, one vocabulary each or one shared.
- language_model: one token stream per split, cut into windows; one vocabulary from the training text.

>>> data = TaskData.load(load_recipe("recipes/dates.yaml"))  # doctest: +SKIP
>>> data.unit, int(data.examples["train"][0].nrows())  # doctest: +SKIP
("examples", 40000)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from textseq.data.pipeline import (encode_pairs, encode_text, encode_texts, examples_dataset,
                                   language_model_examples, window_dataset)
from textseq.data.sources import Shard, load_pairs, load_text, split_names, split_shards
from textseq.data.streams import encoded_split, sample_length_share, sample_pairs, training_batches
from textseq.data.subwords import sample_lines, train_sentencepiece
from textseq.data.tokenizer import Tokenizer, iter_tokens, sentencepiece_ops, tokenizer_for
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.recipe import Corpus, Recipe, VocabConfig

log = logging.getLogger(__name__)

Examples = tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]  # source, target_in, target_out


@dataclass
class TaskData:
    source: Tokenizer
    target: Tokenizer
    examples: dict[str, Examples]
    unit: str  # what one example is: "examples" (translation pairs) or "windows"
    max_lengths: tuple[int, int]  # longest source and target of a batch
    token_ids: dict[str, np.ndarray] | None = None  # language models: each split's text as one id sequence
    carry_state: bool = False  # language models: batches of consecutive windows (see `dataset`)
    resample: Callable | None = None  # subword regularization: rows -> a freshly sampled encoding of them

    @property
    def train(self) -> Examples:
        return self.examples["train"]

    @property
    def validation(self) -> Examples:
        return self.examples["validation"]

    def dataset(self, split: str, batch_size: int, shuffle_seed: int | None = None, epoch: tf.Variable | None = None,
                input_context: tf.distribute.InputContext | None = None, static_shapes: bool = False) -> tf.data.Dataset:
        """The split's batches: shuffled for training when `shuffle_seed` is set, else every example once.

        A language model that carries its state gets consecutive windows (`window_dataset`); every
        other run gets independent examples (`examples_dataset`).
        """
        if self.carry_state:
            return window_dataset(self.token_ids[split], *self.max_lengths, batch_size, shuffle_seed, epoch, input_context)
        resample = self.resample if split == "train" and shuffle_seed is not None else None
        return examples_dataset(self.examples[split], batch_size, *self.max_lengths, shuffle_seed, epoch, input_context,
                                static_shapes, resample)

    @classmethod
    def load(cls, recipe: Recipe, vocabularies: tuple[Vocabulary, Vocabulary] | None = None,
             splits: tuple[str, ...] = ("train", "validation")) -> "TaskData":
        """Reads `splits`, and builds the vocabularies from the training split unless they are given.

        With `train.steps` the training split is a stream (`StreamedData`), not read here.
        """
        if recipe.train.steps:
            return StreamedData.load(recipe, vocabularies, splits)
        data = recipe.data
        if recipe.task == "language_model":
            texts = {split: load_text(data, split) for split in splits}
            if vocabularies is None:
                vocab = language_model_vocabulary(texts.get("train") or load_text(data, "train"), recipe.vocab, data.seed)
                vocabularies = (vocab, vocab)
            tokenizer = tokenizer_for(vocabularies[0])
            token_ids = {split: encode_text(text, tokenizer).numpy() for split, text in texts.items()}
            examples = {split: language_model_examples(ids, data.context, data.continuation)
                        for split, ids in token_ids.items()}
            return cls(tokenizer, tokenizer, examples, "windows", (data.context, data.continuation), token_ids,
                       data.carry_state)
        pairs = {split: load_pairs(data, split) for split in splits}
        if vocabularies is None:
            vocabularies = translation_vocabularies(pairs.get("train") or load_pairs(data, "train"), recipe.vocab,
                                                   data.seed)
        source = tokenizer_for(vocabularies[0])
        target = source if vocabularies[1] is vocabularies[0] else tokenizer_for(vocabularies[1])
        lengths = (data.max_source_length, data.max_target_length)
        for split, split_pairs in pairs.items():
            report_truncation(split, [s for s, _ in split_pairs], source, data.max_source_length, "source",
                              "data.max_source_length")
            report_truncation(split, [t for _, t in split_pairs], target, data.max_target_length - 1, "target",
                              "data.max_target_length")
        examples = {split: encode_pairs(p, source, target, *lengths) for split, p in pairs.items()}
        resample = None
        if recipe.vocab.subword_alpha and "train" in pairs:
            resample = subword_sampler(pairs["train"], vocabularies, recipe.vocab.subword_alpha, lengths)
        return cls(source, target, examples, "examples", lengths, resample=resample)


@dataclass
class StreamedData(TaskData):
    """A translation corpus read as a stream (train.steps): the training split is never held; the
    (small) evaluation splits are encoded once, through the same reader."""

    recipe: Recipe | None = None
    corpora: list[list[Shard]] | None = None  # the training shards of each corpus
    weights: list[float] | None = None
    train_pairs: int | None = None  # counted by the vocabulary's sample pass (a new run only)
    too_long_share: float | None = None  # of the sample: pairs the stream drops for their length

    @property
    def train(self) -> Examples:
        raise AttributeError("a streamed training split is not held in memory")

    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        return self.source.vocab, self.target.vocab

    def dataset(self, split: str, batch_size: int, shuffle_seed: int | None = None, epoch: tf.Variable | None = None,
                input_context: tf.distribute.InputContext | None = None, static_shapes: bool = False) -> tf.data.Dataset:
        """Training: the endless stream of batches (`training_batches`); other splits: every pair once."""
        if split == "train" and shuffle_seed is not None:
            return training_batches(self.corpora, self.weights, self.source, self.target, self.recipe.data,
                                    self.recipe.train, input_context, static_shapes)
        return examples_dataset(self.examples[split], batch_size, *self.max_lengths, None, None, input_context,
                                static_shapes)

    @classmethod
    def load(cls, recipe: Recipe, vocabularies: tuple[Vocabulary, Vocabulary] | None = None,
             splits: tuple[str, ...] = ("train", "validation")) -> "StreamedData":
        data = recipe.data
        named = training_corpora(data)
        corpora = [split_shards(data, "train", names) for names, _ in named]
        warn_of_held_out_files_in_training(data, corpora)
        sample = train_pairs = too_long_share = None
        if vocabularies is None:
            started = time.monotonic()
            sample, train_pairs = sample_pairs([shard for shards in corpora for shard in shards], data,
                                               recipe.vocab.sample_lines, data.seed)
            if not sample:
                raise UserError(f"data.train: {', '.join(split_names(data, 'train'))} has no pairs")
            vocabularies = translation_vocabularies(Streamable(sample, data, recipe.vocab.level), recipe.vocab, data.seed)
            log.info("data.train: %d pairs in %d file(s); vocabulary from a sample of %d in %.1f s", train_pairs,
                     sum(len(shard.files) for shards in corpora for shard in shards), len(sample),
                     time.monotonic() - started)
        source = tokenizer_for(vocabularies[0])
        target = source if vocabularies[1] is vocabularies[0] else tokenizer_for(vocabularies[1])
        if sample is not None:
            over, sampled = sample_length_share(sample, source, target, data)
            too_long_share = over / sampled
            if over:
                log.warning("data.train: about %.2f%% of training pairs are longer than data.max_source_length or "
                            "data.max_target_length (%d of a sample of %d) and are dropped as they stream",
                            100 * over / sampled, over, sampled)
        examples = {split: encoded_split(split_shards(data, split), data, split, source, target)
                    for split in splits if split != "train"}
        return cls(source, target, examples, "pairs", (data.max_source_length, data.max_target_length),
                   recipe=recipe, corpora=corpora, weights=[weight for _, weight in named], train_pairs=train_pairs,
                   too_long_share=too_long_share)


class Streamable:
    """The pairs of a sample the stream can keep: those with more words (characters for a character
    vocabulary) than data.max_source_length / max_target_length are dropped as they stream, so their
    tokens must not fill the vocabulary either (one 1 MB line made a 28 MB model). Every token is
    at least a word (SentencePiece pieces do not cross spaces), so this drops only pairs the stream
    drops. Iterable again and again, as a vocabulary per side reads it twice."""

    def __init__(self, pairs, data, level: str):
        self.pairs, self.data, self.count = pairs, data, len if level == "char" else (lambda text: len(text.split()))

    def __iter__(self):
        longest_source, longest_target = self.data.max_source_length, self.data.max_target_length - 1  # the end mark
        for source, target in self.pairs:
            if self.count(source) <= longest_source and self.count(target) <= longest_target:
                yield source, target


def warn_of_held_out_files_in_training(data, corpora) -> None:
    """A training glob that also matches the validation or test files (`data/*` beside `data/valid`)
    trains on what measures it: said once, since a corpus may mean it (a shared dev set)."""
    training = {path.resolve() for shards in corpora for shard in shards for path in shard.files}
    for split in ("validation", "test"):
        held = [path for shard in split_shards(data, split) for path in shard.files if path.resolve() in training]
        if held:
            log.warning("warning: data.train also matches the %s files (%s); the model trains on what measures it. "
                        "Narrow data.train's glob if that is not meant", split, ", ".join(map(str, held[:2])))


def training_corpora(data) -> list[tuple[tuple[str, ...], float]]:
    """The names (paths, globs) and weight of each training corpus; one corpus unless data.train
    lists weights."""
    value = data.train
    if isinstance(value, tuple) and value and isinstance(value[0], Corpus):
        return [(corpus.files, corpus.weight) for corpus in value]
    return [((value,) if isinstance(value, str) else tuple(value), 1.0)]


def subword_sampler(pairs: list[tuple[str, str]], vocabularies: tuple[Vocabulary, Vocabulary], alpha: float,
                    lengths: tuple[int, int]) -> Callable:
    """`rows -> (source, target_in, target_out)`: the training pairs of `rows`, each segmentation
    sampled from the SentencePiece lattice with smoothing `alpha` (Kudo, 2018)."""
    sources = tf.constant([s for s, _ in pairs], tf.string)
    targets = tf.constant([t for _, t in pairs], tf.string)
    samplers = [sentencepiece_ops(vocab.model, nbest_size=-1, alpha=alpha) for vocab in vocabularies]

    def resample(rows):
        return encode_texts(tf.gather(sources, rows), tf.gather(targets, rows), samplers[0].tokenize,
                            samplers[1].tokenize, *lengths)

    return resample


def report_truncation(split: str, texts: list[str], tokenizer: Tokenizer, limit: int, side: str, key: str) -> None:
    """Logs once per split and side how many texts are longer than the model keeps, and the longest."""
    if not texts:
        return
    lengths = tokenizer.encode(tf.constant(texts, tf.string)).row_lengths().numpy()
    over = int((lengths > limit).sum())
    if over:
        longest = int(lengths.argmax())
        log.warning("data.%s: %d of %d %ss are longer than %s (%d tokens) and were cut to it; the longest is "
                    "example %d, %d tokens", split, over, len(texts), side, key, limit, longest + 1,
                    int(lengths[longest]))


def translation_vocabularies(pairs: list[tuple[str, str]], config: VocabConfig,
                             seed: int = 0) -> tuple[Vocabulary, Vocabulary]:
    """Source and target vocabularies from the training pairs (one, twice, when shared)."""
    def build(texts, side="source and target"):
        if config.level == "sentencepiece":
            return subword_vocabulary(texts, config, seed, f"the training text ({side})")
        return Vocabulary.build(iter_tokens(texts, config.level, config.lowercase), config.level,
                                config.lowercase, config.max_size, config.min_count)

    if config.shared:
        vocab = build(text for pair in pairs for text in pair)
        return vocab, vocab
    return build((s for s, _ in pairs), "source"), build((t for _, t in pairs), "target")


def subword_vocabulary(lines, config: VocabConfig, seed: int, what: str = "the training text") -> Vocabulary:
    """A SentencePiece vocabulary learned from a seeded sample of `vocab.sample_lines` of `lines`."""
    return Vocabulary.sentencepiece(train_sentencepiece(sample_lines(lines, config.sample_lines, seed), config, what))


def language_model_vocabulary(text: str, config: VocabConfig, seed: int = 0) -> Vocabulary:
    """The training text's tokens: its characters (newline included), the words of its lines, or
    SentencePiece pieces learned from a sample of its lines."""
    if config.level == "sentencepiece":
        return subword_vocabulary(text.split("\n"), config, seed)
    texts = [text] if config.level == "char" else text.split("\n")
    return Vocabulary.build(iter_tokens(texts, config.level, config.lowercase), config.level, config.lowercase,
                            config.max_size, config.min_count)
