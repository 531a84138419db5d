"""Training from a recipe: data, vocabulary, model and optimizer, then `fit` with checkpoints and resume.

>>> summary = train(load_recipe("recipes/dates.yaml"), "runs/dates")  # doctest: +SKIP
>>> summary["epochs_done"], summary["best_val_loss"]  # doctest: +SKIP
(12, 0.0031)
"""

from __future__ import annotations

import array
import dataclasses
import errno
import logging
import math
import shutil
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from textseq.baselines import add_one_unigram
from textseq.data.pipeline import examples_dataset
from textseq.data.sources import load_pairs, resolve
from textseq.data.streams import data_error, fingerprints
from textseq.data.tasks import StreamedData, TaskData
from textseq.distribute import (barrier, broadcast_from_chief, describe, distribute_dataset, is_chief,
                                make_strategy, precision, resolve_precision, task_index,
                                work_around_keras_multi_worker, workers)
from textseq.errors import UserError
from textseq.inference import Translator
from textseq import files, kernels
from textseq.metrics import TokenAccuracy, corpus_scores, token_loss
from textseq.models import CarriedStates, Seq2Seq, build_seq2seq
from textseq.models.recurrent import fast_path_warnings
from textseq.recipe import DecodingOptions, Recipe, TrainConfig
from textseq.runs import Run, checkpoint_number, load_weights, save_weights_atomically, step_checkpoint
from textseq.steps import OnValidations, StepPlan, fit_by_steps, placeholder_batches, stream_context

log = logging.getLogger(__name__)


def train(recipe: Recipe, run_dir: str | Path, overwrite: bool = False, verbose: int | str = "auto") -> dict:
    """Trains (or resumes) the run in `run_dir` and returns a summary of what happened.

    Under `multi_worker` every worker calls this with the same recipe and run directory; only the
    chief reads and writes the run (checkpoints, logs, vocabulary), and the other workers receive
    its restored weights and optimizer state before the first step.
    """
    started = time.monotonic()
    strategy = make_strategy(recipe.train)  # first: logical devices must be set before TensorFlow starts
    check_global_batch(recipe.train, strategy)
    chief = is_chief(strategy)
    # The chief locks the run (two trainings never write one run directory) until it returns.
    run, resumed = Run.prepare(run_dir, recipe, overwrite) if chief else (Run(run_dir), False)
    try:
        return train_prepared(recipe, run, resumed, strategy, verbose, started)
    finally:
        STOP.clear()
        if chief:
            run.unlock()


def train_prepared(recipe: Recipe, run: Run, resumed: bool, strategy: tf.distribute.Strategy,
                   verbose: int | str, started: float) -> dict:
    """`train` once the run directory is locked: data, model, restore, fit, summary."""
    chief = is_chief(strategy)
    data = load_data(recipe, run, resumed, chief)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # the data order of an epoch depends on it
    train_data, validation_data, steps_per_epoch = input_pipelines(recipe, data, strategy, epoch)
    policy = resolve_precision(recipe.train.precision, strategy)
    model = build_model(recipe, data, strategy, policy, steps_per_epoch)
    guard, clock, plan = StopOnNonFiniteLoss(), StepClock(), StepPlan.of(recipe.train)
    # A stream's position is part of the checkpoint: the iterator is made here and kept.
    iterator = iter(train_data) if plan else None
    keep = max(recipe.train.keep_checkpoints, recipe.train.average_last)
    checkpoint = EpochCheckpoint(run, guard, keep, plan, iterator, recipe.train.select_by, strategy)
    initial_epoch = restore(recipe, run, model, strategy, checkpoint)
    done_steps = int(model.optimizer.iterations.numpy())
    epochs = plan.segments if plan else recipe.train.epochs
    if plan:  # counted by steps: a run may go on with more train.steps after a shorter last segment
        initial_epoch = epochs if done_steps >= plan.steps else done_steps // plan.checkpoint_every
    log.info("%s run %s: %s, %s, %d parameters, vocabulary %d/%d, %s, %s", "resuming" if done_steps else "starting",
             run.path, describe(strategy), policy, model.count_params(), data.source.vocab.size,
             data.target.vocab.size, describe_data(data),
             f"step {done_steps} of {plan.steps}" if plan else f"epoch {initial_epoch} of {epochs}")
    history = {}
    if initial_epoch < epochs:
        options = dict(epochs=epochs, initial_epoch=initial_epoch, verbose=verbose if chief else 0, shuffle=False,
                       callbacks=[clock, *callbacks(recipe, run, model, data, epoch, guard, checkpoint, chief)])
        if plan:
            train_data = fit_by_steps(model, iterator, strategy, plan, options,
                                      placeholder_batches(strategy, data, recipe))
        try:
            history = model.fit(train_data, validation_data=validation_data, **options).history
        except tf.errors.OpError as error:
            raise data_error(error) or error from None
    state = checkpoint.state if chief else {}
    check_finished(guard, state)
    averaged = average_last_checkpoints(run, recipe.train.average_last, checkpoint) if chief and history else {}
    return {**summary(run, strategy, policy, model, initial_epoch, history, state, started), **clock.summary(),
            **averaged, **(dict(resumed_from_step=done_steps, steps_done=int(model.optimizer.iterations.numpy()),
                                best_step=state.get("best_step")) if plan else {})}


