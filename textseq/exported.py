"""A LiteRT translator export used as a run is (`textseq serve EXPORT`, `textseq translate EXPORT`):
the `.tflite` model of `textseq export RUN OUT --format litert` through the app loop of
`textseq.on_device`.

Why a server would run the phone's model: at one text per request, each decoder step reads every
weight of the step (the LSTM, the attention, the output table) from memory for five hypotheses, so
memory bandwidth sets the time. int8 weights (`--quantize dynamic`) are a quarter of float32's
bytes; LiteRT's kernels multiply them as they are, where TensorFlow's (and XLA's) would convert
them to float32 first. The answers are the API's own: beam search, length penalty, n-best lists,
attention weights and forced prefixes (exports made before these were in the export give neither
of the last two); scoring and sampling need the run and are refused with that advice.

>>> translator = ExportedTranslator("exports/de-en-int8")  # doctest: +SKIP
>>> translator.explain("Ein Hund rennt .", translator.options(beam_size=5))[0][0].text  # doctest: +SKIP
'A dog is running .'
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from textseq.errors import UserError
from textseq.inference import Attention
from textseq.export import is_export, metadata_file
from textseq.on_device import DeviceTokenizer, DeviceTranslator
from textseq.recipe import DecodingOptions
from textseq.translating import Hypothesis

THREADS = 2  # the interpreter's: 8% faster than one for a multi30k-de-en-spm sentence (benchmarks/README.md)
NEEDS_THE_RUN = "use the run directory the export was made from"


def litert_translator(path: Path) -> bool:
    """Whether `path` holds a LiteRT translator export; another export is refused, naming what it is."""
    if not is_export(path):
        return False
    about = json.loads(metadata_file(path).read_text(encoding="utf-8"))
    kind = about.get("format", "saved_model")  # a SavedModel's metadata names no format
    if kind == "litert" and about["task"] == "translate":
        return True
    raise UserError(f"{path} is a {kind} export of a {about['task']} run; textseq serve and translate take "
                    "a run directory or a translation run's LiteRT export (textseq export RUN OUT --format litert)")


class ExportedSide:
    """One side's tokenizer as the API describes it: level, vocabulary size, token spellings."""

    def __init__(self, tokenizer: DeviceTokenizer, side: dict):
        self.tokenizer, self.side = tokenizer, side
        self.spellings = tokenizer.spellings()
        self.vocab_size = len(self.spellings)

    def describe(self) -> dict:
        return {"level": self.side["level"], "lowercase": self.side["lowercase"]}


class ExportedTranslator:
    """What `textseq.serve`'s API calls on a `Translator`, answered by a LiteRT translator export."""

    task = "translate"

    def __init__(self, folder: str | Path):
        self.device = DeviceTranslator(folder, num_threads=THREADS)
        self.source = ExportedSide(self.device.source, self.device.meta["source"])
        self.target = ExportedSide(self.device.target, self.device.meta["target"])
        self.lock = threading.Lock()  # one interpreter: requests take their turns

    def options(self, **overrides) -> DecodingOptions:
        """The export's decoding settings (the run's `decode:`), with the given ones (None: keep) replaced."""
        sampling = [key for key in ("temperature", "top_k", "top_p", "seed") if overrides.get(key) is not None]
        if sampling:
            raise UserError(f"decode.{sampling[0]}: a LiteRT export decodes by beam search only; to sample, "
                            f"{NEEDS_THE_RUN}")
        settings = {**dataclasses.asdict(DecodingOptions()), **self.device.meta["decoding"],
                    **{key: value for key, value in overrides.items() if value is not None}}
        options = DecodingOptions(**settings)
        top_k = self.device.meta["top_k"]
        if options.beam_size > top_k:
            raise UserError(f"decode.beam_size: {options.beam_size} is more than the {top_k} candidates this export's "
                            f"step gives per hypothesis; ask for at most {top_k}")
        return options

    def tokenize(self, text: str) -> tuple[list[str], list[int]]:
        """The source tokens of `text` and their ids."""
        ids = self.device.source.encode(text)
        return [self.source.spellings[i] for i in ids], ids

    def explain(self, text: str, options: DecodingOptions | None = None,
                prefix: str | None = None) -> tuple[list[Hypothesis], Attention]:
        """The `options.n_best` hypotheses of `text` and the attention of the best one (empty when the
        export's step gives none)."""
        options = options or self.options()
        ids = self.device.source_ids(text)
        forced = self.device.prefix_ids(prefix, options.max_length) if prefix is not None else None
        if forced and self.device.forced_step is None:
            raise UserError(f"prefix: this export was made before LiteRT translators could force a prefix; export "
                            f"the run again, or {NEEDS_THE_RUN}")
        with self.lock:
            found = self.device.hypotheses(ids, options.beam_size, options.alpha, options.max_length, options.n_best,
                                           forced)
        hypotheses = [Hypothesis(self.device.text(h.ids, prefix, forced), h.score) for h in found]
        best = found[0]
        if best.attention is None:
            return hypotheses, Attention([], [], np.zeros((0, 0), np.float32))
        return hypotheses, Attention([self.source.spellings[i] for i in ids],
                                     [self.target.spellings[i] for i in best.ids], best.attention)

    def n_best(self, texts: list[str], options: DecodingOptions | None = None, batch_size: int = 64,
               progress: Callable[[int, int], None] | None = None,
               prefixes: list[str] | None = None) -> list[list[Hypothesis]]:
        """The `options.n_best` best hypotheses of every text, as `Translator.n_best` gives them; the
        export searches one text at a time, and `progress(done, total)` is called every `batch_size`."""
        found = []
        for done, text in enumerate(texts, 1):
            found.append(self.explain(text, options, prefixes[done - 1] if prefixes is not None else None)[0])
            if progress and (done % batch_size == 0 or done == len(texts)):
                progress(done, len(texts))
        return found

    def score(self, pairs) -> list[dict]:
        raise UserError(f"scoring needs every token's probability, and a LiteRT export's step gives only its top "
                        f"candidates; to score, {NEEDS_THE_RUN}")
