import csv
import json
import shutil

import h5py
import keras
import numpy as np
import pytest

from textseq.errors import UserError
from textseq.recipe import recipe_from_dict
from textseq.runs import Run
from textseq.training import train

from conftest import TINY


def h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_run_directory_layout(trained_run):
    for name in ("run.json", "recipe.yaml", "vocab.txt", "model.weights.h5", "metrics.csv", "checkpoints/state.json"):
        assert (trained_run / name).exists(), name
    assert list((trained_run / "logs").rglob("events.out.tfevents.*")), "TensorBoard logs"
    assert Run(trained_run).recipe() == recipe_from_dict(TINY, ["train.epochs=2"])


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(tmp_path, trained_run):
    straight = trained_run  # TINY, 2 epochs, uninterrupted

    resumed = tmp_path / "resumed"
    first = train(recipe_from_dict(TINY, ["train.epochs=1"]), resumed, verbose=0)
    second = train(recipe_from_dict(TINY, ["train.epochs=2"]), resumed, verbose=0)
    assert (first["epochs_run"], second["resumed_from_epoch"], second["epochs_run"]) == (1, 1, 1)

    with open(resumed / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]  # no epoch twice
    # Same weights and optimizer state (Adam moments, iteration count) as an uninterrupted run:
    # the checkpoint restored the optimizer and the data order of epoch 2 did not depend on the restart.
    expected = h5_arrays(straight / "checkpoints" / "epoch-0002.weights.h5")
    actual = h5_arrays(resumed / "checkpoints" / "epoch-0002.weights.h5")
    assert expected.keys() == actual.keys() and any("optimizer" in k for k in expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)

    again = train(recipe_from_dict(TINY, ["train.epochs=2"]), resumed, verbose=0)
    assert again["epochs_run"] == 0 and again["epochs_done"] == 2
    assert (again["setup_seconds"], again["first_step_seconds"]) == (None, None)  # no step ran
    assert 0 < second["setup_seconds"] and 0 < second["first_step_seconds"]
    assert second["setup_seconds"] + second["first_step_seconds"] < second["wall_seconds"]
    # Decoding settings change nothing trained: the run takes them and keeps its epochs.
    decoding = train(recipe_from_dict(TINY, ["train.epochs=2", "decode.beam_size=4", "decode.alpha=0.6"]), resumed,
                     verbose=0)
    assert decoding["epochs_done"] == 2 and Run(resumed).recipe().decode.beam_size == 4


