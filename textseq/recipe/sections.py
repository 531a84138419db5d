"""The recipe's sections: typed, frozen dataclasses, each key with its default, bounds and help line.

Every default lives here, next to a one-line explanation; nothing else in the package invents a
default. A rule that involves several keys of a section is that section's `check()`; `Recipe.check`
keeps the few that span sections. `textseq.recipe.loading` reads YAML into them.

>>> TrainConfig().batch_size
64
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from textseq.errors import UserError
from textseq.recipe.values import (MAX_ALPHA, MAX_BATCH, MAX_BATCH_TOKENS, MAX_BEAM, MAX_COUNT, MAX_DISTINCT_DATES,
                                   MAX_GENERATED, MAX_HELD, MAX_LAYERS, MAX_SEED, MAX_TEMPERATURE, MAX_TOKENS,
                                   MAX_UNITS, MAX_VOCABULARY, MIN_TEMPERATURE, Broken, Corpus, Files, Where,
                                   check_value, option, recipe_key)





@functools.cache
def hints_of(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, worked out once per class: it evaluates every annotation's string
    (~80 us), and a served request builds a `DecodingOptions`."""
    return typing.get_type_hints(cls)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["dates", "parallel", "tsv", "text", "tfds"] = option(
        "dates", "dates: generated, offline; parallel: aligned files PREFIX.SRC_LANG / PREFIX.TGT_LANG; "
                 "tsv: one file per split of SOURCE<TAB>TARGET lines; "
                 "text: plain text files for language models; tfds: a TensorFlow Datasets dataset")
    dataset: Optional[str] = option(None, "tfds: the dataset's name, e.g. tiny_shakespeare or ted_hrlr_translate/pt_to_en")
    text_field: str = option("text", "tfds with task language_model: the feature that holds the text")
    dir: Optional[str] = option(None, "parallel, tsv, text: directory of relative paths; default $TEXTSEQ_DATA or "
                                    "~/.cache/textseq")
    train: Optional[Files] = option(
        None, "parallel: prefix of the training files, e.g. multi30k/tok/train.lc.norm.tok; tsv, text: the training "
              "file. parallel and tsv also take a glob (wmt/train-*) or a list, plain or .gz, and with train.steps a "
              "list of corpora mixed by weight: [{files: ..., weight: 3}, {files: ..., weight: 1}]")
    validation: Optional[Files] = option(
        None, "parallel: prefix(es) of the validation files; tsv, text: the validation file; tfds: the split's name "
              "(default validation; train for the others)")
    test: Optional[Files] = option(None, "parallel: prefix(es) of the test files; tsv, text: the test file; tfds: the "
                                       "split's name")
    encoding_errors: Literal["strict", "replace", "skip"] = option(
        "strict", "lines that are not UTF-8: strict stops (naming file, line, byte), replace puts U+FFFD in, "
                  "skip drops the line (with its pair in parallel files)")
    split: Optional[float] = option(None, "text without a validation file: the share of data.train's characters that "
                                        "trains (the first ones); the rest validates and tests", above=0.0, below=1.0)
    context: int = option(64, "language_model: tokens of preceding text the encoder reads", min=1, max=MAX_TOKENS)
    continuation: int = option(32, "language_model: tokens the decoder predicts after each context window", min=1, max=MAX_TOKENS)
    carry_state: bool = option(True, "language_model: each window's decoder starts from its state at the end of the "
                                   "previous window of the same stream (truncated back-propagation through time); "
                                   "false: from the encoder's states, with the windows shuffled")
    source_language: Optional[str] = option(None, "parallel: suffix of the source files, e.g. de; tfds: the source feature")
    target_language: Optional[str] = option(None, "parallel: suffix of the target files, e.g. en; tfds: the target feature")
    train_examples: int = option(50_000, "dates: number of generated training pairs", min=1, max=MAX_GENERATED)
    validation_examples: int = option(1_000, "dates: held-out pairs, each a distinct date", min=1,
                                     max=MAX_DISTINCT_DATES)
    test_examples: int = option(2_000, "dates: test pairs, each a distinct date", min=1, max=MAX_DISTINCT_DATES)
    seed: int = option(0, "seed of the data generator and of the train/validation/test split", min=0, max=MAX_SEED)
    max_source_length: int = option(128, "source tokens kept; with train.epochs longer inputs are truncated, with "
                                       "train.steps training pairs that are longer are dropped (and counted)",
                                  min=1, max=MAX_TOKENS)
    max_target_length: int = option(128, "target tokens kept in training (the end mark included); longer ones are "
                                       "truncated or, with train.steps, dropped", min=1, max=MAX_TOKENS)
    shuffle_buffer: int = option(100_000, "train.steps: training pairs held to shuffle the stream (files are also "
                                        "read in a new order on every pass); more mixes better and takes more memory",
                               min=1, max=MAX_HELD)
    bleu_tokenize: Literal["13a", "none", "intl", "char", "zh", "ja-mecab", "flores200"] = option(
        "13a", "sacrebleu tokenizer for BLEU in evaluate; none when the files are already tokenized (Multi30k tok/)")



    def check(self) -> None:
        """Which files each source needs."""
        if self.source == "tfds" and not self.dataset:
            raise Broken((), "data.dataset is needed with data.source: tfds (a TensorFlow Datasets name, e.g. "
                             "tiny_shakespeare)")
        if self.source == "text" and not self.train:
            raise Broken((), "data.train is needed with data.source: text (a plain text file, .gz read directly)")
        if self.source == "text" and not self.validation and not self.split:
            raise Broken((), "data.validation or data.split is needed with data.source: text (a validation file, "
                             "or the share of data.train that trains, e.g. 0.9)")
        needed = {"parallel": ("train", "validation", "test", "source_language", "target_language"),
                  "tsv": ("train", "validation", "test")}.get(self.source, ())
        what = {"parallel": "files PREFIX.SOURCE_LANGUAGE and PREFIX.TARGET_LANGUAGE for train, validation, test",
                "tsv": "a file of SOURCE<TAB>TARGET lines for each of train, validation, test"}.get(self.source)
        for name in needed:
            if not getattr(self, name):
                raise Broken((), f"data.{name} is needed with data.source: {self.source} ({what})")
        for name in ("train", "validation", "test") if not needed else ():
            if isinstance(getattr(self, name), tuple):
                raise Broken((name,), f"data.{name}: lists of files are for data.source: parallel or tsv; give one "
                                      "file")

