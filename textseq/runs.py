"""The run directory: one training run's recipe, vocabulary, checkpoints, weights and logs.

    runs/dates/
      run.json            textseq version and creation time
      recipe.yaml         the resolved recipe (the single source of truth for this run)
      vocab.txt           or source.vocab.txt + target.vocab.txt when `vocab.shared` is false
      checkpoints/        model + optimizer after each epoch, and state.json (last epoch, best)
      model.weights.h5    the weights with the best validation loss (what predict/evaluate use)
      metrics.csv         one row per epoch
      logs/               TensorBoard event files

>>> run = Run("runs/dates")  # doctest: +SKIP
>>> run.recipe().model.cell
'lstm'
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path

from textseq import __version__
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.recipe import Recipe, load_recipe, recipe_differences

# The layout of a run directory; a textseq that finds a higher number refuses the run instead of
# misreading it. Run directories written before the number existed are format 1.
RUN_FORMAT = 1

# Keys that change nothing already trained: more epochs, or how the export and translate decode.
RESUMABLE_CHANGES = {"train.epochs", "export.max_output_length", "export.beam_size", "export.alpha"}


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.info_file = self.path / "run.json"
        self.recipe_file = self.path / "recipe.yaml"
        self.checkpoints = self.path / "checkpoints"
        self.state_file = self.checkpoints / "state.json"
        self.weights_file = self.path / "model.weights.h5"
        self.metrics_file = self.path / "metrics.csv"
        self.logs = self.path / "logs"
        self.lock_file = self.path / "training.lock"

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """An existing run, ready for predict/evaluate; a clear error if it is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: no such run directory; train one with `textseq train RECIPE --out {run.path}`")
        if not run.recipe_file.exists() or not run.info_file.exists():
            raise UserError(f"{run.path}: not a textseq run directory (no recipe.yaml or run.json)")
        run.check_format()
        if not run.weights_file.exists():
            raise UserError(f"{run.weights_file}: missing; the run has not finished an epoch yet, "
                            f"resume it with `textseq train {run.recipe_file}`")
        return run

    def info(self) -> dict:
        """run.json: the textseq version that made the run, the run format and the creation time."""
        try:
            info = json.loads(self.info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"{self.info_file}: cannot be read ({error}); the run directory is damaged: restore the "
                            "file from a backup, or train again with --overwrite") from None
        if not isinstance(info, dict):
            raise UserError(f"{self.info_file}: expected a JSON object; the run directory is damaged")
        return info

    def check_format(self) -> None:
        """Refuses a run written by a newer textseq in a layout this one does not know."""
        info = self.info()
        if info.get("format", 1) > RUN_FORMAT:
            raise UserError(f"{self.path}: written by textseq {info.get('textseq_version', '?')} in run format "
                            f"{info['format']}; this textseq {__version__} reads format {RUN_FORMAT} and older. "
                            "Upgrade textseq (pip install -U textseq) to use this run")

    @classmethod
    def prepare(cls, path: str | Path, recipe: Recipe, overwrite: bool = False) -> tuple["Run", bool]:
        """Creates a new run, or returns `(run, True)` for a run of the same recipe to resume."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path}: exists and is not a directory; choose another --out")
        run.check_not_locked()
        if run.recipe_file.exists() and not overwrite:
            changed = set(recipe_differences(run.recipe(), recipe))
            if changed - RESUMABLE_CHANGES:
                raise UserError(
                    f"{run.path}: holds a run of a different recipe ({', '.join(sorted(changed))} differ); "
                    "choose another --out, or pass --overwrite to replace that run")
            run._write_recipe(recipe)
            return run, True
        if run.path.exists() and any(run.path.iterdir()):
            if not run.info_file.exists():
                raise UserError(f"{run.path}: exists and is not a textseq run directory; choose another --out")
            shutil.rmtree(run.path)  # an explicit --overwrite of an earlier run
        run.path.mkdir(parents=True, exist_ok=True)
        write_atomically(run.info_file, json.dumps(
            {"textseq_version": __version__, "format": RUN_FORMAT,
             "created": dt.datetime.now(dt.timezone.utc).isoformat()}, indent=2))
        run._write_recipe(recipe)
        return run, False

    def check_not_locked(self) -> None:
        """Refuses a run that a live `textseq train` process on this machine is writing."""
        try:
            owner = json.loads(self.lock_file.read_text())
        except (OSError, ValueError):
            return
        if owner.get("host") == socket.gethostname() and _alive(owner.get("pid", -1)):
            raise UserError(f"{self.path}: another textseq train (pid {owner['pid']}) is writing this run; wait for "
                            "it to finish, stop it, or choose another --out")

    def lock(self) -> None:
        """Marks the run as being written by this process (a stale mark of a dead process is replaced)."""
        self.check_not_locked()
        write_atomically(self.lock_file, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))

    def unlock(self) -> None:
        self.lock_file.unlink(missing_ok=True)

    def recipe(self) -> Recipe:
        try:
            return load_recipe(self.recipe_file)
        except UserError as error:
            made_by = self.info().get("textseq_version") if self.info_file.exists() else None
            if made_by and made_by != __version__:
                raise UserError(f"{error} (the run was made by textseq {made_by}; this is textseq {__version__})") from None
            raise

    def _write_recipe(self, recipe: Recipe) -> None:
        write_atomically(self.recipe_file, recipe.to_yaml())

    def vocab_files(self, shared: bool) -> tuple[Path, Path]:
        if shared:
            return self.path / "vocab.txt", self.path / "vocab.txt"
        return self.path / "source.vocab.txt", self.path / "target.vocab.txt"

    def save_vocabularies(self, source: Vocabulary, target: Vocabulary, shared: bool) -> None:
        source_file, target_file = self.vocab_files(shared)
        source.save(source_file)
        if not shared:
            target.save(target_file)

    def vocabularies(self, shared: bool) -> tuple[Vocabulary, Vocabulary]:
        source_file, target_file = self.vocab_files(shared)
        return Vocabulary.load(source_file), Vocabulary.load(target_file)

    def state(self) -> dict | None:
        """What the last finished epoch left: `{"epoch", "checkpoint", "best_val_loss", ...}`."""
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else None

    def write_state(self, state: dict) -> None:
        write_atomically(self.state_file, json.dumps(state, indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return pid > 0


def write_atomically(path: Path, text: str) -> None:
    """Writes a file so that a crash leaves either the old or the new content, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
