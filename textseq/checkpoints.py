"""Checkpoints of a training run: their names, saving (weights with the optimizer, the random states
and the input stream's position), restoring the newest intact one, worker positions, pruning and
the best weights. `CheckpointFolder` owns `RUN/checkpoints`; `EpochCheckpoint` is the callback that
commits one after every epoch (or segment of train.steps). Every file goes through `textseq.files`,
so each is whole or absent.

>>> step_checkpoint(2500)
'step-00002500.weights.h5'
"""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from textseq import files
from textseq.distribute import barrier, task_index, workers
from textseq.errors import UserError
from textseq import kernels
from textseq.models import Seq2Seq, build_seq2seq
from textseq.optimization import averaged_weights
from textseq.steps import StepPlan

if TYPE_CHECKING:
    from textseq.callbacks import StopOnNonFiniteLoss
    from textseq.recipe import Recipe
    from textseq.runs import Run

log = logging.getLogger(__name__)


def checkpoint_number(path: Path) -> int:
    """The number of `checkpoints/epoch-NNNN.weights.h5` or `step-NNNNNNNN.weights.h5` (-1 for another name)."""
    number = path.name.removesuffix(".weights.h5").partition("-")[2]
    return int(number) if number.isdigit() else -1


def step_checkpoint(step: int) -> str:
    """The weights file of the checkpoint after `step` steps (train.steps)."""
    return f"step-{step:08d}.weights.h5"


def epoch_checkpoint(epochs: int) -> str:
    """The weights file of the checkpoint after `epochs` epochs."""
    return f"epoch-{epochs:04d}.weights.h5"


def save_weights_atomically(model, path: Path, optimizer: bool = True) -> None:
    """`model.save_weights(path)` through `write_atomically`: the HDF5 file is made in memory, since
    h5py meeting a full disk leaves a file handle that crashes the process when it exits.
    `optimizer=False` leaves the optimizer's state out (Keras' `objects_to_skip`): what a run's best
    weights need, a third of a checkpoint with Adam's two moments."""
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        skipped = {id(model.optimizer)} if not optimizer and getattr(model, "optimizer", None) is not None else set()
        saving_lib._save_state(model, store, None, "", skipped)
    finally:
        store.close()
    files.write_atomically(path, buffer.getvalue())


def load_weights(model, path: Path, remedy: str = "copy it back from a backup") -> None:
    """`model.load_weights(path)`, or a UserError that names the file when it is damaged or does not fit."""
    try:
        model.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise OSError, ValueError, KeyError...
        raise UserError(f"{path}: cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0][:160]}); "
                        f"the file is damaged or belongs to another recipe: {remedy}") from None


def new_model(recipe: Recipe, source_size: int, target_size: int, speed_path: bool = True) -> Seq2Seq:
    """The recipe's model with its weights created (to be loaded), on the speed path where the recipe
    trains with it and `speed_path` allows (a converter that takes only Keras' own layers does not)."""
    model = build_seq2seq(recipe.model, source_size, target_size, one_vocabulary=recipe.vocab.shared)
    if speed_path and kernels.enabled(recipe.train):
        kernels.install(model)
    model({"source": tf.ones([1, 2], tf.int32), "target_in": tf.ones([1, 2], tf.int32)})
    return model


def load_model(run: Run, recipe: Recipe, source_size: int, target_size: int) -> Seq2Seq:
    """The run's model with its best weights (`model.weights.h5`)."""
    model = new_model(recipe, source_size, target_size)
    load_weights(model, run.weights_file, remedy=(
        f"copy it back from a backup, or train the run anew with textseq train {run.recipe_file} --out "
        f"{run.path} --overwrite"))
    return model