@dataclass(frozen=True)
class VocabConfig:
    level: Literal["char", "word", "sentencepiece"] = option(
        "word", "token unit: characters, whitespace-separated words, or SentencePiece subwords trained on the "
                "corpus (plain text in and out; any UTF-8 text maps to known pieces with byte_fallback)")
    lowercase: bool = option(False, "lower-case text before splitting it into tokens")
    max_size: Optional[int] = option(None, "char, word: keep at most this many tokens (reserved ones included)", min=5,
                                    max=MAX_VOCABULARY)
    min_count: int = option(1, "char, word: drop tokens seen fewer times in the training data", min=1, max=MAX_COUNT)
    shared: bool = option(True, "one vocabulary for source and target (vocab.txt or spm.model), or one each")
    size: int = option(8000, "sentencepiece: pieces in the vocabulary, the 4 reserved ones included", min=8,
                     max=MAX_VOCABULARY)
    model_type: Literal["unigram", "bpe"] = option("unigram", "sentencepiece: the segmentation model")
    character_coverage: float = option(
        0.9995, "sentencepiece: share of the sample's characters that get pieces of their own; the rarest rest "
                "is spelled in bytes (byte_fallback); SentencePiece takes 0.98 to 1.0", min=0.98, max=1.0)
    byte_fallback: bool = option(True, "sentencepiece: spell characters without a piece as UTF-8 bytes, so no text "
                                     "is ever read as <unk>")
    sample_lines: int = option(1_000_000, "sentencepiece: lines of training text (a seeded sample, read in one pass) "
                                        "the vocabulary is learned from", min=1, max=MAX_HELD)
    subword_alpha: Optional[float] = option(
        None, "sentencepiece, translate: subword regularization: every training batch samples its segmentations "
              "with this smoothing (0.1 is usual; smaller is more varied); null: always the one best segmentation",
        above=0.0, max=1.0)
    from_: Optional[str] = option(
        None, "reuse a vocabulary as it is instead of building one: a run directory (its vocabulary files), a "
              "vocab.txt or an spm.model; size, max_size, min_count and the other building keys are then unused",
        key="from")

    def check(self) -> None:
        if self.level != "sentencepiece" and self.subword_alpha:
            raise Broken(("subword_alpha",), "vocab.subword_alpha samples SentencePiece segmentations; set "
                                             "vocab.level: sentencepiece, or remove it")
        if self.level == "sentencepiece" and self.max_size:
            raise Broken(("max_size",), "vocab.max_size applies to word and char vocabularies; a sentencepiece "
                                        "vocabulary has exactly vocab.size pieces: set that instead")

