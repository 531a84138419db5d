"""A trained run, loaded for use with its own vocabulary and weights: `Translator` for translation
runs, `LanguageModel` for next-word runs; `load(run_dir)` picks the right one.

>>> translator = Translator.from_run("runs/dates")  # doctest: +SKIP
>>> translator.translate(["3rd of March 1998", "Tue, 03.03.98"])  # doctest: +SKIP
['1998-03-03', '1998-03-03']
>>> translator.n_best(["3rd of March 1998"], translator.options(beam_size=5, n_best=2))  # doctest: +SKIP
[[Hypothesis(text='1998-03-03', score=-0.0012), Hypothesis(text='1998-03-13', score=-7.1)]]
>>> LanguageModel.from_run("runs/multi30k-en-lm").predict(["a man is riding a"], k=2)  # doctest: +SKIP
[[Prediction(token='bike', probability=0.31), Prediction(token='horse', probability=0.12)]]
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from textseq.constants import PAD, RESERVED, UNK
from textseq.data.tokenizer import Tokenizer, tokenizer_for
from textseq.decoding import DecodingOptions, sampler
from textseq.errors import UserError
from textseq.models import Seq2Seq
from textseq.next_words import top_next_words, top_suggestions
from textseq.recipe import Recipe
from textseq.checkpoints import load_model
from textseq.runs import Run, weights_record
from textseq.scoring import score_pairs, score_text
from textseq.readings import Readings
from textseq.windows import read_texts, walk_windows
from textseq.translating import Hypothesis, TextTranslator

log = logging.getLogger(__name__)


class Attention(NamedTuple):
    source_tokens: list[str]
    output_tokens: list[str]  # ends with "</s>" when the model ended the output
    weights: np.ndarray  # [output tokens, source tokens]; each row sums to 1


class Prediction(NamedTuple):
    token: str
    probability: float


# Graph functions shared by the classes below and by the export (textseq/export.py), so a SavedModel
# answers exactly as the library does (translations: `textseq.translating`).


def next_suggestions(model: Seq2Seq, data, tokenizer, ids: tf.RaggedTensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(probabilities [batch, k], tokens [batch, k])`: the next tokens, or for a SentencePiece
    vocabulary the next whole words (`textseq.next_words`), most probable first."""
    if tokenizer.unit == "piece":  # a word may take several pieces: rank whole words
        return top_next_words(model, data, tokenizer, ids, k)
    top = top_next_tokens(model, data, ids, k)
    return top.values, tf.gather(tokenizer.tokens, top.indices)


def top_next_tokens(model: Seq2Seq, data, ids: tf.RaggedTensor, k: tf.Tensor):
    """The `k` most probable next tokens (`tf.math.top_k` of the probabilities) after each text's ids,
    read window by window as training reads them (`data` is the recipe's data section); never
    `<unk>` or a control token."""
    logits = read_texts(model, ids.to_tensor(PAD), tf.cast(ids.row_lengths(), tf.int32), data.context,
                        data.continuation, data.carry_state)
    return top_suggestions(logits, k)


def prediction_record(model: "LanguageModel", text: str, k: int) -> dict:
    """What `textseq predict --json` prints and `/api/predict` answers: the text, its unknown words
    and the `k` most probable next tokens."""
    (predictions,) = model.predict([text], k)
    return {"text": text, "unknown": model.unknown_words(text),
            "predictions": [{"token": p.token, "probability": p.probability} for p in predictions]}


def translation_record(source: str, hypotheses: list[Hypothesis]) -> dict:
    """What `textseq translate --json` prints and `/api/translate` answers (without the attention)."""
    return {"source": source, "translation": hypotheses[0].text, "hypotheses": [h._asdict() for h in hypotheses]}