class CheckpointFolder:
    """`RUN/checkpoints`: per checkpoint NAME.weights.h5 (model + optimizer), NAME.resume.* (random
    states, stream position; NAME.resume-wK.* of worker K) and NAME.json (the state after it, written
    last); state.json names the one to resume from."""

    def __init__(self, path: Path):
        self.path = path
        self.state_file = path / "state.json"

    def state(self) -> dict | None:
        """What the last commit left (`{"epoch", "checkpoint", "best_val_loss", "best_epoch", ...}`), or None
        when state.json is missing or damaged (see `states` for what else there is)."""
        return read_state(self.state_file)

    def states(self) -> list[dict]:
        """The states saved beside each checkpoint (NAME.json), newest first."""
        paths = [*self.path.glob("epoch-*.json"), *self.path.glob("step-*.json")]
        found = (read_state(path) for path in sorted(paths, reverse=True))
        return [state for state in found if state is not None]

    def weights_files(self) -> list[Path]:
        """Every checkpoint's weights file, oldest first (committed or not)."""
        return sorted((path for path in self.path.glob("*-*.weights.h5") if checkpoint_number(path) >= 0),
                      key=checkpoint_number)

    def is_committed(self, weights: Path) -> bool:
        return weights.with_name(weights.name.replace(".weights.h5", ".json")).exists()

    def commit(self, state: dict) -> None:
        """Records that `state["checkpoint"]` is whole: its state beside it, then state.json."""
        files.write_atomically(self.path / state["checkpoint"].replace(".weights.h5", ".json"), json.dumps(state))
        files.write_atomically(self.state_file, json.dumps(state, indent=2))

    def resume_prefix(self, name: str, worker: int = 0) -> Path:
        suffix = f".resume-w{worker}" if worker else ".resume"
        return self.path / name.replace(".weights.h5", suffix)

    def delete(self, name: str, worker: int = 0) -> None:
        """A checkpoint's files (a worker other than the chief has only its resume state)."""
        if not worker:
            (self.path / name).unlink(missing_ok=True)
            (self.path / name.replace(".weights.h5", ".json")).unlink(missing_ok=True)
        for part in self.path.glob(self.resume_prefix(name, worker).name + ".*"):
            part.unlink(missing_ok=True)


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


class ResumeState:
    """The dropout layers' random states and the training stream's position: what a weights file lacks
    for the next steps to be those of an uninterrupted run. Saved as NAME.resume.* (TensorFlow's
    checkpoint format) into a temporary folder, its files renamed into place."""

    def __init__(self, folder: CheckpointFolder, worker: int = 0, iterator=None):
        self.folder = folder
        self.worker = worker
        self.iterator = iterator
        self.model = None

    def checkpoint(self) -> tf.train.Checkpoint:
        weights = {id(v) for v in self.model.weights}
        seeds = [v.value for v in self.model.variables if id(v) not in weights]
        return tf.train.Checkpoint(seeds=seeds, **({"input": self.iterator} if self.iterator is not None else {}))

    def load(self, name: str) -> None:
        prefix = self.folder.resume_prefix(name, self.worker)
        if self.iterator is None and not prefix.with_name(prefix.name + ".index").exists():
            log.warning("warning: %s has no random states (written by an older textseq); dropout goes on from "
                        "other ones than an uninterrupted run would", name)
            return
        try:
            self.checkpoint().read(str(prefix)).assert_consumed()
        except (tf.errors.OpError, ValueError, AssertionError) as error:
            raise UserError(f"{prefix}: the input's position and random states cannot be loaded ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:160]}); the file is damaged or missing") from None

    def save(self, name: str) -> None:
        prefix = self.folder.resume_prefix(name, self.worker)
        temporary = files.temporary(prefix)
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.WARNING)  # it logs every save's "Sharding callback duration" at INFO
        try:
            self.checkpoint().write(str(temporary / "state"))
        finally:
            absl.setLevel(level)
        for part in sorted(temporary.glob("state.*")):  # .data-* before .index
            files.replace(part, prefix.with_name(prefix.name + part.name[len("state"):]))
        shutil.rmtree(temporary)


