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

import csv
import dataclasses
import datetime as dt
import fcntl
import io
import json
import logging
import os
import shutil
import socket
from pathlib import Path

from textseq import __version__
from textseq.data.textfiles import file_sha256
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.files import write_atomically
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
        self.info_file = self.path / "run.json"
        self.recipe_file = self.path / "recipe.yaml"
        self.checkpoints = self.path / "checkpoints"
        self.state_file = self.checkpoints / "state.json"
        self.weights_file = self.path / "model.weights.h5"
        self.metrics_file = self.path / "metrics.csv"
        self.shards_file = self.path / "shards.json"
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
        if not run.weights_file.exists() and run.has_trained():
            raise UserError(f"{run.weights_file}: missing, though the run has trained; copy it back from a backup, "
                            f"or train the run anew with textseq train {run.recipe_file} --out {run.path} --overwrite")
        if not run.weights_file.exists():
            raise UserError(f"{run.weights_file}: missing; the run has not saved its best weights yet (they come "
                            "with its first epoch or validation). If a textseq train is running, wait for it; if one "
                            "stopped, run it again (after mending what it reported): "
                            f"`textseq train {run.recipe_file} --out {run.path}`")
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
        if not isinstance(info.get("format", 1), int) or isinstance(info.get("format"), bool):
            raise UserError(f"{self.info_file}: \"format\" is {json.dumps(info['format'])}, expected a whole number; "
                            "the run directory is damaged: restore run.json from a backup (a new run writes "
                            f"\"format\": {RUN_FORMAT})")
        if info.get("format", 1) > RUN_FORMAT:
            raise UserError(f"{self.path}: written by textseq {info.get('textseq_version', '?')} in run format "
                            f"{info['format']}; this textseq {__version__} reads format {RUN_FORMAT} and older. "
                            "Upgrade textseq (pip install -U textseq) to use this run")

    @classmethod
    def prepare(cls, path: str | Path, recipe: Recipe, overwrite: bool = False) -> tuple["Run", bool]:
        """Creates a new run, or returns `(run, True)` for a run of the same recipe to resume.

        The run comes back locked (see `lock`); the caller unlocks it. Nothing is deleted without
        `overwrite`, and `overwrite` deletes only a textseq run's own files (RUN_FILES).
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path}: exists and is not a directory; choose another --out")
        if run.path.is_dir() and not run.info_file.exists() and any(
                entry.name != run.lock_file.name for entry in run.path.iterdir()):
            raise UserError(f"{run.path}: exists and is not a textseq run directory (no run.json); textseq does not "
                            "write into it, with or without --overwrite. Choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        run.lock()
        try:
            return run, run._prepare_locked(recipe, overwrite)
        except BaseException:
            run.unlock()
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
        if self.info_file.exists():
            if not overwrite:
                raise UserError(
                    f"{self.path}: a textseq run whose recipe.yaml is missing, so it cannot be resumed; put the "
                    f"recipe it was trained with back as {self.recipe_file} and run the same command, or pass "
                    "--overwrite to delete this run's files and train anew")
            self.delete_files()
        write_atomically(self.info_file, json.dumps(
            {"textseq_version": __version__, "format": RUN_FORMAT,
             "created": dt.datetime.now(dt.timezone.utc).isoformat()}, indent=2))
        self.write_recipe(recipe)
        return False

    def has_trained(self) -> bool:
        """Whether a checkpoint or best weights were ever saved here (what a fresh start would lose)."""
        return (self.weights_file.exists() or any(self.checkpoints.glob("epoch-*"))
                or any(self.checkpoints.glob("step-*")))

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

    def training_holder(self) -> str | None:
        """Who is training this run right now ("pid N on HOST, since T"), or None when nobody is.

        Probes `training.lock` without taking it for long: a shared lock fails only while a
        `textseq train` holds the exclusive one.
        """
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.read(fd, 4096).decode("utf-8", "replace"))
        except OSError:
            return None
        finally:
            os.close(fd)  # closing releases a lock this probe took
        return None

    def weights_record(self) -> dict:
        """Which weights `model.weights.h5` holds, for what is computed from them (evaluate, export):
        its SHA-256 and the epoch (step) whose validation chose it, or the checkpoints it averages."""
        record = {"file": self.weights_file.name, "sha256": file_sha256(self.weights_file)}
        state = self.state() or {}
        for key in ("best_epoch", "best_step"):
            if state.get(key) is not None:
                record[key.removeprefix("best_")] = state[key]
        if is_average(self.path):
            try:
                record["averaged"] = json.loads((self.path / AVERAGED_FILE).read_text(encoding="utf-8"))["checkpoints"]
            except (OSError, ValueError, TypeError, KeyError):
                record["averaged"] = "unknown checkpoints"
        return record

    def lock(self) -> None:
        """Takes `training.lock` for this process, or says who holds it.

        The lock is the operating system's (`flock`): it goes when the process ends, however it
        ends, so a crash leaves no lock behind, and two trainings started together cannot both
        get it.
        """
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 4096).decode("utf-8", "replace")
                os.close(fd)
                raise UserError(self._locked_message(owner)) from None
            except OSError as error:
                os.close(fd)
                raise UserError(f"{self.lock_file}: cannot be locked ({error.strerror}); this file system does not "
                                "support file locks: train in a directory on a local disk") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and lock: take the new one
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode())
        self._lock_fd = fd

    def _locked_message(self, owner: str) -> str:
        holder = _holder(owner)
        return (f"{self.path}: another textseq train is writing this run ({self.lock_file} is locked: {holder}); "
                "wait for it to finish, stop it, or choose another --out. The lock goes when that process ends; "
                f"only if the process is gone for good (a machine that died, a network disk) delete {self.lock_file}")

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            self.lock_file.unlink(missing_ok=True)  # before the lock goes, so no one locks a removed file
            os.close(fd)
            self._lock_fd = None

    def recipe(self) -> Recipe:
        try:
            return load_recipe(self.recipe_file)
        except UserError as error:
            made_by = self.info().get("textseq_version") if self.info_file.exists() else None
            if made_by and made_by != __version__:
                raise UserError(f"{error} (the run was made by textseq {made_by}; this is textseq {__version__})") from None
            raise

    def write_recipe(self, recipe: Recipe) -> None:
        write_atomically(self.recipe_file, recipe.to_yaml())

    def vocab_files(self, config: VocabConfig) -> tuple[Path, Path]:
        """The source and target vocabulary files (the same file twice when `vocab.shared`)."""
        name = "spm.model" if config.level == "sentencepiece" else "vocab.txt"
        if config.shared:
            return self.path / name, self.path / name
        return self.path / f"source.{name}", self.path / f"target.{name}"

    def save_vocabularies(self, source: Vocabulary, target: Vocabulary, config: VocabConfig) -> None:
        """Writes the vocabulary files; in a run, run.json records their SHA-256 for `vocabularies`."""
        source_file, target_file = self.vocab_files(config)
        source.save(source_file)
        if not config.shared:
            target.save(target_file)
        if self.info_file.exists():
            info = self.info()
            info["vocabularies"] = {path.name: file_sha256(path) for path in dict.fromkeys([source_file, target_file])}
            write_atomically(self.info_file, json.dumps(info, indent=2))

    def vocabularies(self, config: VocabConfig) -> tuple[Vocabulary, Vocabulary]:
        """The run's vocabularies; a file whose SHA-256 is not the one run.json recorded is refused
        (another vocabulary of the same size would be read without error, and the weights misread)."""
        source_file, target_file = self.vocab_files(config)
        source = Vocabulary.load(source_file)  # first: a missing or unreadable file has a message of its own
        target = source if config.shared else Vocabulary.load(target_file)
        recorded = self.info().get("vocabularies") or {} if self.info_file.exists() else {}
        for path in dict.fromkeys([source_file, target_file]):
            if path.name in recorded and file_sha256(path) != recorded[path.name]:
                raise UserError(
                    f"{path}: is not the vocabulary this run was trained with (its SHA-256 differs from the one "
                    f"{self.info_file.name} recorded); the weights would read other tokens. Put the run's own "
                    f"{path.name} back (from a backup or a copy of the run), or train anew with --overwrite")
        return source, target

    def check_shards(self, fingerprints: list[list]) -> None:
        """Records the training files' fingerprints (`[name, size, sha256]`), or checks them against those
        recorded: a streamed run resumes at byte positions in its files, which mean nothing in a changed
        file. Only the contents count: a corpus moved elsewhere (data.dir, $TEXTSEQ_DATA) resumes."""
        try:
            recorded = json.loads(self.shards_file.read_text(encoding="utf-8"))
            contents = [entry[1:] for entry in recorded]
        except FileNotFoundError:
            write_atomically(self.shards_file, json.dumps(fingerprints, indent=1))
            return
        except (OSError, ValueError, TypeError, IndexError):
            raise UserError(f"{self.shards_file}: is damaged; it records the training files this run reads. Restore "
                            "it from a backup, or train anew (--overwrite, or another --out)") from None
        if contents == [entry[1:] for entry in fingerprints]:
            if recorded != fingerprints:
                log.info("the training files moved (same contents): %s", fingerprints[0][0])
                write_atomically(self.shards_file, json.dumps(fingerprints, indent=1))
            return
        before = {entry[0]: entry for entry in recorded}
        now = {entry[0]: entry for entry in fingerprints}
        changed = sorted(set(before) ^ set(now)) or [name for name in now if before[name] != now[name]]
        what = ("was added or removed" if changed[0] not in before or changed[0] not in now else
                f"changed ({before[changed[0]][1]} bytes then, {now[changed[0]][1]} now)" if before[changed[0]][1] !=
                now[changed[0]][1] else "changed (same size, other bytes)")
        raise UserError(f"data.train: {changed[0]} {what} since this run started"
                        f"{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}; a streamed run resumes at "
                        "positions in its files, which a changed file does not have. Put the files back as they "
                        "were to resume, or train anew on the new files (another --out, or --overwrite)")

    def state(self) -> dict | None:
        """What the last committed epoch left: `{"epoch", "checkpoint", "best_val_loss", "best_epoch"}`,
        or None when state.json is missing or damaged (see `checkpoint_states` for what else there is)."""
        return read_state(self.state_file)

    def checkpoint_states(self) -> list[dict]:
        """The states saved beside each checkpoint (epoch-NNNN.json), newest first."""
        paths = [*self.checkpoints.glob("epoch-*.json"), *self.checkpoints.glob("step-*.json")]
        found = (read_state(path) for path in sorted(paths, reverse=True))
        return [state for state in found if state is not None]

    def commit_epoch(self, state: dict, metrics: dict) -> None:
        """Records a finished epoch whose checkpoint (and best weights) are written: its metrics.csv
        row, its checkpoint's state, then state.json, each replaced whole."""
        self.write_metrics(state["epoch"], metrics)
        write_atomically(self.checkpoints / state["checkpoint"].replace(".weights.h5", ".json"), json.dumps(state))
        write_atomically(self.state_file, json.dumps(state, indent=2))

    def write_metrics(self, epochs: int, metrics: dict | None = None) -> None:
        """metrics.csv with the rows of the first `epochs` epochs, plus `metrics` as row `epochs`.

        Rows beyond are dropped: they belong to an epoch whose commit a crash interrupted, which
        the resumed run trains again.
        """
        header, rows = self.metrics()
        rows = [row for row in rows if _epoch_index(row) is not None and _epoch_index(row) < epochs]
        if metrics is not None:
            header = header or ["epoch", *sorted(metrics)]
            header += [key for key in sorted(metrics) if key not in header]
            rows.append({"epoch": epochs - 1, **metrics})
        if not header:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, header, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.metrics_file, out.getvalue())

    def metrics(self) -> tuple[list[str], list[dict]]:
        """metrics.csv's header and rows (empty when there is no file)."""
        try:
            text = self.metrics_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{self.metrics_file}: cannot be read ({error}); restore it from a backup, or delete it "
                            "(the curves of the epochs so far are then lost)") from None
        reader = csv.DictReader(io.StringIO(text))
        return list(reader.fieldnames or []), list(reader)


def load_weights(model, path: Path, remedy: str = "copy it back from a backup") -> None:
    """`model.load_weights(path)`, or a UserError that names the file when it is damaged or does not fit."""
    try:
        model.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise OSError, ValueError, KeyError...
        raise UserError(f"{path}: cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0][:160]}); "
                        f"the file is damaged or belongs to another recipe: {remedy}") from None


def read_state(path: Path) -> dict | None:
    """A state file's content, or None (with a warning) when it is missing or damaged."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(state, dict) and isinstance(state.get("epoch"), int) and isinstance(state.get("checkpoint"), str):
            return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    log.warning("warning: %s is damaged; ignoring it", path)
    return None


def is_average(path: Path) -> bool:
    """Whether `path` is a run directory that `textseq average` wrote (and may replace)."""
    return (path / AVERAGED_FILE).is_file()


def _holder(owner: str) -> str:
    """The lock file's content as words: who holds it."""
    try:
        who = json.loads(owner)
        return f"pid {who['pid']} on {who['host']}, since {who.get('since', '?')}"
    except (ValueError, TypeError, KeyError):
        return "its holder did not say who it is"


def _epoch_index(row: dict) -> int | None:
    try:
        return int(row.get("epoch") or "")
    except ValueError:
        return None
