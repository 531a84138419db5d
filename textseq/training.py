"""Training from a recipe: data, vocabulary, model and optimizer, then `fit` with checkpoints and resume.

>>> summary = train(load_recipe("recipes/dates.yaml"), "runs/dates")  # doctest: +SKIP
>>> summary["epochs_done"], summary["best_val_loss"]  # doctest: +SKIP
(12, 0.0031)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from textseq.averaging import average_last_checkpoints, check_average_target
from textseq.baselines import add_one_unigram
from textseq.data.pipeline import examples_dataset
from textseq.data.sources import resolve
from textseq.data.fingerprints import check_fingerprints, fingerprints
from textseq.data.streams import data_error
from textseq.data.tasks import StreamedData, TaskData
from textseq.distribute import (broadcast_from_chief, describe, distribute_dataset, is_chief, make_strategy,
                                precision, resolve_precision, work_around_keras_multi_worker, workers)
from textseq.errors import UserError
from textseq.finetuning import Origin, load_initial_weights, reused_vocabularies, weights_origin
from textseq import kernels
from textseq.metrics import TokenAccuracy, token_loss
from textseq.models import CarriedStates, Seq2Seq, build_seq2seq
from textseq.models.recurrent import fast_path_warnings
from textseq.optimization import make_optimizer
from textseq.recipe import Recipe, TrainConfig
from textseq.callbacks import (STOP, StepClock, StopOnNonFiniteLoss, StopWhenRequested, TranslationScores,
                               ValidateAveraged)
from textseq.checkpoints import EpochCheckpoint
from textseq.runs import Run
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
            run.lock.release()


def train_prepared(recipe: Recipe, run: Run, resumed: bool, strategy: tf.distribute.Strategy,
                   verbose: int | str, started: float) -> dict:
    """`train` once the run directory is locked: data, model, restore, fit, summary."""
    chief = is_chief(strategy)
    origin = weights_origin(recipe) if not (resumed and run.has_trained()) else None  # a resume has its own
    data = load_data(recipe, run, resumed, chief, origin)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # the data order of an epoch depends on it
    train_data, validation_data, steps_per_epoch = input_pipelines(recipe, data, strategy, epoch)
    policy = resolve_precision(recipe.train.precision, strategy)
    model = build_model(recipe, data, strategy, policy, steps_per_epoch)
    guard, clock, plan = StopOnNonFiniteLoss(), StepClock(started), StepPlan.of(recipe.train)
    # A stream's position is part of the checkpoint: the iterator is made here and kept.
    iterator = iter(train_data) if plan else None
    keep = max(recipe.train.keep_checkpoints, recipe.train.average_last)
    checkpoint = EpochCheckpoint(run, guard, keep, plan, iterator, recipe.train.select_by, strategy)
    initial_epoch = restore(recipe, run, model, strategy, checkpoint, origin)
    done_steps = int(model.optimizer.iterations.numpy())
    epochs = plan.segments if plan else recipe.train.epochs
    if plan:  # counted by steps: a run may go on with more train.steps after a shorter last segment
        initial_epoch = epochs if done_steps >= plan.steps else done_steps // plan.checkpoint_every
    where = f"step {done_steps} of {plan.steps}" if plan else f"epoch {initial_epoch} of {epochs}"
    log.info("%s run %s: %s, %s", "resuming" if done_steps else "starting", run.path, describe_start(
        strategy, policy, model, data), where)
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
    averaged = average_last_checkpoints(run, recipe.train.average_last, len(checkpoint.lineage)) if chief and history else {}
    return {**summary(run, strategy, policy, model, initial_epoch, history, state, started), **clock.summary(),
            **averaged, **(dict(resumed_from_step=done_steps, steps_done=int(model.optimizer.iterations.numpy()),
                                best_step=state.get("best_step")) if plan else {})}


def describe_start(strategy: tf.distribute.Strategy, policy: str, model: Seq2Seq, data: TaskData) -> str:
    """The strategy, precision, model size, vocabularies and training data of a run that starts."""
    if isinstance(data, StreamedData):
        count = f"{data.train_pairs} training pairs" if data.train_pairs is not None else "training pairs"
        examples = f"{count} streamed from {sum(len(shards) for shards in data.corpora)} shard(s)"
    else:
        examples = f"{int(data.train[0].nrows())} training {data.unit}"
    return (f"{describe(strategy)}, {policy}, {model.count_params()} parameters, vocabulary "
            f"{data.source.vocab.size}/{data.target.vocab.size}, {examples}")


def check_global_batch(config: TrainConfig, strategy: tf.distribute.Strategy) -> None:
    """The global batch must split evenly across the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"train.batch_size: {config.batch_size} is the global batch, split evenly across the "
                        f"{replicas} replicas of the {describe(strategy)}; use a multiple of {replicas}, e.g. "
                        f"{config.batch_size // replicas * replicas or replicas}")