def restore_newest(run: Run, model: Seq2Seq, resume: ResumeState, first: str) -> dict | None:
    """Loads the newest intact checkpoint into `model` (and the stream's position into the iterator)
    and returns its state; None when the run has none and never trained past an uncommitted first
    checkpoint, named `first` (which a restart redoes exactly).

    state.json names it; when state.json is missing or damaged, or names a damaged checkpoint, the
    newest intact earlier one (by the state saved beside it) is taken instead.
    """
    folder = run.checkpoints
    named = folder.state()
    candidates = ([named] if named else []) + [
        state for state in folder.states() if not named or state["epoch"] < named["epoch"]]
    problems = []
    for state in candidates:
        try:
            load_weights(model, folder.path / state["checkpoint"])
            resume.load(state["checkpoint"])
        except UserError as error:
            problems.append(str(error).split(";")[0])
            continue
        if problems or state is not named:
            log.warning("warning: resuming from %s (%s)", state["checkpoint"],
                        "; ".join(problems) or f"{folder.state_file} was missing or damaged")
        return state
    _, rows = run.history.rows()
    if problems or len(rows) > 1 or any(path.name != first for path in folder.weights_files()):
        raise UserError(
            f"{run.path}: has finished epochs but no intact checkpoint to resume from "
            f"({'; '.join(problems) or f'no {folder.state_file.name} and no epoch-*.json'}); starting over "
            f"would replace its best weights. Restore {folder.path} from a backup to resume, pass "
            "--overwrite to train the run anew (deleting its files), or choose another --out")
    return None


def improvement(select_by: str, steps: bool, state: dict, logs: dict) -> dict:
    """`{"best_val_...": value}` when these logs beat the best so far by train.select_by, else {}.

    Loss is better lower, BLEU and chrF higher. With train.steps only validations choose; with
    epochs, a run without validation data chooses by its training loss.
    """
    key = f"val_{select_by}"
    value = logs.get(key) if steps or select_by != "loss" else logs.get("val_loss", logs.get("loss"))
    best = state.get(f"best_{key}")
    if value is None or not math.isfinite(value):
        return {}
    if best is None or (value < best if select_by == "loss" else value > best):
        return {f"best_{key}": float(value)}
    return {}