def average_last_checkpoints(run: Run, last: int, checkpoint: "EpochCheckpoint") -> dict:
    """train.average_last: the mean of the last checkpoints (fewer when fewer were made) in RUN/averaged."""
    from textseq.averaging import average

    if not last:
        return {}
    count = min(last, len(checkpoint.lineage))
    if count < last:
        log.warning("warning: train.average_last: %d, but the run has %d checkpoint(s); averaging those", last, count)
    return {"averaged": average(run.path, count, overwrite=True)["out"]}


def check_average_target(run: Run, last: int) -> None:
    """Before any training: train.average_last must be able to write RUN/averaged when the run ends."""
    from textseq.runs import is_average

    if last and run.averaged.exists() and not is_average(run.averaged):
        raise UserError(f"train.average_last: {last} writes the average to {run.averaged}, which exists and was not "
                        f"written by textseq average; move that folder away, or set train.average_last: 0 and "
                        f"average later with `textseq average {run.path} --last {last} --out DIR`")


class StepClock(keras.callbacks.Callback):
    """When the steps of this call end: the first (how long a start takes) and the rate of the
    second half (once the recurrent loops of most lengths are compiled)."""

    def __init__(self):
        super().__init__()
        self.times = array.array("d")

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.time())

    def summary(self) -> dict:
        times = self.times
        if len(times) < 4:
            return {"first_step_at": times[0] if times else None, "steps_per_second": None}
        middle = len(times) // 2
        return {"first_step_at": times[0],
                "steps_per_second": round((len(times) - 1 - middle) / (times[-1] - times[middle]), 3)}


STOP = threading.Event()  # set by request_stop(); cleared when train() returns


def request_stop() -> None:
    """Asks a running `train` to stop at its next batch, keeping its last finished epoch (what Ctrl-C
    and SIGTERM do in the CLI). The signal's own KeyboardInterrupt is not enough: when it lands in a
    finalizer (a file or tensor being freed) Python prints "Exception ignored" and trains on."""
    STOP.set()


class StopWhenRequested(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the first batch end after `request_stop()`."""

    def on_train_batch_end(self, batch, logs=None):
        if STOP.is_set():
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


def describe_data(data: TaskData) -> str:
    if isinstance(data, StreamedData):
        count = f"{data.train_pairs} training pairs" if data.train_pairs is not None else "training pairs"
        return f"{count} streamed from {sum(len(shards) for shards in data.corpora)} shard(s)"
    return f"{int(data.train[0].nrows())} training {data.unit}"


def check_global_batch(config: TrainConfig, strategy: tf.distribute.Strategy) -> None:
    """The global batch must split evenly across the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"train.batch_size: {config.batch_size} is the global batch, split evenly across the "
                        f"{replicas} replicas of the {describe(strategy)}; use a multiple of {replicas}, e.g. "
                        f"{config.batch_size // replicas * replicas or replicas}")