class LoadedRun:
    """A run's recipe, tokenizers and model with its best weights."""

    task = None

    def __init__(self, recipe: Recipe, model: Seq2Seq, source: Tokenizer, target: Tokenizer, path: Path | None = None):
        self.recipe, self.model, self.source, self.target = recipe, model, source, target
        self.path = path  # the run directory it was loaded from
        self.weights: dict = {}  # which weights were loaded (`runs.weights_record`), when loaded from a run
        self._compiled: dict = {}

    @classmethod
    def from_run(cls, run_dir: str | Path):
        run = Run.open(run_dir)
        recipe = run.recipe()
        if cls.task and recipe.task != cls.task:
            verbs = "predict, generate and demo" if recipe.task == "language_model" else "translate and attention"
            raise UserError(f"{run.path} is a {recipe.task} run: textseq {verbs} use it "
                            "(in Python: textseq.inference.load)")
        source_vocab, target_vocab = run.vocabulary_files(recipe.vocab).load()
        weights = weights_record(run)
        model = load_model(run, recipe, source_vocab.size, target_vocab.size)
        holder = run.lock.holder()
        if holder:
            chosen = ", ".join(f"{key} {weights[key]}" for key in ("epoch", "step") if key in weights)
            log.warning("warning: %s is being trained (%s): these are its best weights so far (%s); they may be "
                        "replaced when a later validation does better", run.path, holder, chosen or "none recorded")
        source = tokenizer_for(source_vocab)
        loaded = cls(recipe, model, source, source if target_vocab is source_vocab else tokenizer_for(target_vocab),
                     run.path)
        loaded.weights = weights
        return loaded

    def tokenize(self, text: str) -> tuple[list[str], np.ndarray]:
        """The source tokens of `text` as written, and their ids (UNK for unknown ones), in one graph call."""
        if "tokenize" not in self._compiled:
            self._compiled["tokenize"] = tf.function(
                lambda texts: (self.source.split(texts).flat_values, self.source.encode(texts).flat_values),
                input_signature=[tf.TensorSpec([1], tf.string)], autograph=False)
        pieces, ids = self._compiled["tokenize"](tf.constant([text]))
        return [piece.decode("utf-8") for piece in pieces.numpy()], ids.numpy()

    def token_ids(self, text: str) -> np.ndarray:
        """The source token ids of `text` (UNK for unknown tokens): `tokenize` without the spellings,
        for the typing path, where each keystroke waits on it."""
        if "token_ids" not in self._compiled:
            self._compiled["token_ids"] = tf.function(lambda texts: self.source.encode(texts).flat_values,
                                                      input_signature=[tf.TensorSpec([1], tf.string)], autograph=False)
        return self._compiled["token_ids"](tf.constant([text])).numpy()


def load(run_dir: str | Path) -> "Translator | LanguageModel":
    """The run in `run_dir`, as a `Translator` or a `LanguageModel` according to its recipe's task."""
    task = Run.open(run_dir).recipe().task
    return (LanguageModel if task == "language_model" else Translator).from_run(run_dir)


