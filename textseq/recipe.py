"""Recipes: typed, frozen dataclasses loaded from YAML, with `--set a.b=c` overrides.

Every default lives in the dataclasses below, next to a one-line explanation; nothing else in the
package invents a default. Validation names the key path, the file and line, what was received and
what is allowed, and suggests the nearest key for a typo.

>>> recipe = load_recipe("recipes/dates.yaml", overrides=["model.cell=gru"])
>>> recipe.model.cell
'gru'
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from textseq.errors import UserError

log = logging.getLogger(__name__)


MAX_SEED = 2**32 - 1  # what NumPy's and Keras' seeds take
MAX_TOKENS = 100_000  # the longest sequence a length or window may ask for; tensors are sized by it
MAX_ALPHA = 5.0  # beam search length penalty: GNMT's papers use up to 1; beyond 5 the length alone ranks
MAX_BEAM = 256  # hypotheses a beam search keeps: beyond, every step's top-k sorts most of a vocabulary
# Upper bounds of sizes, far above any use on one machine and below what exhausts one (or hangs it):
MAX_UNITS = 16_384  # embedding, recurrent and attention sizes: an LSTM of 16k units has 2 GB of weights a layer
MAX_LAYERS = 64
MAX_BATCH = 65_536  # examples in a batch (the global batch)
MAX_BATCH_TOKENS = 10_000_000
MAX_HELD = 10_000_000  # pairs or lines held in memory at once: a shuffle buffer, a vocabulary's sample
MAX_GENERATED = 5_000_000  # dates pairs generated into memory
MAX_DISTINCT_DATES = 30_000  # held-out dates are distinct days of 1950-2049
MAX_COUNT = 10**12  # epochs, steps, checkpoints, patience: counts that cost time, not memory
MAX_VOCABULARY = 1_000_000
MAX_WEIGHT = 1e6  # a corpus weight (data.train corpora): their sum must stay finite
MAX_RECIPE_BYTES = 1_000_000  # a recipe is a short YAML file
# Sampling temperatures: below the least, float32 logits over it overflow (garbage, or padding tokens);
# the distribution is then greedy decoding's anyway.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.001, 100.0
# The section `decode:` was called `export:` in runs made before it drove translate and evaluate too.
RENAMED_SECTIONS = {"export": ("decode", {"max_output_length": "max_length"})}


class Files:
    """A recipe type: one path or glob, a list of them, or (data.train) a list of corpora with weights
    (`[{files: ..., weight: 2}, ...]`). Kept as a string, a tuple of strings, or a tuple of `Corpus`."""


@dataclass(frozen=True)
class Corpus:
    """One training corpus of several, mixed by weight: `{files: PATH_OR_GLOB_OR_LIST, weight: 1}`."""

    files: tuple[str, ...]
    weight: float = 1.0


class Broken(Exception):
    """A section's rule that involves more than one key: the key to point at (within the section;
    empty for the section itself) and the message. Loading adds the file and line."""

    def __init__(self, key: tuple[str, ...], message: str):
        super().__init__(message)
        self.key, self.message = key, message


def _opt(default: Any, help: str, **checks: Any) -> Any:
    """A recipe field: its default, its help line, and checks such as `min=1`, `max=9` or `below=1`."""
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True)
class DataConfig:
    source: Literal["dates", "parallel", "tsv", "text", "tfds"] = _opt(
        "dates", "dates: generated, offline; parallel: aligned files PREFIX.SRC_LANG / PREFIX.TGT_LANG; "
                 "tsv: one file per split of SOURCE<TAB>TARGET lines; "
                 "text: plain text files for language models; tfds: a TensorFlow Datasets dataset")
    dataset: Optional[str] = _opt(None, "tfds: the dataset's name, e.g. tiny_shakespeare or ted_hrlr_translate/pt_to_en")
    text_field: str = _opt("text", "tfds with task language_model: the feature that holds the text")
    dir: Optional[str] = _opt(None, "parallel, tsv, text: directory of relative paths; default $TEXTSEQ_DATA or "
                                    "~/.cache/textseq")
    train: Optional[Files] = _opt(
        None, "parallel: prefix of the training files, e.g. multi30k/tok/train.lc.norm.tok; tsv, text: the training "
              "file. parallel and tsv also take a glob (wmt/train-*) or a list, plain or .gz, and with train.steps a "
              "list of corpora mixed by weight: [{files: ..., weight: 3}, {files: ..., weight: 1}]")
    validation: Optional[Files] = _opt(
        None, "parallel: prefix(es) of the validation files; tsv, text: the validation file; tfds: the split's name "
              "(default validation; train for the others)")
    test: Optional[Files] = _opt(None, "parallel: prefix(es) of the test files; tsv, text: the test file; tfds: the "
                                       "split's name")
    encoding_errors: Literal["strict", "replace", "skip"] = _opt(
        "strict", "lines that are not UTF-8: strict stops (naming file, line, byte), replace puts U+FFFD in, "
                  "skip drops the line (with its pair in parallel files)")
    split: Optional[float] = _opt(None, "text without a validation file: the share of data.train's characters that "
                                        "trains (the first ones); the rest validates and tests", above=0.0, below=1.0)
    context: int = _opt(64, "language_model: tokens of preceding text the encoder reads", min=1, max=MAX_TOKENS)
    continuation: int = _opt(32, "language_model: tokens the decoder predicts after each context window", min=1, max=MAX_TOKENS)
    carry_state: bool = _opt(True, "language_model: each window's decoder starts from its state at the end of the "
                                   "previous window of the same stream (truncated back-propagation through time); "
                                   "false: from the encoder's states, with the windows shuffled")
    source_language: Optional[str] = _opt(None, "parallel: suffix of the source files, e.g. de; tfds: the source feature")
    target_language: Optional[str] = _opt(None, "parallel: suffix of the target files, e.g. en; tfds: the target feature")
    train_examples: int = _opt(50_000, "dates: number of generated training pairs", min=1, max=MAX_GENERATED)
    validation_examples: int = _opt(1_000, "dates: held-out pairs, each a distinct date", min=1,
                                     max=MAX_DISTINCT_DATES)
    test_examples: int = _opt(2_000, "dates: test pairs, each a distinct date", min=1, max=MAX_DISTINCT_DATES)
    seed: int = _opt(0, "seed of the data generator and of the train/validation/test split", min=0, max=MAX_SEED)
    max_source_length: int = _opt(128, "source tokens kept; with train.epochs longer inputs are truncated, with "
                                       "train.steps training pairs that are longer are dropped (and counted)",
                                  min=1, max=MAX_TOKENS)
    max_target_length: int = _opt(128, "target tokens kept in training (the end mark included); longer ones are "
                                       "truncated or, with train.steps, dropped", min=1, max=MAX_TOKENS)
    shuffle_buffer: int = _opt(100_000, "train.steps: training pairs held to shuffle the stream (files are also "
                                        "read in a new order on every pass); more mixes better and takes more memory",
                               min=1, max=MAX_HELD)
    bleu_tokenize: Literal["13a", "none", "intl", "char", "zh", "ja-mecab", "flores200"] = _opt(
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
    level: Literal["char", "word", "sentencepiece"] = _opt(
        "word", "token unit: characters, whitespace-separated words, or SentencePiece subwords trained on the "
                "corpus (plain text in and out; any UTF-8 text maps to known pieces with byte_fallback)")
    lowercase: bool = _opt(False, "lower-case text before splitting it into tokens")
    max_size: Optional[int] = _opt(None, "char, word: keep at most this many tokens (reserved ones included)", min=5,
                                    max=MAX_VOCABULARY)
    min_count: int = _opt(1, "char, word: drop tokens seen fewer times in the training data", min=1, max=MAX_COUNT)
    shared: bool = _opt(True, "one vocabulary for source and target (vocab.txt or spm.model), or one each")
    size: int = _opt(8000, "sentencepiece: pieces in the vocabulary, the 4 reserved ones included", min=8,
                     max=MAX_VOCABULARY)
    model_type: Literal["unigram", "bpe"] = _opt("unigram", "sentencepiece: the segmentation model")
    character_coverage: float = _opt(
        0.9995, "sentencepiece: share of the sample's characters that get pieces of their own; the rarest rest "
                "is spelled in bytes (byte_fallback); SentencePiece takes 0.98 to 1.0", min=0.98, max=1.0)
    byte_fallback: bool = _opt(True, "sentencepiece: spell characters without a piece as UTF-8 bytes, so no text "
                                     "is ever read as <unk>")
    sample_lines: int = _opt(1_000_000, "sentencepiece: lines of training text (a seeded sample, read in one pass) "
                                        "the vocabulary is learned from", min=1, max=MAX_HELD)
    subword_alpha: Optional[float] = _opt(
        None, "sentencepiece, translate: subword regularization: every training batch samples its segmentations "
              "with this smoothing (0.1 is usual; smaller is more varied); null: always the one best segmentation",
        above=0.0, max=1.0)



    def check(self) -> None:
        if self.level != "sentencepiece" and self.subword_alpha:
            raise Broken(("subword_alpha",), "vocab.subword_alpha samples SentencePiece segmentations; set "
                                             "vocab.level: sentencepiece, or remove it")
        if self.level == "sentencepiece" and self.max_size:
            raise Broken(("max_size",), "vocab.max_size applies to word and char vocabularies; a sentencepiece "
                                        "vocabulary has exactly vocab.size pieces: set that instead")

@dataclass(frozen=True)
class ModelConfig:
    cell: Literal["lstm", "gru"] = _opt("lstm", "recurrent cell of encoder and decoder")
    embedding_dim: int = _opt(128, "size of the token embeddings", min=1, max=MAX_UNITS)
    units: int = _opt(256, "recurrent units; with a bidirectional encoder, half per direction", min=1, max=MAX_UNITS)
    layers: int = _opt(1, "stacked recurrent layers in the encoder and in the decoder", min=1, max=MAX_LAYERS)
    bidirectional: bool = _opt(True, "read the source in both directions")
    dropout: float = _opt(0.0, "dropout on embeddings, between layers and before the output", min=0.0, below=1.0)
    recurrent_dropout: float = _opt(0.0, "dropout on the recurrent state; > 0 leaves the fused (cuDNN) kernels",
                                    min=0.0, below=1.0)
    attention_units: int = _opt(256, "size of the additive attention's hidden layer", min=1, max=MAX_UNITS)



    def check(self) -> None:
        if self.bidirectional and self.units % 2:
            raise Broken(("units",), "model.units must be even with a bidirectional encoder (half the units read "
                                     f"each direction); got {self.units}")

@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _opt(10, "passes over the training data (read into memory); see train.steps for corpora larger "
                           "than memory", min=1, max=MAX_COUNT)
    steps: Optional[int] = _opt(
        None, "train this many steps on a stream of the training files (translation corpora of any size: files "
              "are read as they are needed), validating every validate_every steps, instead of train.epochs passes",
        min=1, max=MAX_COUNT)
    validate_every: int = _opt(1000, "train.steps: steps between validations (each also a checkpoint: a multiple "
                                     "of checkpoint_every)", min=1, max=MAX_COUNT)
    checkpoint_every: int = _opt(1000, "train.steps: steps between checkpoints (weights, optimizer and the "
                                       "input's position); a killed run loses at most this many", min=1,
                                  max=MAX_COUNT)
    keep_checkpoints: int = _opt(2, "checkpoints kept on disk, the newest (the best weights are kept apart, in "
                                    "model.weights.h5)", min=1, max=MAX_COUNT)
    select_by: Literal["loss", "bleu", "chrf"] = _opt(
        "loss", "what picks the run's best weights (model.weights.h5) at each validation: the loss, or (translation) "
                "BLEU or chrF of the validation split's greedy translations, then computed at every validation")
    average_last: int = _opt(0, "when training ends, average the last N checkpoints into RUN/averaged (a run "
                                "directory of its own, as `textseq average` writes); 0: none", min=0,
                                max=MAX_COUNT)
    batch_size: int = _opt(64, "examples per batch: the global batch, split evenly across replicas", min=1,
                            max=MAX_BATCH)
    batch_tokens: Optional[int] = _opt(
        None, "train.steps: batches of at most this many tokens per side (padding included) instead of batch_size "
              "examples, from buckets of similar lengths: the usual choice for large corpora", min=1,
        max=MAX_BATCH_TOKENS)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = _opt("adam", "optimizer")
    learning_rate: float = _opt(1e-3, "learning rate", above=0.0, max=100.0)
    clipnorm: Optional[float] = _opt(1.0, "largest gradient norm (see train.clip); null disables clipping", above=0.0,
                                     max=1e9)
    clip: Literal["each", "global"] = _opt(
        "each", "each: every weight's gradient is clipped to clipnorm on its own (Keras' clipnorm); global: all "
        "gradients are scaled together so that their joint norm is at most clipnorm (PyTorch's clip_grad_norm_)")
    early_stopping_patience: int = _opt(0, "stop after this many epochs without a better validation loss; 0 never stops early", min=0, max=MAX_COUNT)
    reduce_lr_patience: int = _opt(0, "halve the learning rate after this many epochs without a better validation loss; 0 never", min=0, max=MAX_COUNT)
    schedule: Literal["constant", "cosine"] = _opt(
        "constant", "learning rate over the run: constant (halved on plateaus by reduce_lr_patience), or cosine "
        "from learning_rate down to a tenth of it at the last step of train.epochs")
    label_smoothing: float = _opt(0.0, "share of each target's probability spread over the whole vocabulary in the training loss", min=0.0, below=1.0)
    seed: int = _opt(0, "seed of weights initialisation, dropout and shuffling", min=0, max=MAX_SEED)
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = _opt(
        "auto", "auto: a TPU if found, mirrored over 2+ GPUs, else one device; multi_worker: the cluster in TF_CONFIG")
    devices: Optional[str] = _opt(None, "mirrored: comma-separated devices, e.g. /gpu:0,/gpu:1 or /cpu:0,/cpu:1")
    tpu: Optional[str] = _opt(None, "tpu: the TPU's name or grpc:// address; empty on a TPU VM")
    kernels: Literal["auto", "keras"] = _opt(
        "auto", "auto: TensorFlow's speed path (textseq.kernels: hoisted recurrent loops on CPUs and TPUs, fused "
        "attention scores and loss, exact sparse gradient clipping) on the TensorFlow backend; keras: the pure "
        "Keras layers, loss and optimizers")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16", "auto"] = _opt(
        "float32", "mixed_float16 on GPUs, mixed_bfloat16 on TPUs and CPUs with bf16; logits stay float32. auto: "
        "mixed_bfloat16 where the TPU, GPU (8.0+) or CPU (AVX512_BF16, AMX) has bf16, mixed_float16 on 7.x GPUs, "
        "else float32")



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
        if self.schedule == "cosine" and self.reduce_lr_patience:
            raise Broken(("reduce_lr_patience",), "train.reduce_lr_patience halves a constant learning rate; "
                         "train.schedule: cosine already decays it. Set one of them: reduce_lr_patience: 0, or "
                         "schedule: constant")

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

    max_length: int = _opt(64, "longest output, in tokens", min=1, max=MAX_TOKENS)
    beam_size: int = _opt(1, "hypotheses kept by beam search; 1 is greedy decoding", min=1, max=MAX_BEAM)
    alpha: float = _opt(0.0, "beam search length penalty (GNMT): 0 ranks by log-probability, higher favours longer "
                             "outputs", min=0.0, max=MAX_ALPHA)
    n_best: int = _opt(1, "hypotheses returned per source: at most beam_size, or that many samples", min=1,
                       max=MAX_BEAM)
    temperature: Optional[float] = _opt(
        None, f"sample at this temperature instead of searching ({MIN_TEMPERATURE} to {MAX_TEMPERATURE:g}; below, "
              "sampling is greedy decoding)", min=MIN_TEMPERATURE, max=MAX_TEMPERATURE)
    top_k: Optional[int] = _opt(None, "sample from the k most probable tokens only", min=1, max=MAX_VOCABULARY)
    top_p: Optional[float] = _opt(None, "sample from the smallest set of tokens whose probability reaches p",
                                  above=0.0, max=1.0)
    seed: Optional[int] = _opt(None, "seed of sampling: the same seed gives the same output", min=0, max=MAX_SEED)

    def __post_init__(self):
        hints = typing.get_type_hints(DecodingOptions)
        for f in dataclasses.fields(self):
            _check_value(getattr(self, f.name), hints[f.name], f.metadata, ("decode", f.name), _Where("", {}, []))
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
    task: Literal["translate", "language_model"] = _opt(
        "translate", "translate: source text -> target text; language_model: the words so far -> the next ones")
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodingOptions = field(default_factory=DecodingOptions)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

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
        if isinstance(data.train, tuple) and data.train and isinstance(data.train[0], Corpus) and not train.steps:
            raise Broken(("data", "train"), "data.train: corpora mixed by weight are streamed; set train.steps (or "
                                            "list the files without weights)")


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Reads a YAML recipe, applies `key.path=value` overrides, and validates the result."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such recipe file; recipes/ has ready ones, e.g. recipes/dates.yaml")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the path of a recipe .yaml file")
    text = read_recipe_text(path)
    try:
        reject_aliases(text, str(path))
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text), source=str(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"{where}: YAML syntax error: {problem}; fix the line or quote the value") from None
    if raw is None or raw == {}:
        raise UserError(f"{path}: the recipe is empty; a recipe says at least what data to train on (data:) and "
                        "usually the model and training sizes; recipes/dates.yaml is a small one to start from")
    if not isinstance(raw, dict):
        raise UserError(f"{path}:1: a recipe is a mapping of sections (data, vocab, model, train, decode); got {type(raw).__name__}")
    return recipe_from_dict(raw, overrides, source=str(path), lines=lines)


def read_recipe_text(path: Path) -> str:
    """The recipe file's text, or a UserError that names the file, line and byte that are not UTF-8."""
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise UserError(f"{path}: {size:,} bytes; a recipe is a short YAML file (at most "
                        f"{MAX_RECIPE_BYTES:,} bytes): is this the right file?")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: byte {data[error.start]:#04x} (offset {error.start}) is not UTF-8; save the "
                        "recipe as UTF-8 text") from None


