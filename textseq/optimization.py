"""The recipe's optimizer and learning-rate schedule (train.optimizer, learning_rate, schedule,
warmup_steps, accumulate, ema, clipnorm).

>>> make_optimizer(TrainConfig(optimizer="sgd", learning_rate=0.1), steps_per_epoch=10).name
'sgd'
"""

from __future__ import annotations

import contextlib
import functools
import math

import keras
from keras import ops

from textseq import kernels
from textseq.recipe import TrainConfig


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The recipe's optimizer. A schedule counts the optimizer's steps, so a resumed run goes on along
    the same curve; a constant rate without warm-up stays a plain value that the plateau rule halves.

    >>> optimizer = make_optimizer(TrainConfig(schedule="cosine", learning_rate=1.0, epochs=2), 5)
    >>> _ = optimizer.iterations.assign(10)  # after the last step of epoch 2
    >>> round(float(optimizer.learning_rate), 6)
    0.1
    """
    learning_rate = config.learning_rate
    if config.schedule != "constant" or config.warmup_steps:
        learning_rate = Schedule(config.schedule, config.learning_rate, config.warmup_steps,
                                 total_updates=(config.steps or config.epochs * steps_per_epoch) // config.accumulate,
                                 accumulate=config.accumulate)
    options = {"global_clipnorm" if config.clip == "global" else "clipnorm": config.clipnorm}
    if config.accumulate > 1:
        options["gradient_accumulation_steps"] = config.accumulate
    if config.ema:
        options.update(use_ema=True, ema_momentum=config.ema)
    return optimizer_class(config)(learning_rate=learning_rate, **options)


@keras.saving.register_keras_serializable(package="textseq")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of each update: a linear warm-up from 0 over `warmup_steps` updates, then
    constant, cosine (down to a tenth at `total_updates`) or inverse square root.

    Keras passes the optimizer's step, which counts batches; with gradient accumulation an update
    is `accumulate` of them.

    >>> schedule = Schedule("inverse_sqrt", 1.0, warmup_steps=4, total_updates=100)
    >>> [round(float(schedule(step)), 3) for step in (0, 3, 15)]
    [0.25, 1.0, 0.5]
    """

    def __init__(self, kind: str, learning_rate: float, warmup_steps: int = 0, total_updates: int = 1,
                 accumulate: int = 1):
        self.kind, self.learning_rate, self.warmup_steps = kind, learning_rate, warmup_steps
        self.total_updates, self.accumulate = max(total_updates, 1), accumulate

    def __call__(self, step):
        update = ops.cast(ops.floor_divide(step, self.accumulate), "float32") + 1.0  # 1 for the first update
        rate = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.warmup_steps:
            rate = rate * ops.minimum(1.0, update / self.warmup_steps)
        after = ops.maximum(update - 1.0 - self.warmup_steps, 0.0)  # updates since the warm-up ended
        if self.kind == "cosine":
            span = max(self.total_updates - self.warmup_steps, 1)
            progress = ops.minimum(after, span) / span
            rate = rate * (0.1 + 0.9 * 0.5 * (1.0 + ops.cos(math.pi * progress)))
        elif self.kind == "inverse_sqrt":
            rate = rate * ops.sqrt(self.warmup_steps / ops.maximum(update, float(self.warmup_steps)))
        return rate

    def get_config(self):
        return {"kind": self.kind, "learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "total_updates": self.total_updates, "accumulate": self.accumulate}


def optimizer_class(config: TrainConfig) -> type[keras.optimizers.Optimizer]:
    """The recipe's optimizer: Keras' own, or with the speed path's exact sparse clipping; with
    train.ema, its average warms up (`WarmedUpAverage`)."""
    if kernels.enabled(config):
        from textseq.kernels.optimizers import OPTIMIZERS

        base = OPTIMIZERS[config.optimizer]
    else:
        base = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
                "rmsprop": keras.optimizers.RMSprop}[config.optimizer]
    return averaging(base) if config.ema else base


class WarmedUpAverage:
    """Mixin for a Keras optimizer with `use_ema`: after `n` updates the average moves with the decay
    `min(ema_momentum, (1 + n) / (10 + n))`, as TensorFlow's `ExponentialMovingAverage` with
    `num_updates` does. Keras' own average starts from the initial weights with the full decay, so
    after 1,000 updates at 0.999 a third of it is still the untrained model; warmed up, it averages
    roughly the last tenth of the updates until that is longer than `1 / (1 - ema)`.

    >>> [round(float(warmed_up_decay(0.999, n)), 3) for n in (1, 90, 10_000)]
    [0.182, 0.91, 0.999]
    """

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        decay = warmed_up_decay(self.ema_momentum, ops.cast(self.iterations, "float32"))
        decay = ops.where(ops.equal(self.iterations, 0), 0.0, decay)  # the first update: the weights themselves
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                rate = ops.cast(1.0 - decay, variable.dtype)
                average.assign(ops.add(average, ops.multiply(rate, ops.subtract(variable, average))))


def warmed_up_decay(ema: float, updates):
    """The average's decay after `updates` updates (see `WarmedUpAverage`)."""
    return ops.minimum(ema, (1.0 + updates) / (10.0 + updates))


@functools.cache
def averaging(base: type[keras.optimizers.Optimizer]) -> type[keras.optimizers.Optimizer]:
    """`base` with `WarmedUpAverage`, one class per optimizer."""
    return type(base.__name__, (WarmedUpAverage, base), {"__doc__": base.__doc__})


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """Within: `model` holds the optimizer's moving average of its weights (train.ema); after: the
    trained weights again. Without an average, nothing changes.

    >>> with averaged_weights(model):  # doctest: +SKIP
    ...     model.save_weights("best.weights.h5")
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not optimizer.use_ema or not optimizer.built:
        yield
        return
    swap_averaged(optimizer)
    try:
        yield
    finally:
        swap_averaged(optimizer)


def swap_averaged(optimizer: keras.optimizers.Optimizer) -> None:
    """Exchanges the values of the weights and of their moving averages."""
    for variable, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        trained = ops.copy(ops.convert_to_tensor(variable))
        variable.assign(average)
        average.assign(trained)
