"""The training options: train.schedule with warmup_steps, train.accumulate, train.ema, and the
plateau rules following train.select_by."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
from textseq.checkpoints import load_weights
from textseq.errors import UserError
from textseq.inference import Translator
from textseq.evaluation import evaluate
from textseq.metrics import token_loss
from textseq.models import build_seq2seq
from textseq.optimization import Schedule, make_optimizer
from textseq.recipe import ModelConfig, TrainConfig, recipe_from_dict
from textseq.training import train


def rates(schedule, steps):
    return [round(float(schedule(step)), 4) for step in steps]


def test_the_schedules_warm_up_linearly_then_decay_as_named():
    assert rates(Schedule("constant", 1.0, warmup_steps=4), [0, 1, 3, 50]) == [0.25, 0.5, 1.0, 1.0]
    # inverse_sqrt: the rate at the warm-up's end, then 1/sqrt(update).
    assert rates(Schedule("inverse_sqrt", 1.0, warmup_steps=4), [3, 15, 63]) == [1.0, 0.5, 0.25]
    # cosine: from the warm-up's end down to a tenth at the last update.
    assert rates(Schedule("cosine", 1.0, warmup_steps=4, total_updates=14), [3, 4, 9, 14, 99]) == \
        [1.0, 1.0, 0.55, 0.1, 0.1]
    # With accumulation, an update is `accumulate` batches: the warm-up counts updates.
    assert rates(Schedule("constant", 1.0, warmup_steps=2, accumulate=3), [0, 2, 3, 5]) == [0.5, 0.5, 1.0, 1.0]


def fixed_length_batches(rows: int, batch: int) -> tf.data.Dataset:
    """Rows without padding, so every batch has as many target tokens and the mean of two batch
    means is the mean of their union."""
    ids = np.random.default_rng(0).integers(4, 12, size=(rows, 2, 5)).astype("int32")
    inputs = {"source": ids[:, 0], "target_in": ids[:, 1, :-1]}
    return tf.data.Dataset.from_tensor_slices((inputs, ids[:, 1, 1:])).batch(batch)


def weights_after_one_update(batch: int, accumulate: int) -> list[np.ndarray]:
    keras.utils.set_random_seed(3)
    model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4, bidirectional=False), 12, 12)
    config = TrainConfig(optimizer="sgd", learning_rate=0.5, clipnorm=None, accumulate=accumulate, kernels="keras")
    model.compile(optimizer=make_optimizer(config, steps_per_epoch=1), loss=token_loss())
    model.fit(fixed_length_batches(64, batch), epochs=1, shuffle=False, verbose=0)
    return [w.numpy() for w in model.trainable_weights]


def test_accumulating_two_batches_makes_the_update_of_one_twice_as_large():
    accumulated, large = weights_after_one_update(32, accumulate=2), weights_after_one_update(64, accumulate=1)
    for got, want in zip(accumulated, large):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # Without accumulation the two batches make two updates: other weights.
    assert any(not np.allclose(a, b) for a, b in zip(large, weights_after_one_update(32, accumulate=1)))


@pytest.mark.parametrize("kernels", ["auto", "keras"])
def test_the_average_warms_up_so_a_short_run_averages_its_recent_weights(kernels):
    # SGD at rate 1 against a gradient of -1: the weight after update n is n.
    config = TrainConfig(optimizer="sgd", learning_rate=1.0, clipnorm=None, ema=0.999, kernels=kernels)
    optimizer = make_optimizer(config, steps_per_epoch=1)
    weight = keras.Variable(0.0)
    optimizer.build([weight])
    step = tf.function(lambda: optimizer.apply_gradients([(tf.constant(-1.0), weight)]))
    expected = 0.0
    for n in range(300):
        step()
        decay = 0.0 if n == 0 else min(0.999, (1 + n) / (10 + n))  # TensorFlow's num_updates warm-up
        expected = decay * expected + (1 - decay) * (n + 1)
    average = float(optimizer._model_variables_moving_average[0].numpy())
    assert average == pytest.approx(expected, rel=1e-5)
    # Roughly the last tenth of the run; Keras' plain decay would still hold 74% of the initial 0.
    assert 260 < average < 300


def test_ema_validates_and_keeps_the_average_and_resumes_from_the_trained_weights(tmp_path):
    run = tmp_path / "run"
    train(recipe_from_dict(TINY, ["train.ema=0.5"]), run, verbose=0)
    with open(run / "metrics.csv", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    # model.weights.h5 holds what validation scored: the average, not the trained weights.
    assert evaluate(run, "validation")["loss"] == pytest.approx(float(row["val_loss"]), rel=1e-5)
    model = Translator.from_run(run).model
    averaged = [w.numpy() for w in model.weights]
    load_weights(model, run / "checkpoints" / "epoch-0001.weights.h5")
    assert any(not np.allclose(a, t) for a, t in zip(averaged, [w.numpy() for w in model.weights]))
    summary = train(recipe_from_dict(TINY, ["train.ema=0.5", "train.epochs=2"]), run, verbose=0)
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_done"] == 2


def test_early_stopping_follows_select_by(tmp_path):
    # A rate too small to move a weight: chrF never improves after the first validation.
    recipe = recipe_from_dict(TINY, ["train.select_by=chrf", "train.early_stopping_patience=1", "train.epochs=6",
                                     "train.learning_rate=1e-12"])
    summary = train(recipe, tmp_path / "run", verbose=0)
    assert summary["epochs_done"] == 2 and "best_val_chrf" in summary


@pytest.mark.parametrize("overrides, message", [
    (["train.schedule=inverse_sqrt"], "train.schedule: inverse_sqrt decays from the end of the warm-up; set "
                                      "train.warmup_steps"),
    (["train.warmup_steps=100", "train.reduce_lr_patience=2"], "train.warmup_steps schedules it"),
    (["train.schedule=cosine", "train.reduce_lr_patience=2"], "train.schedule: cosine already decays it"),
    (["train.strategy=multi_worker", "train.select_by=bleu", "train.early_stopping_patience=2"],
     "is scored by the chief alone"),
    (["train.ema=1.0"], "train.ema must be less than 1.0"),
    (["train.accumulate=2", "train.strategy=mirrored"], "train.accumulate: 2 cannot run with train.strategy: mirrored"),
])
def test_training_options_that_cannot_work_together_are_refused_naming_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        recipe_from_dict(TINY, overrides)