def reject_aliases(text: str, source: str) -> None:
    """Refuses YAML aliases (`*name`): expanded, a few hundred bytes of them can ask for gigabytes."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise UserError(f"{source}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted "
                            "in recipes; write the value out")


def recipe_from_dict(raw: dict, overrides: list[str] = (), source: str = "recipe", lines: dict | None = None) -> Recipe:
    """Builds a validated Recipe from plain data (what `yaml.safe_load` gives) and overrides."""
    raw = _rename_old_sections(_deep_copy(raw), source)
    for item in overrides:
        _apply_override(raw, _renamed_override(item))
    recipe = _build(Recipe, raw, (), _Where(source, lines or {}, overrides))
    if recipe.data.dir and not Path(recipe.data.dir).expanduser().is_absolute():
        # Relative to where the command runs; kept absolute so the run can be used from anywhere.
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(
            recipe.data, dir=str(Path(recipe.data.dir).expanduser().resolve())))
    return recipe


def recipe_differences(old: Recipe, new: Recipe) -> list[str]:
    """The dotted keys whose values differ between two recipes."""
    before = _flatten(old.to_dict())
    return sorted(k for k, v in _flatten(new.to_dict()).items() if before.get(k) != v)


# --- loading and validation --------------------------------------------------------------------


@dataclass
class _Where:
    source: str
    lines: dict
    overrides: list

    def __call__(self, path: tuple) -> str:
        dotted = ".".join(path)
        for item in self.overrides:
            if item.split("=", 1)[0].strip() == dotted:
                return f"--set {item}: "
        line = self.lines.get(path)
        if not self.source:
            return ""
        return f"{self.source}:{line}: " if line else f"{self.source}: "


def _key_lines(node: yaml.Node | None, prefix: tuple = (), source: str = "recipe") -> dict:
    """Maps each key path to the 1-based line where it is written; a key written twice is refused
    (YAML keeps the last one silently)."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (str(key.value),)
            if path in lines:
                raise UserError(f"{source}:{key.start_mark.line + 1}: {'.'.join(path)} is written twice (also on "
                                f"line {lines[path]}); keep one")
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path, source))
    return lines