class Translator(LoadedRun):
    task = "translate"

    def options(self, **overrides) -> DecodingOptions:
        """The recipe's `decode` settings, with the given ones (None: keep) replaced."""
        settings = {**dataclasses.asdict(self.recipe.decode),
                    **{key: value for key, value in overrides.items() if value is not None}}
        if overrides.get("beam_size") is None and any(
                overrides.get(key) is not None for key in ("temperature", "top_k", "top_p")):
            settings["beam_size"] = 1  # sampling was asked for, the recipe's beam was not
        return DecodingOptions(**settings)

    @property
    def texts(self) -> TextTranslator:
        """The model and tokenizers as a `TextTranslator` (its compiled searches kept)."""
        if "texts" not in self._compiled:
            self._compiled["texts"] = TextTranslator(self.model, self.source, self.target,
                                                     self.recipe.data.max_source_length)
        return self._compiled["texts"]

    def encode(self, texts: list[str]) -> tf.Tensor:
        """Source ids `[batch, steps]`, truncated to the recipe's `data.max_source_length`, at least one step."""
        return self.texts.encode(texts)

    def search(self, source_ids: tf.Tensor, options: DecodingOptions, prefix: tf.Tensor | None = None):
        """`decode` compiled once per options: (tokens, scores, weights) tensors."""
        return self.texts.search(source_ids, options, prefix)

    def n_best(self, texts: list[str], options: DecodingOptions | None = None, batch_size: int = 64,
               progress: Callable[[int, int], None] | None = None,
               prefixes: list[str] | None = None) -> list[list[Hypothesis]]:
        """The `options.n_best` best hypotheses of every text (the recipe's `decode` by default), in input
        order, each starting with its text in `prefixes` when given; see `TextTranslator.n_best`."""
        return self.texts.n_best(texts, options or self.options(), batch_size, progress, prefixes)

    def translate(self, texts: list[str], options: DecodingOptions | None = None, batch_size: int = 64,
                  progress: Callable[[int, int], None] | None = None, prefixes: list[str] | None = None) -> list[str]:
        """The best translation of every text, in input order (each starting with its prefix, when given)."""
        return self.texts.translate(texts, options or self.options(), batch_size, progress, prefixes)

    def score(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> list[dict]:
        """How probable the model finds each target given its source (`textseq.scoring.score_pairs`)."""
        return score_pairs(self, pairs, batch_size)

    def attention(self, text: str, options: DecodingOptions | None = None) -> Attention:
        """The best translation of `text` with the attention weights of each produced token."""
        return self.explain(text, options)[1]

    def explain(self, text: str, options: DecodingOptions | None = None,
                prefix: str | None = None) -> tuple[list[Hypothesis], Attention]:
        """The `options.n_best` hypotheses of `text` (starting with `prefix`, when given), and the
        attention of the best one, from one search."""
        options = options or self.options()
        source_ids = self.encode([text])
        forced = self.texts.prefix([prefix], options) if prefix is not None else None
        tokens, scores, weights = self.search(source_ids, options, forced)
        decoded = self.texts.decode(tokens, [prefix] if prefix is not None else None, forced)
        hypotheses = [Hypothesis(line.decode("utf-8"), float(score)) for line, score in zip(decoded, scores.numpy()[0])]
        tokens, weights = tokens.numpy()[0, 0], weights.numpy()[0, 0]
        steps = int(np.count_nonzero(tokens))
        source_steps = int(np.count_nonzero(source_ids.numpy()[0]))
        if "spellings" not in self._compiled:  # read once: a server explains one text per request
            self._compiled["spellings"] = (self.source.tokens.numpy(), self.target.tokens.numpy())
        vocab_in, vocab_out = self._compiled["spellings"]
        return hypotheses, Attention([vocab_in[i].decode("utf-8") for i in source_ids.numpy()[0, :source_steps]],
                                     [vocab_out[i].decode("utf-8") for i in tokens[:steps]],
                                     weights[:steps, :source_steps])


class LanguageModel(LoadedRun):
    """Next-word predictions and continuations of a language-model run.

    A text is read the way training reads its stream, window by window (see `textseq.windows`),
    so a prediction is what `evaluate` scores at that position. `predict` on one text keeps where
    its reading ended, so the next text typed on from it (a keyboard's next request) reads only
    the words added, as long as they are in the same window.
    """

    task = "language_model"

    def score(self, text: str, batch_size: int | None = None) -> list[dict]:
        """How probable the model finds each line of `text`, read as a stream (`textseq.scoring.score_text`)."""
        return score_text(self, text, batch_size)

    def tokens(self, text: str) -> list[str]:
        """How the model sees `text`: its tokens, unknown ones as `<unk>`."""
        return [self.vocab_tokens[i] for i in self.token_ids(text)]

    def unknown_words(self, text: str) -> list[str]:
        """The tokens of `text` that the vocabulary lacks (read as `<unk>`), in order, once each."""
        pieces, ids = self.tokenize(text)
        return list(dict.fromkeys(piece for piece, i in zip(pieces, ids) if i == UNK))

    @property
    def vocab_tokens(self) -> list[str]:
        """Every token as it shows on its own (a SentencePiece piece as plain text), by id."""
        if "tokens" not in self._compiled:
            self._compiled["tokens"] = [token.decode("utf-8") for token in self.target.tokens.numpy()]
        return self._compiled["tokens"]

    def predict(self, texts: list[str], k: int = 5) -> list[list[Prediction]]:
        """The `k` most probable next tokens after each text, most probable first, never `<unk>` or a
        control token; for a SentencePiece model, the next whole words (see `textseq.next_words`)."""
        if k < 1:
            raise UserError(f"k (the number of next tokens) must be at least 1, not {k}")
        k = min(k, self.target.vocab_size - len(RESERVED))
        if len(texts) == 1 and self.target.unit != "piece":  # a typed text: read on from an earlier one
            probabilities, tokens = self.readings.next_tokens(self.token_ids(texts[0]), k)
        else:
            if "predict" not in self._compiled:
                self._compiled["predict"] = tf.function(
                    lambda text, k: next_suggestions(self.model, self.recipe.data, self.target,
                                                     self.source.encode(text), k),
                    input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)], autograph=False)
            probabilities, tokens = self._compiled["predict"](tf.constant(texts, tf.string), tf.constant(k))
        return [[Prediction(token.decode("utf-8"), float(p)) for p, token in zip(row_p, row_t) if token or p > 0]
                for row_p, row_t in zip(probabilities.numpy(), tokens.numpy())]

    @property
    def readings(self) -> Readings:
        """What `predict` keeps of the single texts it read (`textseq.readings`)."""
        if "readings" not in self._compiled:
            self._compiled["readings"] = Readings(self.model, self.recipe.data, self.target.tokens)
        return self._compiled["readings"]

    def forget(self) -> None:
        """Drops the readings `predict` keeps, so that the next text is read from its start (what a
        measurement of a first request needs; results do not change)."""
        self.readings.forget()

    def append(self, text: str, continuation: str) -> str:
        """`text` followed by what `generate` wrote after it, spaced as the vocabulary spaces text.

        Words are joined by a space; characters and SentencePiece text carry their own spaces.
        """
        return self.target.append(text, continuation)

    def generate(self, text: str, max_tokens: int = 100, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> str:
        """The continuation of `text`: `max_tokens` tokens, greedy unless a sampling setting is given.

        Reads the text and writes on window by window, as training reads its stream. Word-level
        line ends (`</s>`) come out as newlines.
        """
        options = DecodingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)  # checks them
        if max_tokens < 0:
            raise UserError(f"max_tokens must be 0 or more, not {max_tokens}")
        key = ("generate", options)
        if key not in self._compiled:
            draw = sampler(options.temperature or 1.0, options.top_k, options.top_p)
            data = self.recipe.data

            def continue_text(text, max_tokens, uniforms):
                ids = self.source.encode(text)
                pick = None
                if options.method == "sample":
                    pick = lambda log_probs, index: draw(log_probs, tf.gather(uniforms, index))  # noqa: E731
                _, produced = walk_windows(self.model, ids.to_tensor(PAD), tf.cast(ids.row_lengths(), tf.int32),
                                   data.context, data.continuation, data.carry_state, max_tokens, pick)
                return self.target.join_lines(produced)

            self._compiled[key] = tf.function(continue_text, input_signature=[
                tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([None], tf.float32)],
                autograph=False)
        uniforms = np.random.default_rng(seed).random(max(max_tokens, 1), dtype=np.float32)
        out = self._compiled[key](tf.constant([text]), tf.constant(max_tokens), tf.constant(uniforms))
        return out[0].numpy().decode("utf-8")