@dataclass(frozen=True)
class ModelConfig:
    cell: Literal["lstm", "gru"] = option("lstm", "recurrent cell of encoder and decoder")
    embedding_dim: int = option(128, "size of the token embeddings", min=1, max=MAX_UNITS)
    units: int = option(256, "recurrent units; with a bidirectional encoder, half per direction", min=1, max=MAX_UNITS)
    layers: int = option(1, "stacked recurrent layers in the encoder and in the decoder", min=1, max=MAX_LAYERS)
    bidirectional: bool = option(True, "read the source in both directions")
    dropout: float = option(0.0, "dropout on embeddings, between layers and before the output", min=0.0, below=1.0)
    recurrent_dropout: float = option(0.0, "dropout on the recurrent state; > 0 leaves the fused (cuDNN) kernels",
                                    min=0.0, below=1.0)
    attention: Literal["additive", "general", "dot"] = option(
        "additive", "attention scores: additive (Bahdanau: v^T tanh(W1 q + W2 k)), general (Luong: q^T W k) or dot "
                    "(Luong: q^T k, no weights; decoder and encoder outputs of one size)")
    attention_units: int = option(256, "size of the additive attention's hidden layer", min=1, max=MAX_UNITS)
    decoder_units: Optional[int] = option(
        None, "recurrent units of the decoder; null: model.units. Another size needs model.bridge: dense or zero",
        min=1, max=MAX_UNITS)
    bridge: Literal["copy", "dense", "zero"] = option(
        "copy", "how the decoder starts from the encoder's final states: copy them (same sizes), dense (a learned "
                "linear map of each) or zero")
    input_feeding: bool = option(
        False, "feed each decoder step the previous step's attentional vector beside its token (Luong); training "
               "then steps through the target one token at a time, slower than the fused layers")
    tie_embeddings: bool = option(
        False, "score output tokens with the target embedding matrix instead of a matrix of their own (a "
               "projection where embedding_dim differs from the decoder's units); with vocab.shared, the encoder "
               "reads the same embedding too (three-way tying)")
    embedding_init: Literal["uniform", "normal"] = option(
        "uniform", "how token embeddings start: uniform (Keras' default, within +-0.05) or normal (standard "
                   "deviation 1/sqrt(embedding_dim): vectors of about unit length, which the model learns from "
                   "sooner)")

    def check(self) -> None:
        if self.bidirectional and self.units % 2:
            raise Broken(("units",), "model.units must be even with a bidirectional encoder (half the units read "
                                     f"each direction); got {self.units}")
        decoder_units = self.decoder_units or self.units
        if self.bridge == "copy" and decoder_units != self.units:
            raise Broken(("bridge",), f"model.decoder_units: {decoder_units} differs from model.units ({self.units}), "
                                      "so the decoder cannot copy the encoder's states. Set model.bridge: dense (or "
                                      "zero), or remove model.decoder_units")
        if self.attention == "dot" and decoder_units != self.units:
            raise Broken(("attention",), f"model.attention: dot compares decoder states ({decoder_units}) with encoder "
                                         f"outputs ({self.units}) of another size. Set model.attention: general, or "
                                         "remove model.decoder_units")
        if self.input_feeding and self.recurrent_dropout:
            raise Broken(("input_feeding",), "model.input_feeding steps the decoder's cells one token at a time, "
                                             "without recurrent dropout. Set model.recurrent_dropout: 0 (model.dropout "
                                             "regularises between layers) or model.input_feeding: false")

