"""`textseq vocab`: build a recipe's vocabularies alone, and say how they cut the text.

What a user needs to choose `vocab.size` (or `max_size`): the tokens in each vocabulary, the mean
and 99th percentile of tokens per line and per word of the validation text, the share of that text
the vocabulary covers on its own (SentencePiece: characters not spelled in bytes; words and
characters: tokens not read as `<unk>`), and the time taken.

>>> report = vocab_stats(load_recipe("recipes/multi30k-de-en-spm.yaml"))  # doctest: +SKIP
>>> report["sides"]["target"]["pieces_per_line"]["mean"]  # doctest: +SKIP
15.2
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from textseq.data.sources import load_pairs, load_text
from textseq.data.tasks import StreamedData, language_model_vocabulary, translation_vocabularies
from textseq.data.tokenizer import tokenizer_for
from textseq.errors import UserError
from textseq.finetuning import reused_vocabularies, weights_origin
from textseq.recipe import Recipe
from textseq.runs import Run


def vocab_stats(recipe: Recipe, out: str | Path | None = None) -> dict:
    """Builds the vocabularies from the training text (or takes those that train.init_from or vocab.from
    reuse), saved in `out` as a run would save them, and measures them on the validation text."""
    started = time.perf_counter()
    data, config = recipe.data, recipe.vocab
    reused = reused_vocabularies(recipe, weights_origin(recipe))
    if recipe.task == "language_model":
        vocab = reused[0] if reused else language_model_vocabulary(load_text(data, "train"), config, data.seed)
        vocabularies = (vocab, vocab)
        validation = {"text": [line for line in load_text(data, "validation").split("\n") if line.strip()]}
    else:
        vocabularies = reused or (StreamedData.load(recipe, splits=()).vocabularies() if recipe.train.steps else
                                  translation_vocabularies(load_pairs(data, "train"), config, data.seed))
        pairs = load_pairs(data, "validation")
        validation = {"source": [s for s, _ in pairs], "target": [t for _, t in pairs]}
    built = time.perf_counter() - started
    files = []
    if out is not None:
        files = save(vocabularies, recipe, Path(out))
    sides = {}
    for side, lines in validation.items():
        vocab = vocabularies[0 if side in ("source", "text") else 1]
        sides[side] = side_stats(tokenizer_for(vocab), lines)
    first = tokenizer_for(vocabularies[0])
    model_type = {"model_type": config.model_type} if first.model_file else {}  # a SentencePiece model's kind
    return {"level": first.describe()["level"], "shared": config.shared, **model_type, "sides": sides, "files": files,
            "build_seconds": round(built, 2), "seconds": round(time.perf_counter() - started, 2)}


def save(vocabularies, recipe: Recipe, out: Path) -> list[str]:
    """Writes the vocabulary files under the names a run directory gives them."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory; choose a directory")
    if (out / "run.json").exists():
        raise UserError(f"--out {out}: is a run directory, whose vocabulary its weights were trained with; nothing "
                        "was written. Choose another directory")
    run = Run(out)
    existing = sorted({str(path) for path in run.vocabulary_files(recipe.vocab).paths if path.exists()})
    if existing:
        raise UserError(f"--out {out}: {', '.join(existing)} {'exists' if len(existing) == 1 else 'exist'}; textseq "
                        "vocab does not replace files, nothing was written. Choose a new or empty directory, or "
                        "move the file away")
    try:
        out.mkdir(parents=True, exist_ok=True)
        run.vocabulary_files(recipe.vocab).save(*vocabularies)
    except OSError as error:
        raise UserError(f"--out {out}: cannot write the vocabulary ({error.strerror or error}); choose a "
                        "directory you can write to") from None
    return sorted({str(path) for path in run.vocabulary_files(recipe.vocab).paths})


def side_stats(tokenizer, lines: list[str]) -> dict:
    """Tokens per line and per word of `lines`, and the share the vocabulary covers without falling back."""
    texts = tf.constant(lines, tf.string)
    ids = tokenizer.encode(texts)
    words = [word for line in lines for word in line.split()]
    per_word = tokenizer.encode(tf.constant(words, tf.string)).row_lengths().numpy() if words else np.zeros(1)
    flat = ids.flat_values.numpy()
    coverage = tokenizer.coverage(flat, lines)
    lengths = ids.row_lengths().numpy()
    return {
        "vocabulary": tokenizer.vocab_size,
        "lines": len(lines),
        "pieces_per_line": summary(lengths),
        "pieces_per_word": summary(per_word),
        "covered": round(coverage.pop("covered"), 6),
        **coverage,
    }


def summary(values: np.ndarray) -> dict:
    return {"mean": round(float(np.mean(values)), 2) if len(values) else 0.0,
            "p99": float(np.percentile(values, 99)) if len(values) else 0.0,
            "max": int(np.max(values)) if len(values) else 0}