def unsaved(error: Exception, run: Run, what: str, kept: str) -> UserError:
    """The message of a commit that a full disk (or a lost mount) stopped: the run keeps the last one."""
    message = str(getattr(error, "message", error))
    reason = ("No space left on device" if getattr(error, "errno", None) == errno.ENOSPC
              or "No space left on device" in message else message.splitlines()[0][:200])
    return UserError(f"{run.path}: {what} cannot be saved ({reason}); training stopped and the run keeps {kept}. "
                     "Free some room (or fix the disk) and run the same command to resume")


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch (or segment of train.steps): model + optimizer, and the random states (+ the
    input stream's position) to `checkpoints/`, the best weights to `model.weights.h5`, then the
    commit (metrics.csv, the checkpoint's state, state.json).

    Each file is written whole under a temporary name and renamed, state.json last, so a crash at
    any moment leaves the previous commit usable; `restore` resumes from it and drops what a crash
    left of the one after it. Several workers reading streams: each saves its own pipelines'
    position, and the chief commits only when all have (a barrier).
    """

    def __init__(self, run: Run, guard: StopOnNonFiniteLoss, keep: int = 2, plan: StepPlan | None = None,
                 iterator=None, select_by: str = "loss", strategy: tf.distribute.Strategy | None = None):
        super().__init__()
        self.worker = task_index(strategy) if strategy is not None else 0
        self.barrier = (lambda: barrier(strategy)) if plan and strategy is not None and workers(strategy) > 1 \
            else None
        self.select_by = select_by  # the validation score that picks the best weights: loss, bleu or chrf
        self.run = run
        self.guard = guard  # when it stopped training, the epoch is not saved
        self.keep = keep  # checkpoints kept on disk; older ones that this process resumed from or wrote are deleted
        self.plan = plan
        self.resume = ResumeState(run.checkpoints, self.worker, iterator)
        self.state: dict = {"epoch": 0, "best_val_loss": None, "best_epoch": None}
        self.lineage: list[str] = []  # the checkpoints this process resumed from or wrote, oldest first

    def set_model(self, model):
        super().set_model(model)
        self.resume.model = model

    def restore(self, model: Seq2Seq) -> int:
        """Resumes from the newest intact checkpoint; the number of finished epochs (segments)."""
        self.set_model(model)
        for partial in files.remove_temporaries(self.run.path, self.run.checkpoints.path):
            log.info("removed %s, what an interrupted commit left", partial.name)
        first = step_checkpoint(self.plan.step_after(1)) if self.plan else epoch_checkpoint(1)
        state = restore_newest(self.run, model, self.resume, first)
        if state is None:
            self.run.history.keep(0)
            return 0
        self.state = state
        number = checkpoint_number(Path(state["checkpoint"]))
        self.lineage = [path.name for path in self.run.checkpoints.weights_files()
                        if checkpoint_number(path) < number] + [state["checkpoint"]]
        self.run.history.keep(state["epoch"])  # a crash may have left the next epoch's row
        return state["epoch"]

    def load_worker_position(self, step: int) -> None:
        """A worker other than the chief: its pipelines' position at the chief's checkpoint `step`."""
        if step:
            self.resume.load(step_checkpoint(step))

    def on_epoch_end(self, epoch: int, logs: dict | None = None):
        if self.guard.stopped_at:
            return  # weights after a NaN step are not worth keeping; the previous epoch stays the last
        if self.worker:
            self.save_worker_position()
            return
        try:
            self.commit(epoch, logs or {})
        except (OSError, tf.errors.OpError) as error:  # a full disk, a lost mount: stop with the last commit intact
            files.remove_temporaries(self.run.path, self.run.checkpoints.path)
            if self.plan:
                what, kept = f"step {self.plan.step_after(epoch + 1)}", (
                    f"step {self.state['step']}" if self.state.get("step") else "no checkpoint")
            else:
                what, kept = f"epoch {epoch + 1}", (
                    f"epoch {self.state['epoch']}" if self.state["epoch"] else "no finished epoch")
            raise unsaved(error, self.run, what, kept) from None

    def save_worker_position(self) -> None:
        """A worker other than the chief, at a checkpoint: its position, then the chief may commit."""
        self.run.checkpoints.path.mkdir(parents=True, exist_ok=True)
        name = step_checkpoint(int(self.model.optimizer.iterations.numpy()))
        self.resume.save(name)
        self.barrier()
        self.prune(name)

    def commit(self, epoch: int, logs: dict) -> None:
        """Writes epoch `epoch`'s checkpoint, the best weights if it is the best, and its commit."""
        folder = self.run.checkpoints
        folder.path.mkdir(exist_ok=True)
        step = int(self.model.optimizer.iterations.numpy())
        name = step_checkpoint(step) if self.plan else epoch_checkpoint(epoch + 1)
        save_weights_atomically(self.model, folder.path / name)
        self.resume.save(name)
        if self.barrier:
            self.barrier()  # every worker has saved its position for this step
        # Step runs count their commits: after more train.steps, the segment Keras numbers `epoch` may
        # follow a shorter last one that was already committed under that number.
        number = self.state["epoch"] + 1 if self.plan else epoch + 1
        state = {**self.state, "epoch": number, "checkpoint": name}
        if self.plan:
            state["step"] = step
            logs = {"step": step, **logs}
        improved = improvement(self.select_by, bool(self.plan), state, logs)
        if improved:
            with averaged_weights(self.model):  # train.ema: the average is what was validated
                save_weights_atomically(self.model, self.run.weights_file, optimizer=False)
            state.update(improved, best_epoch=number, **({"best_step": step} if self.plan else {}))
        self.run.history.keep(number, {key: value if key == "step" else float(value) for key, value in logs.items()})
        folder.commit(state)
        self.state = state
        self.prune(name)

    def prune(self, name: str) -> None:
        """Deletes the checkpoints beyond train.keep_checkpoints that this process resumed from or wrote."""
        self.lineage.append(name)
        for old in self.lineage[:-self.keep]:
            self.run.checkpoints.delete(old, self.worker)
        self.lineage = self.lineage[-self.keep:]