def _rename_old_sections(raw: dict, source: str) -> dict:
    """A recipe written before a section was renamed, read with today's names (and a note saying so)."""
    for old, (new, keys) in RENAMED_SECTIONS.items():
        if old in raw:
            if new in raw:
                raise UserError(f"{source}: has both {old}: and {new}:; {old}: is the old name of {new}:, keep one")
            section = raw.pop(old)
            raw[new] = {keys.get(key, key): value for key, value in section.items()} if isinstance(section, dict) \
                else section
            log.info("note: %s: the %s: section is now called %s:%s; read as such", source, old, new,
                     "".join(f" ({old}.{a} is {new}.{b})" for a, b in keys.items()))
    return raw


def _renamed_override(item: str) -> str:
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if section in RENAMED_SECTIONS and dot:
        new, keys = RENAMED_SECTIONS[section]
        return f"{new}.{keys.get(name, name)}{sep}{value}"
    return item


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set model.units=128")
    key, value = (part.strip() for part in item.split("=", 1))
    parts = key.split(".")
    target = raw
    for part in parts[:-1]:
        if not isinstance(target.get(part, {}), dict):
            raise UserError(f"--set {item}: {part} is not a section")
        target = target.setdefault(part, {})
    try:
        reject_aliases(value, f"--set {item}")
        target[parts[-1]] = yaml.safe_load(value) if value else None
    except yaml.YAMLError:
        target[parts[-1]] = value


