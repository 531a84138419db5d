"""The recipe's optimizer and learning-rate schedule (train.optimizer, learning_rate, schedule, clipnorm).

>>> make_optimizer(TrainConfig(optimizer="sgd", learning_rate=0.1), steps_per_epoch=10).name
'sgd'
"""

from __future__ import annotations

import keras

from textseq import kernels
from textseq.recipe import TrainConfig


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