def load_data(recipe: Recipe, run: Run, resumed: bool, chief: bool) -> TaskData:
    """The task's data with the run's vocabularies (built and saved by the chief for a new run)."""
    if chief:
        check_average_target(run, recipe.train.average_last)
    # A run that has trained must go on with its own vocabulary (loading it names a missing or damaged
    # file); one that stopped before its first checkpoint builds it again.
    saved_vocab = resumed and (run.has_trained() or all(path.exists() for path in run.vocab_files(recipe.vocab)))
    data = TaskData.load(recipe, run.vocabularies(recipe.vocab) if saved_vocab else None)
    if not saved_vocab and chief:
        run.save_vocabularies(data.source.vocab, data.target.vocab, recipe.vocab)
    if isinstance(data, StreamedData):
        if chief:
            run.check_shards(fingerprints([shard for shards in data.corpora for shard in shards],
                                          resolve(recipe.data, ".")))
        return data
    train_count = int(data.train[0].nrows())
    if train_count < recipe.train.batch_size:
        raise UserError(f"train.batch_size: {recipe.train.batch_size} is more than the {train_count} training "
                        f"{data.unit}; use a smaller batch or more data")
    return data


def input_pipelines(recipe: Recipe, data: TaskData, strategy: tf.distribute.Strategy, epoch: tf.Variable):
    """The training and validation datasets as the strategy's replicas need them, and the steps of an
    epoch (of a segment with train.steps, whose training data is one plain stream per worker, read
    as `steps.feed_from` says)."""
    config, static_shapes = recipe.train, isinstance(strategy, tf.distribute.TPUStrategy)
    validation_data = distribute_dataset(strategy, lambda context: data.dataset(
        "validation", config.batch_size, input_context=context, static_shapes=static_shapes))
    if config.steps:
        stream = data.dataset("train", config.batch_size, shuffle_seed=config.seed,
                              input_context=stream_context(strategy), static_shapes=static_shapes)
        return stream, validation_data, StepPlan.of(config).checkpoint_every
    train_data = distribute_dataset(strategy, lambda context: data.dataset(
        "train", config.batch_size, shuffle_seed=config.seed, epoch=epoch, input_context=context,
        static_shapes=static_shapes))
    steps_per_epoch = int(data.dataset("train", config.batch_size, shuffle_seed=config.seed, epoch=epoch).cardinality())
    return train_data, validation_data, steps_per_epoch