# Keras accumulates gradients inside a condition, where a strategy of several replicas cannot
# synchronize them (`distribute.make_strategy` checks the replicas `auto` finds).
ACCUMULATE_REPLICAS = ("train.accumulate: {accumulate} cannot run with {replicas} (Keras' gradient accumulation does "
                       "not synchronize replicas); the replicas already add their batches into one update: raise "
                       "train.batch_size instead, or set train.accumulate: 1")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(10, "passes over the training data (read into memory); see train.steps for corpora larger "
                           "than memory", min=1, max=MAX_COUNT)
    steps: Optional[int] = option(
        None, "train this many steps on a stream of the training files (translation corpora of any size: files "
              "are read as they are needed), validating every validate_every steps, instead of train.epochs passes",
        min=1, max=MAX_COUNT)
    validate_every: int = option(1000, "train.steps: steps between validations (each also a checkpoint: a multiple "
                                     "of checkpoint_every)", min=1, max=MAX_COUNT)
    checkpoint_every: int = option(1000, "train.steps: steps between checkpoints (weights, optimizer and the "
                                       "input's position); a killed run loses at most this many", min=1,
                                  max=MAX_COUNT)
    keep_checkpoints: int = option(2, "checkpoints kept on disk, the newest (the best weights are kept apart, in "
                                    "model.weights.h5)", min=1, max=MAX_COUNT)
    select_by: Literal["loss", "bleu", "chrf"] = option(
        "loss", "what picks the run's best weights (model.weights.h5) at each validation: the loss, or (translation) "
                "BLEU or chrF of the validation split's translations (decoded as decode: says; greedy where it samples), then "
                "computed at every validation")
    average_last: int = option(0, "when training ends, average the last N checkpoints into RUN/averaged (a run "
                                "directory of its own, as `textseq average` writes); 0: none", min=0,
                                max=MAX_COUNT)
    batch_size: int = option(64, "examples per batch: the global batch, split evenly across replicas", min=1,
                            max=MAX_BATCH)
    batch_tokens: Optional[int] = option(
        None, "train.steps: batches of at most this many tokens per side (padding included) instead of batch_size "
              "examples, from buckets of similar lengths: the usual choice for large corpora", min=1,
        max=MAX_BATCH_TOKENS)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = option("adam", "optimizer")
    learning_rate: float = option(1e-3, "learning rate", above=0.0, max=100.0)
    clipnorm: Optional[float] = option(1.0, "largest gradient norm (see train.clip); null disables clipping", above=0.0,
                                     max=1e9)
    clip: Literal["each", "global"] = option(
        "each", "each: every weight's gradient is clipped to clipnorm on its own (Keras' clipnorm); global: all "
        "gradients are scaled together so that their joint norm is at most clipnorm (PyTorch's clip_grad_norm_)")
    early_stopping_patience: int = option(
        0, "stop after this many validations without a better score by train.select_by (the loss, BLEU or chrF); "
           "0 never stops early", min=0, max=MAX_COUNT)
    reduce_lr_patience: int = option(
        0, "halve the learning rate after this many validations without a better score by train.select_by; 0 never "
           "(schedule: constant without warm-up)", min=0, max=MAX_COUNT)
    schedule: Literal["constant", "cosine", "inverse_sqrt"] = option(
        "constant", "learning rate over the run, after warmup_steps: constant (halved on plateaus by "
        "reduce_lr_patience), cosine (down to a tenth of learning_rate at the run's last update), or inverse_sqrt "
        "(learning_rate x sqrt(warmup_steps / update): the Transformer's decay; needs warmup_steps)")
    warmup_steps: int = option(0, "updates over which the learning rate rises linearly from 0 to learning_rate",
                               min=0, max=MAX_COUNT)
    accumulate: int = option(
        1, "batches whose gradients are averaged into one update: an effective batch of batch_size x accumulate "
           "(train.steps counts batches)", min=1, max=MAX_COUNT)
    ema: Optional[float] = option(
        None, "keep an exponential moving average of the weights with this decay, e.g. 0.999, warmed up as "
              "min(ema, (1 + n) / (10 + n)) after n steps: validation, train.select_by and the best weights "
              "(model.weights.h5) use the average; checkpoints keep both. null: none", min=0.0, below=1.0)
    label_smoothing: float = option(0.0, "share of each target's probability spread over the whole vocabulary in the training loss", min=0.0, below=1.0)
    seed: int = option(0, "seed of weights initialisation, dropout and shuffling", min=0, max=MAX_SEED)
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = option(
        "auto", "auto: a TPU if found, mirrored over 2+ GPUs, else one device; multi_worker: the cluster in TF_CONFIG")
    devices: Optional[str] = option(None, "mirrored: comma-separated devices, e.g. /gpu:0,/gpu:1 or /cpu:0,/cpu:1")
    tpu: Optional[str] = option(None, "tpu: the TPU's name or grpc:// address; empty on a TPU VM")
    kernels: Literal["auto", "keras"] = option(
        "auto", "auto: TensorFlow's speed path (textseq.kernels: hoisted recurrent loops on CPUs and TPUs, fused "
        "attention scores and loss, exact sparse gradient clipping) on the TensorFlow backend; keras: the pure "
        "Keras layers, loss and optimizers")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16", "auto"] = option(
        "float32", "mixed_float16 on GPUs, mixed_bfloat16 on TPUs and CPUs with bf16; logits stay float32. auto: "
        "mixed_bfloat16 where the TPU, GPU (8.0+) or CPU (AVX512_BF16, AMX) has bf16, mixed_float16 on 7.x GPUs, "
        "else float32")
    init_from: Optional[str] = option(
        None, "fine-tuning: start from another run's weights (a run directory: its best weights; or a .weights.h5 "
              "file of one) and its vocabulary; data, schedule, dropout and decoding may change, the model's shape "
              "may not. A resumed run goes on from its own checkpoint")

    def check(self) -> None:
        if self.steps and self.validate_every % self.checkpoint_every:
            every = max(1, self.validate_every // self.checkpoint_every) * self.checkpoint_every
            raise Broken(("validate_every",), f"train.validate_every: {self.validate_every} is not a multiple of "
                         f"train.checkpoint_every ({self.checkpoint_every}); every validation is also a checkpoint, "
                         f"so the best weights can be kept. E.g. validate_every: {every}")
        if self.batch_tokens and not self.steps:
            raise Broken(("batch_tokens",), "train.batch_tokens makes batches from a stream; it needs train.steps "
                                            "(set train.steps, or use train.batch_size with train.epochs)")
        if self.devices and self.strategy != "mirrored":
            raise Broken(("devices",), f"train.devices applies to train.strategy: mirrored; got strategy "
                                       f"{self.strategy!r}. Set train.strategy=mirrored or remove train.devices")
        if self.reduce_lr_patience and (self.schedule != "constant" or self.warmup_steps):
            what = f"train.schedule: {self.schedule} already decays it" if self.schedule != "constant" else \
                "train.warmup_steps schedules it"
            raise Broken(("reduce_lr_patience",), f"train.reduce_lr_patience halves a constant learning rate; {what}. "
                         "Set reduce_lr_patience: 0, or schedule: constant without warmup_steps")
        if self.schedule == "inverse_sqrt" and not self.warmup_steps:
            raise Broken(("schedule",), "train.schedule: inverse_sqrt decays from the end of the warm-up; set "
                                        "train.warmup_steps (e.g. 4000), or schedule: constant or cosine")
        if self.accumulate > 1 and self.strategy in ("mirrored", "multi_worker", "tpu"):
            raise Broken(("accumulate",), ACCUMULATE_REPLICAS.format(accumulate=self.accumulate,
                                                                     replicas=f"train.strategy: {self.strategy}"))
        if self.strategy == "multi_worker" and self.select_by != "loss" and (
                self.early_stopping_patience or self.reduce_lr_patience):
            raise Broken(("select_by",), f"train.select_by: {self.select_by} is scored by the chief alone, so the "
                                         "workers cannot follow it to stop or halve the rate together under "
                                         "strategy: multi_worker. Set select_by: loss, or early_stopping_patience "
                                         "and reduce_lr_patience: 0")

@dataclass(frozen=True)
class DecodingOptions:
    """How translate, evaluate, attention, the web page and the export decode: greedy (beam_size 1),
    beam search, or sampling (when temperature, top_k or top_p is set). The recipe's `decode:`
    section; the CLI's flags (--beam-size, --max-length, ...) and the JSON API's fields have the same
    names, and every way in is checked here.

    >>> DecodingOptions(beam_size=5, alpha=0.6).method
    'beam'
    >>> DecodingOptions(temperature=0.8).describe()
    {'method': 'sample', 'max_length': 64, 'temperature': 0.8, 'top_k': None, 'top_p': None, 'seed': None, 'n_best': 1}
    """

    max_length: int = option(64, "longest output, in tokens", min=1, max=MAX_TOKENS)
    beam_size: int = option(1, "hypotheses kept by beam search; 1 is greedy decoding", min=1, max=MAX_BEAM)
    alpha: float = option(0.0, "beam search length penalty (GNMT): 0 ranks by log-probability, higher favours longer "
                             "outputs", min=0.0, max=MAX_ALPHA)
    n_best: int = option(1, "hypotheses returned per source: at most beam_size, or that many samples", min=1,
                       max=MAX_BEAM)
    temperature: Optional[float] = option(
        None, f"sample at this temperature instead of searching ({MIN_TEMPERATURE} to {MAX_TEMPERATURE:g}; below, "
              "sampling is greedy decoding)", min=MIN_TEMPERATURE, max=MAX_TEMPERATURE)
    top_k: Optional[int] = option(None, "sample from the k most probable tokens only", min=1, max=MAX_VOCABULARY)
    top_p: Optional[float] = option(None, "sample from the smallest set of tokens whose probability reaches p",
                                  above=0.0, max=1.0)
    seed: Optional[int] = option(None, "seed of sampling: the same seed gives the same output", min=0, max=MAX_SEED)

    def __post_init__(self):
        hints = hints_of(DecodingOptions)
        for f in dataclasses.fields(self):
            check_value(getattr(self, f.name), hints[f.name], f.metadata, ("decode", f.name), Where("", {}, []))
        if self.method == "beam" and self.n_best > self.beam_size:
            raise UserError(f"decode.n_best: {self.n_best} is more than decode.beam_size {self.beam_size}; ask for at "
                            "most beam_size hypotheses")
        if self.method == "sample" and self.beam_size > 1:
            raise UserError("decode: sampling (temperature, top_k, top_p) and beam search (beam_size > 1) exclude "
                            "each other; drop one")

    @property
    def method(self) -> str:
        if self.temperature is not None or self.top_k is not None or self.top_p is not None:
            return "sample"
        return "beam" if self.beam_size > 1 else "greedy"

    def describe(self) -> dict:
        """The settings that matter for `method`, JSON-ready."""
        keys = {"greedy": ("max_length",), "beam": ("max_length", "beam_size", "alpha", "n_best"),
                "sample": ("max_length", "temperature", "top_k", "top_p", "seed", "n_best")}[self.method]
        return {"method": self.method, **{key: getattr(self, key) for key in keys}}


@dataclass(frozen=True)
class Recipe:
    task: Literal["translate", "language_model"] = option(
        "translate", "translate: source text -> target text; language_model: the words so far -> the next ones")
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodingOptions = field(default_factory=DecodingOptions)

    def to_dict(self) -> dict:
        return _plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def check(self) -> None:
        """The rules across sections: what suits the task, and what streaming (train.steps) needs."""
        self._check_task()
        self._check_streaming()

    def _check_task(self) -> None:
        data, task = self.data, self.task
        suits = {"language_model": ("text", "tfds"), "translate": ("dates", "parallel", "tsv", "tfds")}[task]
        if data.source not in suits:
            raise Broken(("data", "source"), f"data.source: {data.source} does not suit task: {task}; use "
                                             f"data.source: {' or '.join(suits)}")
        if task == "language_model" and not self.vocab.shared:
            raise Broken(("vocab", "shared"), "vocab.shared must be true for a language_model: the text it reads is "
                                              "the text it writes")
        if task == "language_model" and self.vocab.subword_alpha:
            raise Broken(("vocab", "subword_alpha"), "vocab.subword_alpha applies to translation: a language "
                         "model's text is one stream of pieces, segmented once; remove it")
        if data.source == "tfds" and task == "translate" and not (data.source_language and data.target_language):
            missing = "source_language" if not data.source_language else "target_language"
            raise Broken(("data", missing), "data.source_language and data.target_language name the dataset's "
                         "source and target features with data.source: tfds (e.g. pt and en for "
                         "ted_hrlr_translate/pt_to_en)")
        if task != "translate" and self.train.select_by != "loss":
            raise Broken(("train", "select_by"), f"train.select_by: {self.train.select_by} scores translations; a "
                                                 f"{task} run selects by loss")

    def _check_streaming(self) -> None:
        data, train = self.data, self.train
        longest = max(data.max_source_length, data.max_target_length)
        if train.batch_tokens and train.batch_tokens < longest:
            raise Broken(("train", "batch_tokens"), f"train.batch_tokens: {train.batch_tokens} is less than the "
                         f"longest pair kept ({longest} tokens: data.max_source_length / max_target_length), which "
                         f"could never be batched; raise batch_tokens to at least {longest} or lower the max lengths")
        if train.steps and (self.task != "translate" or data.source not in ("parallel", "tsv")):
            raise Broken(("train", "steps"), "train.steps streams translation files (data.source: parallel or tsv); "
                                             f"{self.task} with data.source: {data.source} trains by train.epochs")
        if train.steps and self.vocab.subword_alpha:
            raise Broken(("vocab", "subword_alpha"), "vocab.subword_alpha resamples the segmentations of pairs held in "
                         "memory; a streamed run (train.steps) reads each pair as the one best segmentation. Remove "
                         "it, or train by train.epochs")
        if isinstance(data.train, tuple) and data.train and isinstance(data.train[0], Corpus) and not train.steps:
            raise Broken(("data", "train"), "data.train: corpora mixed by weight are streamed; set train.steps (or "
                                            "list the files without weights)")


def _plain(value: Any) -> Any:
    """Sections as dicts under their recipe keys, tuples (of file lists) as lists: plain YAML."""
    if dataclasses.is_dataclass(value):
        return {recipe_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