def _build(cls: type, raw: Any, path: tuple, where: _Where) -> Any:
    dotted = ".".join(path) or "the recipe"
    if not isinstance(raw, dict):
        raise UserError(f"{where(path)}{dotted} must be a mapping of keys; got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            name = ".".join(path + (str(key),))
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {'.'.join(path + (near[0],))}?" if near else f"; known keys: {', '.join(fields)}"
            raise UserError(f"{where(path + (str(key),))}unknown key {name}{hint}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name] if raw[name] is not None else {}, path + (name,), where)
        else:
            values[name] = _check_value(raw[name], hint, f.metadata, path + (name,), where)
    try:
        recipe = cls(**values)
    except UserError as error:  # rules of a section's own (DecodingOptions)
        raise UserError(f"{where(path)}{error}") from None
    try:
        getattr(recipe, "check", lambda: None)()
    except Broken as broken:
        raise UserError(f"{where(path + broken.key)}{broken.message}") from None
    return recipe


def _check_value(value: Any, hint: Any, checks: dict, path: tuple, where: _Where) -> Any:
    dotted = ".".join(path)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is Files:
        return _check_files(value, path, where)
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise UserError(f"{where(path)}{dotted} must be one of {', '.join(allowed)}; got {value!r}")
        return value
    expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[hint]
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise UserError(f"{where(path)}{dotted} must be {expected}; got {value!r}")
    if hint is float and not math.isfinite(value):
        raise UserError(f"{where(path)}{dotted} must be a finite number; got {value!r}")
    for check, bound in checks.items():
        bad = {
            "min": lambda: value < bound,
            "max": lambda: value > bound,
            "above": lambda: value <= bound,
            "below": lambda: value >= bound,
        }.get(check, lambda: False)()
        if bad:
            rule = {"min": f"at least {bound}", "max": f"at most {bound}", "above": f"greater than {bound}",
                    "below": f"less than {bound}"}[check]
            raise UserError(f"{where(path)}{dotted} must be {rule}; got {value!r}")
    return value


def _check_files(value: Any, path: tuple, where: _Where) -> str | tuple:
    """A `Files` value: a string, a list of strings, or (data.train) a list of {files, weight}."""
    dotted = ".".join(path)
    wanted = ("a path or glob, or a list of them" +
              (", or a list of corpora {files: ..., weight: ...}" if path[-1] == "train" else ""))

    def paths(item, key):
        if isinstance(item, str) and item.strip():
            return item
        if isinstance(item, list) and item and all(isinstance(i, str) and i.strip() for i in item):
            return tuple(item)
        raise UserError(f"{where(path)}{key} must be {wanted}; got {item!r}")

    if not isinstance(value, list) or not any(isinstance(item, dict) for item in value):
        return paths(value, dotted)
    if path[-1] != "train":
        raise UserError(f"{where(path)}{dotted}: corpora with weights mix training data; give {dotted} a path, glob "
                        "or list")
    corpora = []
    for number, item in enumerate(value):
        key = f"{dotted}[{number}]"
        if not isinstance(item, dict) or "files" not in item or set(item) - {"files", "weight"}:
            raise UserError(f"{where(path)}{key} must be a mapping with files: (a path, glob or list) and weight: "
                            f"(a positive number); got {item!r}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or not 0 < weight <= MAX_WEIGHT:
            raise UserError(f"{where(path)}{key}.weight must be a positive number of at most {MAX_WEIGHT:g} (the "
                            f"corpus' share of training pairs is its weight over the sum of weights); got {weight!r}")
        files = paths(item["files"], f"{key}.files")
        corpora.append(Corpus(files if isinstance(files, tuple) else (files,), float(weight)))
    return tuple(corpora)


def _plain(value: Any) -> Any:
    """Tuples (of file lists) as lists, so that the recipe dumps as plain YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_defaults() -> str:
    """Every recipe key with its default and help line, for `--help` and the README."""
    rows = []
    for section in dataclasses.fields(Recipe):
        hint = typing.get_type_hints(Recipe)[section.name]
        if not dataclasses.is_dataclass(hint):
            rows.append(f"{section.name}: {section.default!r}  # {section.metadata['help']}")
            continue
        rows.append(f"{section.name}:")
        for f in dataclasses.fields(hint):
            default = "null" if f.default is None else yaml.safe_dump(f.default).strip().removesuffix("...").strip()
            rows.append(f"  {f.name}: {default}  # {f.metadata['help']}")
    return "\n".join(rows)