def build_model(recipe: Recipe, data: TaskData, strategy: tf.distribute.Strategy, policy: str,
                steps_per_epoch: int) -> Seq2Seq:
    """The compiled model with its weights and optimizer variables created, under the strategy."""
    for warning in fast_path_warnings(recipe.model):
        log.warning("warning: %s", warning)
    keras.utils.set_random_seed(recipe.train.seed)  # the same initial weights, dropout and data order
    static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)
    with strategy.scope(), precision(policy):
        model = build_seq2seq(recipe.model, data.source.vocab.size, data.target.vocab.size)
        if data.carry_state:  # consecutive windows: each row's decoder goes on from where it stopped
            model = CarriedStates(model, recipe.train.batch_size // strategy.num_replicas_in_sync)
        speed_path = kernels.enabled(recipe.train)
        if speed_path:
            kernels.install(model)
        loss = (kernels.token_loss if speed_path else token_loss)(recipe.train.label_smoothing)
        model.compile(optimizer=make_optimizer(recipe.train, steps_per_epoch), loss=loss, metrics=[TokenAccuracy()])
        first_batch = next(iter(examples_dataset(tuple(part[-1:] for part in data.validation), 1,
                                                 *data.max_lengths, static_shapes=static_shapes)))
        model(first_batch[0])  # creates the weights, so a checkpoint can be loaded into them
        if data.streams is not None:
            # A language model's output bias starts at the training words' log frequencies. From zero,
            # models of up to 256 units learned them through the tanh `combine` layer instead: Adam
            # moved all of its weights one way, the tanh saturated, and no gradient reached the layers
            # below it again (recipes/keyboard-en.yaml: validation loss 5.33 after every epoch,
            # whatever the learning rate, GRU or LSTM).
            unigram = add_one_unigram(data.streams["train"], data.target.vocab.size)
            model.decoder.logits.bias.assign(np.log(unigram).astype(np.float32))
        model.optimizer.build(model.trainable_variables)
        if workers(strategy) > 1:
            work_around_keras_multi_worker(model, first_batch)
    return model


def restore(recipe: Recipe, run: Run, model: Seq2Seq, strategy: tf.distribute.Strategy,
            checkpoint: "EpochCheckpoint") -> int:
    """The chief loads the last checkpoint; every worker gets its values. Returns the finished epochs."""
    with strategy.scope():
        done = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Outside the scope: loading creates temporary variables, which under multi_worker would be
    # collective ops that only the chief runs.
    if is_chief(strategy):
        done.assign(checkpoint.restore(model))
        run.write_recipe(trained_recipe(recipe, checkpoint.state))
    broadcast_from_chief(strategy, [*model.variables, *model.optimizer.variables, done])
    if checkpoint.worker and checkpoint.barrier:
        checkpoint.set_model(model)
        checkpoint.load_worker_position(int(model.optimizer.iterations.numpy()))
    return int(done.numpy())


def trained_recipe(recipe: Recipe, state: dict) -> Recipe:
    """The recipe a resumed run records: with its resumable changes (more epochs or steps), but never
    fewer epochs or steps than the run has already trained, so that it describes the weights."""
    config = recipe.train
    if config.steps and state.get("step", 0) > config.steps:
        return dataclasses.replace(recipe, train=dataclasses.replace(config, steps=state["step"]))
    if not config.steps and state.get("epoch", 0) > config.epochs:
        return dataclasses.replace(recipe, train=dataclasses.replace(config, epochs=state["epoch"]))
    return recipe


def callbacks(recipe: Recipe, run: Run, model: Seq2Seq, data: TaskData, epoch: tf.Variable,
              guard: "StopOnNonFiniteLoss", checkpoint: "EpochCheckpoint", chief: bool) -> list[keras.callbacks.Callback]:
    """The epoch counter, the NaN guard, the chief's checkpoints and logs, and the recipe's plateau rules."""
    found = [StopWhenRequested(),
             keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epoch.assign(e),
                                            on_epoch_end=lambda e, logs: log_learning_rate(model, logs)),
             guard]
    if chief:
        if recipe.train.select_by != "loss":  # before the checkpoint, which chooses by them
            found.append(TranslationScores(recipe, data))
        found += [checkpoint, keras.callbacks.TensorBoard(str(run.logs))]
    elif checkpoint.barrier:  # a worker's own stream position, at every checkpoint
        found.append(checkpoint)
    if recipe.train.early_stopping_patience:  # every worker sees the same validation loss
        found.append(OnValidations(keras.callbacks.EarlyStopping(patience=recipe.train.early_stopping_patience)))
    if recipe.train.reduce_lr_patience:
        found.append(OnValidations(keras.callbacks.ReduceLROnPlateau(
            factor=0.5, patience=recipe.train.reduce_lr_patience, verbose=1 if chief else 0)))
    return found