def load_data(recipe: Recipe, run: Run, resumed: bool, chief: bool, origin: Origin | None) -> TaskData:
    """The task's data with the run's vocabularies (built, or reused from `origin` or vocab.from, and
    saved by the chief for a new run)."""
    if chief:
        check_average_target(run, recipe.train.average_last)
    # A run that has trained must go on with its own vocabulary (loading it names a missing or damaged
    # file); one that stopped before its first checkpoint builds it again.
    saved_vocab = resumed and (run.has_trained() or all(path.exists() for path in run.vocabulary_files(recipe.vocab).paths))
    data = TaskData.load(recipe, run.vocabulary_files(recipe.vocab).load() if saved_vocab else
                         reused_vocabularies(recipe, origin))
    if not saved_vocab and chief:
        run.vocabulary_files(recipe.vocab).save(data.source.vocab, data.target.vocab)
    if isinstance(data, StreamedData):
        if chief:
            shards = [shard for shards in data.corpora for shard in shards]
            check_fingerprints(run.shards_file, fingerprints(shards, resolve(recipe.data, ".")))
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
    # A seeded tf.data op pairs its seed with the process's global seed once one is set (an earlier
    # training in this process, the caller): cleared, a stream's order is the recipe's alone, as in a
    # fresh `textseq train`, where a resume replays it. build_model sets the recipe's seed after this.
    tf.random.set_seed(None)
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
        model = build_seq2seq(recipe.model, data.source.vocab.size, data.target.vocab.size,
                              one_vocabulary=recipe.vocab.shared)
        if data.carry_state:  # consecutive windows: each row's decoder goes on from where it stopped
            model = CarriedStates(model, recipe.train.batch_size // strategy.num_replicas_in_sync)
        speed_path = kernels.enabled(recipe.train)
        if speed_path:
            kernels.install(model, recipe.train.steps or recipe.train.epochs * steps_per_epoch)
        loss = (kernels.token_loss if speed_path else token_loss)(recipe.train.label_smoothing)
        model.compile(optimizer=make_optimizer(recipe.train, steps_per_epoch), loss=loss, metrics=[TokenAccuracy()])
        first_batch = next(iter(examples_dataset(tuple(part[-1:] for part in data.validation), 1,
                                                 *data.max_lengths, static_shapes=static_shapes)))
        model(first_batch[0])  # creates the weights, so a checkpoint can be loaded into them
        if data.token_ids is not None:
            # A language model's output bias starts at the training words' log frequencies: from zero,
            # small models learn them through the tanh `combine` layer instead, saturate it, and no
            # gradient reaches the layers below it again.
            unigram = add_one_unigram(data.token_ids["train"], data.target.vocab.size)
            model.decoder.logits.bias.assign(np.log(unigram).astype(np.float32))
        model.optimizer.build(model.trainable_variables)
        if workers(strategy) > 1:
            work_around_keras_multi_worker(model, first_batch)
    return model


def restore(recipe: Recipe, run: Run, model: Seq2Seq, strategy: tf.distribute.Strategy,
            checkpoint: "EpochCheckpoint", origin: Origin | None) -> int:
    """The chief loads the last checkpoint (a new run: `origin`'s weights, if any); every worker gets its
    values. Returns the finished epochs."""
    with strategy.scope():
        done = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Outside the scope: loading creates temporary variables, which under multi_worker would be
    # collective ops that only the chief runs.
    if is_chief(strategy):
        done.assign(checkpoint.restore(model))
        if origin is not None and not int(done.numpy()) and not int(model.optimizer.iterations.numpy()):
            load_initial_weights(model, origin)
            run.info.record(init_from=origin.record())
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
    if recipe.train.ema:  # first: every callback after it sees the average's validation
        found.insert(0, ValidateAveraged())
    # The plateau rules follow train.select_by; every worker sees the same validation loss (the
    # recipe refuses BLEU and chrF here under multi_worker: only the chief scores them).
    monitor = {"monitor": "val_loss"} if recipe.train.select_by == "loss" else {
        "monitor": f"val_{recipe.train.select_by}", "mode": "max"}
    if recipe.train.early_stopping_patience:
        found.append(OnValidations(keras.callbacks.EarlyStopping(patience=recipe.train.early_stopping_patience,
                                                                 **monitor)))
    if recipe.train.reduce_lr_patience:
        found.append(OnValidations(keras.callbacks.ReduceLROnPlateau(
            factor=0.5, patience=recipe.train.reduce_lr_patience, verbose=1 if chief else 0, **monitor)))
    return found


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
