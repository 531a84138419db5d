"""Starting a run from another: `train.init_from` (its weights and vocabulary: fine-tuning) and
`vocab.from` (a vocabulary only, from a run or a file).

A fine-tuned run may change its data, schedule, dropout and decoding; it may not change what shapes
the weights (the model's cell and sizes, the vocabulary), and a recipe that does is refused with the
key to set. The weights are loaded into the new model before its first step, with a fresh
optimizer; a resumed run goes on from its own checkpoint instead.

>>> origin = weights_origin(recipe_from_dict(TINY, ["train.init_from=runs/dates"]))  # doctest: +SKIP
>>> origin.weights.name  # doctest: +SKIP
'model.weights.h5'
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

from textseq.checkpoints import load_weights
from textseq.data.textfiles import file_sha256
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.recipe import Recipe, VocabConfig
from textseq.runs import Run

SHAPE_FREE = {"dropout", "recurrent_dropout", "embedding_init"}  # model keys that no weight's shape depends on
TOKENIZATION = ("level", "lowercase", "shared")  # vocab keys that decide how text becomes ids


@dataclass(frozen=True)
class Origin:
    """The run a fine-tuned run starts from, and which of its weights files."""

    run: Run
    recipe: Recipe
    weights: Path

    def record(self) -> dict:
        """What run.json keeps of it: where the weights came from, and which they were."""
        return {"run": str(self.run.path), "weights": str(self.weights), "sha256": file_sha256(self.weights)}


def weights_origin(recipe: Recipe) -> Origin | None:
    """`train.init_from` as a run and a weights file, checked against the recipe; None when unset."""
    if not recipe.train.init_from:
        return None
    path = Path(recipe.train.init_from).expanduser()
    if path.is_file() and path.name.endswith(".weights.h5"):
        run_dir, weights = (path.parent.parent if path.parent.name == "checkpoints" else path.parent), path
    elif path.is_dir():
        run_dir, weights = path, path / "model.weights.h5"
    else:
        what = "no such file or directory" if not path.exists() else "not a run directory or a .weights.h5 file"
        raise UserError(f"train.init_from: {path}: {what}; give a trained run directory (RUN) or one of its weights "
                        "files (RUN/model.weights.h5, RUN/checkpoints/*.weights.h5)")
    try:
        run = Run.open(run_dir)
        origin = Origin(run, run.recipe(), weights)
    except UserError as error:
        raise UserError(f"train.init_from: {error}") from None
    check_same_shape(recipe, origin)
    return origin


def check_same_shape(recipe: Recipe, origin: Origin) -> None:
    """Refuses a recipe whose model or vocabulary would not fit the origin's weights."""
    source = origin.recipe
    if recipe.task != source.task:
        raise UserError(f"task: {recipe.task}, but train.init_from's run {origin.run.path} is a {source.task} run; "
                        "its weights cannot start this task")
    for f in dataclasses.fields(source.model):
        mine, theirs = getattr(recipe.model, f.name), getattr(source.model, f.name)
        if f.name not in SHAPE_FREE and mine != theirs:
            raise UserError(f"model.{f.name}: {mine!r}, but train.init_from's run {origin.run.path} has {theirs!r}: "
                            f"its weights would not fit. Set model.{f.name}: {theirs!r} (data, schedule, dropout and "
                            "decoding may change)")
    check_same_tokens(recipe.vocab, source.vocab, f"train.init_from's run {origin.run.path}")


def check_same_tokens(config: VocabConfig, reused: VocabConfig, what: str) -> None:
    for key in TOKENIZATION:
        mine, theirs = getattr(config, key), getattr(reused, key)
        if mine != theirs:
            raise UserError(f"vocab.{key}: {mine!r}, but {what} has vocab.{key}: {theirs!r}, and its vocabulary "
                            f"is reused as it is. Set vocab.{key}: {theirs!r}")


def reused_vocabularies(recipe: Recipe, origin: Origin | None) -> tuple[Vocabulary, Vocabulary] | None:
    """The (source, target) vocabularies a new run takes instead of building its own: the init_from
    run's, or vocab.from's; None when the recipe reuses none."""
    if origin is not None:
        named = recipe.vocab.from_
        if named and Path(named).expanduser().resolve() != origin.run.path.resolve():
            raise UserError(f"vocab.from: {named}, but train.init_from's weights were trained with the vocabulary "
                            f"of {origin.run.path}; a fine-tuned run keeps that one. Remove vocab.from")
        return origin.run.vocabulary_files(origin.recipe.vocab).load()
    if not recipe.vocab.from_:
        return None
    return vocabularies_from(recipe.vocab)


def vocabularies_from(config: VocabConfig) -> tuple[Vocabulary, Vocabulary]:
    """vocab.from: a run directory's vocabularies, or one vocabulary file for both sides."""
    path = Path(config.from_).expanduser()
    try:
        if (path / "run.json").is_file():
            run = Run(path)
            reused = run.recipe().vocab
            check_same_tokens(config, reused, f"the run {path}")
            return run.vocabulary_files(reused).load()
        if not path.is_file():
            raise UserError(f"{path}: {'not a run directory (no run.json)' if path.is_dir() else 'no such file'}; "
                            "give a run directory, a vocab.txt or an spm.model")
        vocab = Vocabulary.load(path)
    except UserError as error:
        raise UserError(f"vocab.from: {error}") from None
    if not config.shared:
        raise UserError(f"vocab.from: {path} is one vocabulary, for both sides; set vocab.shared: true, or give a run "
                        "directory whose source and target vocabularies differ")
    check_same_tokens(config, dataclasses.replace(config, **vocab.tokenization()), f"the file {path}")
    return vocab, vocab


def load_initial_weights(model, origin: Origin) -> None:
    """The origin's weights into a new run's model, its optimizer left as it is (fresh)."""
    with warnings.catch_warnings():  # Keras notes the optimizer state that the file has, or lacks, and is skipped
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        load_weights(model, origin.weights, remedy="give train.init_from a run's model.weights.h5 or a checkpoint")
