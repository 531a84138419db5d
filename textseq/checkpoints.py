"""Checkpoints of a training run: their names, saving (weights with the optimizer, the random states
and the input stream's position), restoring the newest intact one, worker positions, pruning and
the best weights. `EpochCheckpoint` is the callback that does it after every epoch (or segment of
train.steps); the files go through `textseq.files`, so each is whole or absent.

>>> step_checkpoint(2500)
'step-00002500.weights.h5'
"""

from __future__ import annotations

import errno
import io
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
from textseq.models import Seq2Seq
from textseq.runs import Run, load_weights
from textseq.steps import StepPlan

if TYPE_CHECKING:
    from textseq.callbacks import StopOnNonFiniteLoss

log = logging.getLogger(__name__)


def checkpoint_number(path: Path) -> int:
    """The number of `checkpoints/epoch-NNNN.weights.h5` or `step-NNNNNNNN.weights.h5` (-1 for another name)."""
    number = path.name.removesuffix(".weights.h5").partition("-")[2]
    return int(number) if number.isdigit() else -1


def step_checkpoint(step: int) -> str:
    """The weights file of the checkpoint after `step` steps (train.steps)."""
    return f"step-{step:08d}.weights.h5"


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


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch (or segment of train.steps): model + optimizer, and the random states (+ the
    input stream's position) to `checkpoints/`, the best weights to `model.weights.h5`, then the
    commit (`Run.commit_epoch`: metrics.csv, the checkpoint's state, state.json).

    Each file is written whole under a temporary name and renamed, state.json last, so a crash at
    any moment leaves the previous commit usable; `restore` resumes from it and drops what a crash
    left of the one after it. Checkpoints are `epoch-NNNN.*`, or `step-NNNNNNNN.*` with train.steps.
    """

    def __init__(self, run: Run, guard: StopOnNonFiniteLoss, keep: int = 2, plan: StepPlan | None = None,
                 iterator=None, select_by: str = "loss", strategy: tf.distribute.Strategy | None = None):
        super().__init__()
        # Several workers reading streams: each saves its own pipelines' position (worker K in its own
        # run directory, as `.resume-wK`), and the chief commits only when all have (a barrier).
        self.worker = task_index(strategy) if strategy is not None else 0
        self.barrier = (lambda: barrier(strategy)) if plan and strategy is not None and workers(strategy) > 1 \
            else None
        self.select_by = select_by  # the validation score that picks the best weights: loss, bleu or chrf
        self.run = run
        self.guard = guard  # when it stopped training, the epoch is not saved
        self.keep = keep  # checkpoints kept on disk; older ones that this process resumed from or wrote are deleted
        self.plan = plan
        self.iterator = iterator  # the training stream, whose position is saved with each checkpoint
        self.state: dict = {"epoch": 0, "best_val_loss": None, "best_epoch": None}
        self.lineage: list[str] = []  # the checkpoints this process resumed from or wrote, oldest first

    def restore(self, model: Seq2Seq) -> int:
        self.set_model(model)
        for partial in files.remove_temporaries(self.run.path, self.run.checkpoints):
            log.info("removed %s, what an interrupted commit left", partial.name)
        return self._restore(model)

    def _restore(self, model: Seq2Seq) -> int:
        """Loads the newest intact checkpoint into `model` (and the stream's position into the
        iterator) and returns the number of finished epochs (segments).

        state.json names it; when state.json is missing or damaged, or names a damaged checkpoint,
        the newest intact earlier one (by the state saved beside it) is taken instead.
        """
        named = self.run.state()
        candidates = ([named] if named else []) + [
            state for state in self.run.checkpoint_states() if not named or state["epoch"] < named["epoch"]]
        problems = []
        for state in candidates:
            try:
                load_weights(model, self.run.checkpoints / state["checkpoint"])
                self.load_resume_state(state["checkpoint"])
            except UserError as error:
                problems.append(str(error).split(";")[0])
                continue
            if problems or state is not named:
                log.warning("warning: resuming from %s (%s)", state["checkpoint"],
                            "; ".join(problems) or f"{self.run.state_file} was missing or damaged")
            self.state = state
            self.lineage = [path.name for path in sorted(self.run.checkpoints.glob("*-*.weights.h5"),
                                                         key=checkpoint_number)
                            if checkpoint_number(path) < checkpoint_number(Path(state["checkpoint"]))] + [
                state["checkpoint"]]
            self.run.write_metrics(state["epoch"])  # a crash may have left the next epoch's row
            return state["epoch"]
        if problems or self._trained_before():
            raise UserError(
                f"{self.run.path}: has finished epochs but no intact checkpoint to resume from "
                f"({'; '.join(problems) or f'no {self.run.state_file.name} and no epoch-*.json'}); starting over "
                f"would replace its best weights. Restore {self.run.checkpoints} from a backup to resume, pass "
                "--overwrite to train the run anew (deleting its files), or choose another --out")
        self.run.write_metrics(0)
        return 0

    def _trained_before(self) -> bool:
        """Whether more than an uncommitted first epoch was trained here (which a restart redoes exactly)."""
        _, rows = self.run.metrics()
        return len(rows) > 1 or any(path.name != self.checkpoint_name(0)
                                    for path in self.run.checkpoints.glob("*-*.weights.h5"))

    def checkpoint_name(self, epoch: int) -> str:
        """The weights file of epoch (segment) `epoch`, counted from 0."""
        if self.plan:
            return step_checkpoint(self.plan.step_after(epoch + 1))
        return f"epoch-{epoch + 1:04d}.weights.h5"

    def resume_prefix(self, name: str) -> Path:
        suffix = f".resume-w{self.worker}" if self.worker else ".resume"
        return self.run.checkpoints / name.replace(".weights.h5", suffix)

    def load_worker_position(self, step: int) -> None:
        """A worker other than the chief: its pipelines' position at the chief's checkpoint `step`."""
        if step:
            self.load_resume_state(step_checkpoint(step))

    def save_worker_position(self) -> None:
        """A worker other than the chief, at a checkpoint: its position, then the chief may commit."""
        step = int(self.model.optimizer.iterations.numpy())
        self.run.checkpoints.mkdir(parents=True, exist_ok=True)
        name = step_checkpoint(step)
        self.save_resume_state(name)
        self.barrier()
        self.lineage.append(name)
        for old in self.lineage[:-self.keep]:
            for part in self.run.checkpoints.glob(self.resume_prefix(old).name + ".*"):
                part.unlink(missing_ok=True)
        self.lineage = self.lineage[-self.keep:]

    def resume_state(self) -> tf.train.Checkpoint:
        """The dropout layers' random states and the stream's position: what the weights file lacks for
        the next steps to be those of an uninterrupted run."""
        weights = {id(v) for v in self.model.weights}
        seeds = [v.value for v in self.model.variables if id(v) not in weights]
        return tf.train.Checkpoint(seeds=seeds, **({"input": self.iterator} if self.iterator is not None else {}))

    def load_resume_state(self, name: str) -> None:
        prefix = self.resume_prefix(name)
        if self.iterator is None and not prefix.with_name(prefix.name + ".index").exists():
            log.warning("warning: %s has no random states (written by an older textseq); dropout goes on from "
                        "other ones than an uninterrupted run would", name)
            return
        try:
            self.resume_state().read(str(prefix)).assert_consumed()
        except (tf.errors.OpError, ValueError, AssertionError) as error:
            raise UserError(f"{prefix}: the input's position and random states cannot be loaded ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:160]}); the file is damaged or missing") from None

    def save_resume_state(self, name: str) -> None:
        """`resume_state`, written into a temporary folder and its files renamed into place."""
        prefix = self.resume_prefix(name)
        folder = files.temporary(prefix)
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.WARNING)  # it logs every save's "Sharding callback duration" at INFO
        try:
            self.resume_state().write(str(folder / "state"))
        finally:
            absl.setLevel(level)
        for part in sorted(folder.glob("state.*")):  # .data-* before .index
            files.replace(part, prefix.with_name(prefix.name + part.name[len("state"):]))
        shutil.rmtree(folder)

    def on_epoch_end(self, epoch: int, logs: dict | None = None):
        if self.guard.stopped_at:
            return  # weights after a NaN step are not worth keeping; the previous epoch stays the last
        if self.worker:
            self.save_worker_position()
            return
        try:
            self.commit(epoch, logs or {})
        except (OSError, tf.errors.OpError) as error:  # a full disk, a lost mount: stop with the last commit intact
            files.remove_temporaries(self.run.path, self.run.checkpoints)
            message = str(getattr(error, "message", error))
            reason = ("No space left on device" if getattr(error, "errno", None) == errno.ENOSPC
                      or "No space left on device" in message else message.splitlines()[0][:200])
            kept = f"epoch {self.state['epoch']}" if self.state["epoch"] else "no finished epoch"
            if self.plan:
                kept = f"step {self.state['step']}" if self.state.get("step") else "no checkpoint"
            what = f"step {self.plan.step_after(epoch + 1)}" if self.plan else f"epoch {epoch + 1}"
            raise UserError(f"{self.run.path}: {what} cannot be saved ({reason}); training stopped and the "
                            f"run keeps {kept}. Free some room (or fix the disk) and run the same command to resume"
                            ) from None

    def improvement(self, state: dict, logs: dict) -> dict:
        """`{"best_val_...": value}` when these logs beat the best so far by train.select_by, else {}.

        Loss is better lower, BLEU and chrF higher. With train.steps only validations choose; with
        epochs, a run without validation data chooses by its training loss.
        """
        key = f"val_{self.select_by}"
        value = logs.get(key) if self.plan or self.select_by != "loss" else logs.get("val_loss", logs.get("loss"))
        best = state.get(f"best_{key}")
        if value is None or not math.isfinite(value):
            return {}
        if best is None or (value < best if self.select_by == "loss" else value > best):
            return {f"best_{key}": float(value)}
        return {}

    def commit(self, epoch: int, logs: dict) -> None:
        """Writes epoch `epoch`'s checkpoint, the best weights if it is the best, and its commit."""
        self.run.checkpoints.mkdir(exist_ok=True)
        step = int(self.model.optimizer.iterations.numpy())
        name = step_checkpoint(step) if self.plan else self.checkpoint_name(epoch)
        save_weights_atomically(self.model, self.run.checkpoints / name)
        self.save_resume_state(name)
        if self.barrier:
            self.barrier()  # every worker has saved its position for this step
        # Step runs count their commits: after more train.steps, the segment Keras numbers `epoch` may
        # follow a shorter last one that was already committed under that number.
        number = self.state["epoch"] + 1 if self.plan else epoch + 1
        state = {**self.state, "epoch": number, "checkpoint": name}
        if self.plan:
            state["step"] = step
            logs = {"step": state["step"], **logs}
        improved = self.improvement(state, logs)
        if improved:
            save_weights_atomically(self.model, self.run.weights_file, optimizer=False)
            state.update(improved, best_epoch=number)
            if self.plan:
                state["best_step"] = state["step"]
        self.run.commit_epoch(state, {key: value if key == "step" else float(value) for key, value in logs.items()})
        self.state = state
        self.lineage.append(name)
        for old in self.lineage[:-self.keep]:
            (self.run.checkpoints / old).unlink(missing_ok=True)
            (self.run.checkpoints / old.replace(".weights.h5", ".json")).unlink(missing_ok=True)
            for part in self.run.checkpoints.glob(self.resume_prefix(old).name + ".*"):
                part.unlink(missing_ok=True)
        self.lineage = self.lineage[-self.keep:]
