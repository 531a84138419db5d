"""Training by steps (`train.steps`): how `fit` runs segments of checkpoint_every steps on a stream.

Keras counts epochs; a streamed run counts steps. Each Keras "epoch" is a segment of
`checkpoint_every` steps that ends in a checkpoint (the last one may be shorter), validation runs
after the segments where a multiple of `validate_every` falls and at the end, and `fit` takes its
batches from an iterator the run owns, so that its position can be saved and restored.

>>> StepPlan(steps=2500, checkpoint_every=1000, validate_every=2000).validations()
[2, 3]
"""

from __future__ import annotations

import keras
import tensorflow as tf

from textseq.distribute import distribute_dataset, task_index, workers
from textseq.recipe import Recipe, TrainConfig


class StepPlan:
    """Step-based training (`train.steps`) as Keras epochs: each "epoch" is a segment of
    `checkpoint_every` steps ending in a checkpoint; the last one may be shorter.

    >>> plan = StepPlan.of(TrainConfig(steps=2500, checkpoint_every=1000, validate_every=2000))
    >>> plan.segments, plan.validations(), plan.step_after(3)
    (3, [2, 3], 2500)
    """

    def __init__(self, steps: int, checkpoint_every: int, validate_every: int):
        self.steps = steps
        self.checkpoint_every = min(checkpoint_every, steps)
        self.validate_every = validate_every

    @classmethod
    def of(cls, config: TrainConfig) -> "StepPlan | None":
        return cls(config.steps, config.checkpoint_every, config.validate_every) if config.steps else None

    @property
    def segments(self) -> int:
        return -(-self.steps // self.checkpoint_every)

    def step_after(self, segments: int) -> int:
        return min(segments * self.checkpoint_every, self.steps)

    def validations(self) -> list[int]:
        """The segments (1-based, as Keras' validation_freq counts) after which validation runs: every
        validate_every steps, and at the end."""
        return [k for k in range(1, self.segments + 1)
                if self.step_after(k) % self.validate_every == 0 or k == self.segments]


def fit_by_steps(model: keras.Model, iterator, strategy: tf.distribute.Strategy, plan: StepPlan, options: dict,
                 placeholder):
    """`fit` options for train.steps: segments of checkpoint_every steps, validations as planned, the
    batches from the checkpointed iterator. Returns what to hand `fit` as its data."""
    feed_from(model, iterator, strategy)
    options.update(steps_per_epoch=plan.checkpoint_every, validation_freq=plan.validations())
    options["callbacks"].append(StopAtStep(plan.steps))
    return placeholder


def stream_context(strategy: tf.distribute.Strategy) -> tf.distribute.InputContext | None:
    """The input context of this process' stream: one pipeline per worker, yielding one batch per
    local replica and step (None on one device)."""
    if strategy is tf.distribute.get_strategy():
        return None
    return tf.distribute.InputContext(num_input_pipelines=workers(strategy), input_pipeline_id=task_index(strategy),
                                      num_replicas_in_sync=strategy.num_replicas_in_sync)


def feed_from(model: keras.Model, iterator: tf.data.Iterator, strategy: tf.distribute.Strategy) -> None:
    """Makes `fit` take its batches from `iterator` (a plain tf.data iterator, whose position a
    checkpoint saves and restores) instead of from an iterator of its own.

    On one device the step reads the iterator inside its graph. Under a strategy, each step takes
    one batch per local replica and hands them over as per-replica values: TensorFlow's own
    distributed iterators cannot be checkpointed.
    """
    model.make_train_function()
    step = model.train_function
    if strategy is tf.distribute.get_strategy():
        model.train_function = lambda _keras_iterator: step(iterator)
        return
    local = strategy.num_replicas_in_sync // workers(strategy)

    def next_batches(_keras_iterator):
        batches = [next(iterator) for _ in range(local)]
        return step([strategy.experimental_distribute_values_from_function(
            lambda context: batches[context.replica_id_in_sync_group % local])])

    model.train_function = next_batches


def placeholder_batches(strategy: tf.distribute.Strategy, data, recipe: Recipe):
    """What `fit` is handed with `feed_from`: one validation batch, repeated, for its set-up only."""
    batch = next(iter(data.dataset("validation", recipe.train.batch_size // strategy.num_replicas_in_sync)))
    return distribute_dataset(strategy, lambda context: tf.data.Dataset.from_tensors(batch).repeat())


class StopAtStep(keras.callbacks.Callback):
    """Ends training after the optimizer's `steps`-th step (the last segment may be shorter)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            self.model.stop_training = True


class OnValidations(keras.callbacks.Callback):
    """A plateau rule that counts validations: with train.steps not every segment validates, and
    the wrapped callback sees only those that did."""

    def __init__(self, rule: keras.callbacks.Callback):
        super().__init__()
        self.rule = rule

    def set_model(self, model):
        super().set_model(model)
        self.rule.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.rule.set_params(params)

    def on_train_begin(self, logs=None):
        self.rule.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_loss" in logs:
            self.rule.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.rule.on_train_end(logs)
