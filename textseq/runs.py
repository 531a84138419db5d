"""The run directory: one training run's recipe, vocabulary, checkpoints, weights and logs.

    runs/dates/
      run.json            textseq version, run format, creation time, and the SHA-256 of each vocabulary
                          file the run trained with (a replaced file is refused on load)
      recipe.yaml         the resolved recipe (the single source of truth for this run)
      vocab.txt           or source.vocab.txt + target.vocab.txt when `vocab.shared` is false;
                          spm.model (or source.spm.model + target.spm.model) for SentencePiece
      checkpoints/        epoch-NNNN.weights.h5 (model + optimizer), epoch-NNNN.resume.* (dropout's random
                          states) and epoch-NNNN.json (the state after that epoch) for the last epochs
                          (train.keep_checkpoints); with train.steps step-NNNNNNNN.*, whose .resume.*
                          also holds the training stream's position; state.json names the one to resume from
      model.weights.h5    the model's weights with the best validation loss (what predict/evaluate use; the
                          optimizer's state is in the checkpoints only)
      averaged/           a run directory of the mean of the last checkpoints (`textseq average`,
                          train.average_last)
      shards.json         with train.steps: the training files as the run first read them (a resume
                          restores positions in them, so they must not change)
      metrics.csv         one row per finished epoch (per checkpoint with train.steps, its step in `step`)
      logs/               TensorBoard event files
      training.lock       while a `textseq train` writes the run (an OS lock, released when it ends)

An epoch is committed by renaming complete files into place (`textseq.files`) in a fixed order
(checkpoint, best weights, metrics.csv, the checkpoint's state, state.json), so a crash at any
moment leaves the previous epoch's state usable and nothing the next resume cannot redo exactly.

>>> run = Run("runs/dates")  # doctest: +SKIP
>>> run.recipe().model.cell
'lstm'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
from pathlib import Path

from textseq import __version__
from textseq.data.textfiles import file_sha256
from textseq.data.vocab import Vocabulary, vocabulary_file_names
from textseq.errors import UserError
from textseq.files import write_atomically
from textseq.history import MetricsLog
from textseq.locks import TrainingLock
from textseq.recipe import DecodingOptions, Recipe, VocabConfig, load_recipe, recipe_differences

# The layout of a run directory; a textseq that finds a higher number refuses the run instead of
# misreading it. Run directories written before the number existed are format 1.
RUN_FORMAT = 1

# Keys that change nothing already trained: more epochs or steps, when to validate, how many checkpoints to
# keep, or how translate, evaluate and the export decode.
# data.dir may move: a streamed run checks its files' contents (shards.json), wherever they are.
RESUMABLE_CHANGES = {"train.epochs", "train.steps", "train.validate_every", "train.keep_checkpoints",
                     "train.average_last", "data.dir",
                     *(f"decode.{f.name}" for f in dataclasses.fields(DecodingOptions))}

# What `--overwrite` deletes from a run directory: the files textseq writes there, and nothing else
# (`averaged/` only when `textseq average` wrote it: see `delete_files`).
_RUN_FILES = ("run.json", "recipe.yaml", "shards.json", "vocab.txt", "source.vocab.txt", "target.vocab.txt",
              "spm.model", "source.spm.model", "target.spm.model", "model.weights.h5", "metrics.csv")
RUN_FILES = (*_RUN_FILES, *(f"{name}.tmp" for name in _RUN_FILES), "tmp-model.weights.h5", "averaged", "checkpoints",
             "logs", "eval-*.json", "hyp-*.txt")

AVERAGED_FILE = "averaged.json"  # marks a directory `textseq average` wrote (and may write again)

log = logging.getLogger(__name__)


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.info = RunInfo(self.path / "run.json")
        self.recipe_file = self.path / "recipe.yaml"
        from textseq.checkpoints import CheckpointFolder  # here: importing runs needs no TensorFlow

        self.checkpoints = CheckpointFolder(self.path / "checkpoints")
        self.weights_file = self.path / "model.weights.h5"
        self.history = MetricsLog(self.path / "metrics.csv")
        self.shards_file = self.path / "shards.json"
        self.logs = self.path / "logs"
        self.lock = TrainingLock(self.path / "training.lock")

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """An existing run, ready for predict/evaluate; a clear error if it is not one."""
        check_run_directory(Path(path))
        run = cls(path)
        run.info.check_format()
        if not run.weights_file.exists() and run.has_trained():
            raise UserError(f"{run.weights_file}: missing, though the run has trained; copy it back from a backup, "
                            f"or train the run anew with textseq train {run.recipe_file} --out {run.path} --overwrite")
        if not run.weights_file.exists():
            raise UserError(f"{run.weights_file}: missing; the run has not saved its best weights yet (they come "
                            "with its first epoch or validation). If a textseq train is running, wait for it; if one "
                            "stopped, run it again (after mending what it reported): "
                            f"`textseq train {run.recipe_file} --out {run.path}`")
        return run

    @classmethod
    def prepare(cls, path: str | Path, recipe: Recipe, overwrite: bool = False) -> tuple["Run", bool]:
        """Creates a new run, or returns `(run, True)` for a run of the same recipe to resume.

        The run comes back locked (`run.lock`, a `TrainingLock`); the caller releases it. Nothing is deleted without
        `overwrite`, and `overwrite` deletes only a textseq run's own files (RUN_FILES).
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path}: exists and is not a directory; choose another --out")
        if run.path.is_dir() and not run.info.path.exists() and any(
                entry.name != run.lock.path.name for entry in run.path.iterdir()):
            raise UserError(f"{run.path}: exists and is not a textseq run directory (no run.json); textseq does not "
                            "write into it, with or without --overwrite. Choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        run.lock.take()
        try:
            return run, run._prepare_locked(recipe, overwrite)
        except BaseException:
            run.lock.release()
            raise

    def _prepare_locked(self, recipe: Recipe, overwrite: bool) -> bool:
        if self.recipe_file.exists() and not overwrite:
            changed = set(recipe_differences(self.recipe(), recipe))
            if not changed - RESUMABLE_CHANGES:
                return True  # the recipe, with its resumable changes, is written once the checkpoint is restored
            if self.has_trained():
                raise UserError(
                    f"{self.path}: holds a run of a different recipe ({', '.join(sorted(changed))} differ); "
                    "choose another --out, or pass --overwrite to replace that run")
            # A start that stopped before its first checkpoint (bad data, a vocabulary that failed) left
            # only its own files: the corrected recipe starts the run anew.
            log.info("%s: had not saved a checkpoint yet; starting it anew with this recipe (%s differ)",
                     self.path, ", ".join(sorted(changed)))
            self.delete_files()
        if self.info.path.exists():
            if not overwrite:
                raise UserError(
                    f"{self.path}: a textseq run whose recipe.yaml is missing, so it cannot be resumed; put the "
                    f"recipe it was trained with back as {self.recipe_file} and run the same command, or pass "
                    "--overwrite to delete this run's files and train anew")
            self.delete_files()
        self.info.create()
        self.write_recipe(recipe)
        return False

    def has_trained(self) -> bool:
        """Whether a checkpoint or best weights were ever saved here (what a fresh start would lose)."""
        return self.weights_file.exists() or any(self.checkpoints.path.glob("epoch-*")) or any(
            self.checkpoints.path.glob("step-*"))

    def delete_files(self) -> None:
        """Deletes the run's own files (an explicit --overwrite); whatever else the directory holds stays."""
        for pattern in RUN_FILES:
            for path in self.path.glob(pattern):
                if path == self.averaged and not is_average(path):
                    continue  # a folder of the user's that happens to have the name
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    @property
    def averaged(self) -> Path:
        """Where `textseq average` and train.average_last write the mean of the last checkpoints."""
        return self.path / "averaged"

    def recipe(self) -> Recipe:
        try:
            return load_recipe(self.recipe_file)
        except UserError as error:
            made_by = self.info.read().get("textseq_version") if self.info.path.exists() else None
            if made_by and made_by != __version__:
                raise UserError(f"{error} (the run was made by textseq {made_by}; this is textseq {__version__})") from None
            raise

    def write_recipe(self, recipe: Recipe) -> None:
        write_atomically(self.recipe_file, recipe.to_yaml())

    def vocabulary_files(self, config: VocabConfig) -> "VocabularyFiles":
        return VocabularyFiles(self.path, config, self.info)


class RunInfo:
    """run.json: the textseq version that made the run, the run format, the creation time and the SHA-256
    of each vocabulary file the run trained with."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"{self.path}: cannot be read ({error}); the run directory is damaged: restore the "
                            "file from a backup, or train again with --overwrite") from None
        if not isinstance(info, dict):
            raise UserError(f"{self.path}: expected a JSON object; the run directory is damaged")
        return info

    def create(self) -> None:
        write_atomically(self.path, json.dumps({"textseq_version": __version__, "format": RUN_FORMAT,
                                                "created": dt.datetime.now(dt.timezone.utc).isoformat()}, indent=2))

    def record(self, **fields) -> None:
        """Adds (or replaces) fields of run.json."""
        write_atomically(self.path, json.dumps({**self.read(), **fields}, indent=2))

    def check_format(self) -> None:
        """Refuses a run written by a newer textseq in a layout this one does not know."""
        info = self.read()
        if not isinstance(info.get("format", 1), int) or isinstance(info.get("format"), bool):
            raise UserError(f"{self.path}: \"format\" is {json.dumps(info['format'])}, expected a whole number; "
                            "the run directory is damaged: restore run.json from a backup (a new run writes "
                            f"\"format\": {RUN_FORMAT})")
        if info.get("format", 1) > RUN_FORMAT:
            raise UserError(f"{self.path.parent}: written by textseq {info.get('textseq_version', '?')} in run format "
                            f"{info['format']}; this textseq {__version__} reads format {RUN_FORMAT} and older. "
                            "Upgrade textseq (pip install -U textseq) to use this run")


class VocabularyFiles:
    """A run's vocabulary files (the same file twice with `vocab.shared`), saved with their SHA-256 in
    run.json: a replaced file is refused on load, since another vocabulary of the same size would be
    read without error and the weights would read other tokens."""

    def __init__(self, folder: Path, config: VocabConfig, info: RunInfo):
        self.config, self.info = config, info
        self.paths = tuple(folder / name for name in vocabulary_file_names(config))

    def save(self, source: Vocabulary, target: Vocabulary) -> None:
        """Writes the files; in a run, run.json records their SHA-256."""
        source.save(self.paths[0])
        if not self.config.shared:
            target.save(self.paths[1])
        if self.info.path.exists():
            self.info.record(vocabularies={path.name: file_sha256(path) for path in dict.fromkeys(self.paths)})

    def load(self) -> tuple[Vocabulary, Vocabulary]:
        source = Vocabulary.load(self.paths[0])  # first: a missing or unreadable file has a message of its own
        target = source if self.config.shared else Vocabulary.load(self.paths[1])
        recorded = self.info.read().get("vocabularies") or {} if self.info.path.exists() else {}
        for path in dict.fromkeys(self.paths):
            if path.name in recorded and file_sha256(path) != recorded[path.name]:
                raise UserError(
                    f"{path}: is not the vocabulary this run was trained with (its SHA-256 differs from the one "
                    f"{self.info.path.name} recorded); the weights would read other tokens. Put the run's own "
                    f"{path.name} back (from a backup or a copy of the run), or train anew with --overwrite")
        return source, target


def weights_record(run: Run) -> dict:
    """Which weights a run's `model.weights.h5` holds, for what is computed from them (evaluate, export):
    its SHA-256 and the epoch (step) whose validation chose it, or the checkpoints it averages."""
    record = {"file": run.weights_file.name, "sha256": file_sha256(run.weights_file)}
    state = run.checkpoints.state() or {}
    for key in ("best_epoch", "best_step"):
        if state.get(key) is not None:
            record[key.removeprefix("best_")] = state[key]
    if is_average(run.path):
        try:
            record["averaged"] = json.loads((run.path / AVERAGED_FILE).read_text(encoding="utf-8"))["checkpoints"]
        except (OSError, ValueError, TypeError, KeyError):
            record["averaged"] = "unknown checkpoints"
    return record


def check_run_directory(path: Path) -> None:
    """The checks of a run directory that need no TensorFlow (the CLI makes them before loading it,
    so a mistyped path fails at once)."""
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory; train one with `textseq train RECIPE --out {path}`")
    if not (path / "recipe.yaml").exists() or not (path / "run.json").exists():
        raise UserError(f"{path}: not a textseq run directory (no recipe.yaml or run.json)")


def is_average(path: Path) -> bool:
    """Whether `path` is a run directory that `textseq average` wrote (and may replace)."""
    return (path / AVERAGED_FILE).is_file()