class TranslationScores(keras.callbacks.Callback):
    """After each validation: BLEU and chrF (sacrebleu, data.bleu_tokenize) of the greedy translations
    of the validation split, as `val_bleu` and `val_chrf` in the logs."""

    def __init__(self, recipe: Recipe, data: TaskData):
        super().__init__()
        self.recipe, self.data = recipe, data
        self.pairs = load_pairs(recipe.data, "validation")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "val_loss" not in logs:
            return
        translator = Translator(self.recipe, self.model, self.data.source, self.data.target)
        hypotheses = translator.translate([source for source, _ in self.pairs],
                                          DecodingOptions(max_length=self.recipe.decode.max_length))
        scores = corpus_scores(hypotheses, [target for _, target in self.pairs], self.recipe.data.bleu_tokenize)
        logs.update(val_bleu=scores["bleu"], val_chrf=scores["chrf"])


def check_finished(guard: "StopOnNonFiniteLoss", state: dict) -> None:
    """Raises the NaN guard's story when it stopped training."""
    if guard.stopped_at:
        kept = f"its last good checkpoint is epoch {state['epoch']}" if state.get("epoch") else "no epoch had finished"
        raise UserError(f"training stopped: the loss became {guard.value} in epoch {guard.stopped_at[0]}, step "
                        f"{guard.stopped_at[1]}; nothing after the last finished epoch was saved ({kept}). "
                        "Lower train.learning_rate or set train.clipnorm, and train again (a changed recipe "
                        "needs another --out, or --overwrite to replace this run)")


def summary(run: Run, strategy: tf.distribute.Strategy, policy: str, model: Seq2Seq, initial_epoch: int,
            history: dict, state: dict, started: float) -> dict:
    """What `train` returns: where the run stands and what this call did."""
    return {
        "run": str(run.path),
        "resumed_from_epoch": initial_epoch,
        "epochs_done": state.get("epoch", initial_epoch + len(history.get("loss", []))),
        "epochs_run": len(history.get("loss", [])),
        "steps_done": state.get("step"),
        "best_epoch": state.get("best_epoch"),
        "best_val_loss": state.get("best_val_loss"),
        **{key: state[key] for key in ("best_val_bleu", "best_val_chrf") if key in state},
        "last_metrics": {k: v[-1] for k, v in history.items()},
        "parameters": model.count_params(),
        "strategy": describe(strategy),
        "precision": policy,
        "chief": is_chief(strategy),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def log_learning_rate(model: keras.Model, logs: dict) -> None:
    """The rate the epoch's last step used, for metrics.csv and the progress bar."""
    logs["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The recipe's optimizer; a cosine schedule counts the optimizer's steps, so a resumed run goes on
    along the same curve.

    >>> optimizer = make_optimizer(TrainConfig(schedule="cosine", learning_rate=1.0, epochs=2), 5)
    >>> _ = optimizer.iterations.assign(10)  # the last step of epoch 2
    >>> round(float(optimizer.learning_rate), 6)
    0.1
    """
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.steps or config.epochs * steps_per_epoch, alpha=0.1)
    clipping = {"global_clipnorm" if config.clip == "global" else "clipnorm": config.clipnorm}
    return optimizer_class(config)(learning_rate=learning_rate, **clipping)


def optimizer_class(config: TrainConfig) -> type[keras.optimizers.Optimizer]:
    """The recipe's optimizer: Keras' own, or with the speed path's exact sparse clipping."""
    if kernels.enabled(config):
        from textseq.kernels.optimizers import OPTIMIZERS

        return OPTIMIZERS[config.optimizer]
    return {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
            "rmsprop": keras.optimizers.RMSprop}[config.optimizer]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, and remembers where."""

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self.value = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.stopped_at is None and not math.isfinite(float(loss)):
            self.stopped_at, self.value = (self.epoch + 1, batch + 1), float(loss)
            self.model.stop_training = True


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
            self.remove_partial_files()
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

    def remove_partial_files(self) -> None:
        """What a failed commit left under temporary names (`textseq.files`)."""
        files.remove_temporaries(self.run.path, self.run.checkpoints)

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
            save_weights_atomically(self.model, self.run.weights_file)
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