def test_a_different_recipe_refuses_unless_overwrite(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with pytest.raises(UserError, match=r"different recipe \(model.cell differ\).*--overwrite"):
        train(recipe_from_dict(TINY, ["train.epochs=2", "model.cell=gru"]), run, verbose=0)
    summary = train(recipe_from_dict(TINY, ["model.cell=gru"]), run, overwrite=True, verbose=0)
    assert summary["resumed_from_epoch"] == 0 and Run(run).recipe().model.cell == "gru"


def test_refuses_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a textseq run directory"):
        train(recipe_from_dict(TINY), tmp_path, overwrite=True, verbose=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_early_stopping_and_checkpoint_rotation(tmp_path):
    summary = train(recipe_from_dict(TINY, ["train.epochs=4", "train.early_stopping_patience=1",
                                            "train.learning_rate=0.5", "train.optimizer=sgd"]), tmp_path / "r",
                    verbose=0)
    assert summary["epochs_done"] <= 4
    assert len(list((tmp_path / "r" / "checkpoints").glob("epoch-*.weights.h5"))) <= 2


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    import textseq.training

    class BrokenAfterOneEpoch(keras.optimizers.schedules.LearningRateSchedule):
        """0.01 for the 12 steps of the first epoch (400 pairs / 32), then NaN, as an overflow would give."""

        def __call__(self, step):
            return keras.ops.where(step < 12, 0.01, float("nan"))

    monkeypatch.setattr(textseq.training, "make_optimizer",
                        lambda config, steps: keras.optimizers.SGD(learning_rate=BrokenAfterOneEpoch()))
    run = tmp_path / "run"
    with pytest.raises(UserError) as error:
        train(recipe_from_dict(TINY, ["train.epochs=3"]), run, verbose=0)
    message = str(error.value)
    assert message.startswith("training stopped: the loss became ") and " in epoch 2, step " in message
    assert "its last good checkpoint is epoch 1" in message and "Lower train.learning_rate" in message
    state = Run(run).checkpoints.state()
    assert state["epoch"] == 1 and state["checkpoint"] == "epoch-0001.weights.h5"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.h5")) == ["epoch-0001.weights.h5"]
    weights = h5_arrays(run / "model.weights.h5")
    assert all(np.isfinite(value).all() for value in weights.values())
    with open(run / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # the broken epoch is not logged as finished


HOLD_THE_LOCK = "import sys, time; from textseq.runs import Run; Run(sys.argv[1]).lock.take(); print('locked', flush=True); time.sleep(120)"


def test_two_trainings_never_write_one_run(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    train(recipe_from_dict(TINY), run, verbose=0)
    assert not (run / "training.lock").exists()  # released when training ends
    recipe = (run / "recipe.yaml").read_text()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = rf"{run}: another textseq train is writing this run \({run}/training.lock is locked: pid {holder.pid} on "
        with pytest.raises(UserError, match=message) as error:
            train(recipe_from_dict(TINY, ["train.epochs=2"]), run, verbose=0)
        assert f"only if the process is gone for good (a machine that died, a network disk) delete {run}/training.lock" \
            in str(error.value)
        with pytest.raises(UserError, match="another textseq train"):  # not even --overwrite deletes it
            train(recipe_from_dict(TINY, ["model.cell=gru"]), run, overwrite=True, verbose=0)
        assert Run(run).checkpoints.state()["epoch"] == 1 and (run / "recipe.yaml").read_text() == recipe
    finally:
        holder.kill()
        holder.wait()
    # The lock went with its process; the file it left (as a crash would) blocks nothing.
    assert (run / "training.lock").exists()
    summary = train(recipe_from_dict(TINY, ["train.epochs=2"]), run, verbose=0)
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_done"] == 2


def test_a_cosine_schedule_decays_to_a_tenth_and_a_resumed_run_stays_on_the_curve(tmp_path):
    recipe = recipe_from_dict(TINY, ["train.epochs=2", "train.schedule=cosine"])
    straight = tmp_path / "straight"
    train(recipe, straight, verbose=0)
    with open(straight / "metrics.csv") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    # Half-way the cosine is at 0: the rate is half-way between 0.01 and its floor 0.001.
    np.testing.assert_allclose(rates, [0.0055, 0.001], rtol=1e-5)

    # The same run, as if killed during its second epoch: only epoch 1's checkpoint is left.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (resumed / "checkpoints" / "epoch-0002.weights.h5").unlink()
    state = json.loads((resumed / "checkpoints" / "state.json").read_text())
    (resumed / "checkpoints" / "state.json").write_text(
        json.dumps({**state, "epoch": 1, "checkpoint": "epoch-0001.weights.h5"}))
    lines = (resumed / "metrics.csv").read_text().splitlines(keepends=True)
    (resumed / "metrics.csv").write_text("".join(lines[:-1]))

    assert train(recipe, resumed, verbose=0)["resumed_from_epoch"] == 1
    expected = h5_arrays(straight / "checkpoints" / "epoch-0002.weights.h5")
    actual = h5_arrays(resumed / "checkpoints" / "epoch-0002.weights.h5")
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert (resumed / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()


def test_cosine_and_halving_on_plateaus_do_not_mix(tmp_path):
    with pytest.raises(UserError, match="train.reduce_lr_patience halves a constant learning rate"):
        recipe_from_dict(TINY, ["train.schedule=cosine", "train.reduce_lr_patience=1"])


def test_training_reads_in_short_named_steps():
    import ast

    from conftest import ROOT

    for module in ("training.py", "checkpoints.py"):
        tree = ast.parse((ROOT / "textseq" / module).read_text())
        lengths = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert max(lengths.values()) <= 40, {name: n for name, n in lengths.items() if n > 40}


def test_a_requested_stop_ends_training_at_the_next_batch_and_is_then_forgotten(tmp_path):
    """Ctrl-C's KeyboardInterrupt is lost when it lands in a finalizer; the request it also makes is not."""
    from textseq.callbacks import STOP, request_stop
    from textseq.training import train

    from conftest import TINY

    request_stop()
    with pytest.raises(KeyboardInterrupt):
        train(recipe_from_dict(TINY, ["train.epochs=5"]), tmp_path / "run", verbose=0)
    assert not STOP.is_set() and Run(tmp_path / "run").checkpoints.state() is None  # stopped in the first epoch
    summary = train(recipe_from_dict(TINY, ["train.epochs=1"]), tmp_path / "run", verbose=0)
    assert summary["epochs_done"] == 1
