"""Step-based training (train.steps) on streamed shards: checkpoints every checkpoint_every steps,
validation every validate_every, a resume that continues exactly (after kill -9 too), and bad shards
that stop a run with one message while it keeps its last checkpoint."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml
from click.testing import CliRunner

from textseq.cli import cli
from textseq.recipe import recipe_from_dict
from textseq.training import train

from conftest import make_shards
from test_training import h5_arrays


def steps_recipe(root, **train_changes) -> dict:
    return {
        "data": {"source": "parallel", "dir": str(root), "train": "part-*", "validation": "part-0",
                 "test": "part-0", "source_language": "de", "target_language": "en", "max_source_length": 12,
                 "max_target_length": 12, "shuffle_buffer": 100},
        "vocab": {"level": "word"},
        "model": {"embedding_dim": 8, "units": 16, "attention_units": 8, "dropout": 0.2},
        "train": {"steps": 30, "checkpoint_every": 10, "validate_every": 20, "batch_size": 8, "learning_rate": 0.01,
                  **train_changes},
        "decode": {"max_length": 12},
    }


def metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def assert_same_weights(expected_file, actual_file, rtol=1e-5, atol=1e-6, optimizer=True):
    expected, actual = h5_arrays(expected_file), h5_arrays(actual_file)
    assert expected.keys() == actual.keys() and any("optimizer" in key for key in expected) == optimizer
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=rtol, atol=atol, err_msg=key)


def test_steps_checkpoint_validate_and_go_on_with_more_steps(tmp_path, caplog):
    make_shards(tmp_path)
    run = tmp_path / "run"
    summary = train(recipe_from_dict(steps_recipe(tmp_path)), run, verbose=0)
    # part-* matches part-0, the validation (and test) shard: said, since it may not be meant.
    assert "data.train also matches the validation files" in caplog.text and "part-0.de" in caplog.text
    assert (summary["steps_done"], summary["resumed_from_step"]) == (30, 0)
    rows = metrics(run)
    assert [row["step"] for row in rows] == ["10", "20", "30"]
    assert [bool(row["val_loss"]) for row in rows] == [False, True, True]  # every 20 steps, and at the end
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert [name for name in names if name.endswith(".weights.h5")] == [
        "step-00000020.weights.h5", "step-00000030.weights.h5"]  # keep_checkpoints: 2
    assert "step-00000030.resume.index" in names and not any(name.startswith("step-00000010") for name in names)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    best = min((float(row["val_loss"]), int(row["step"])) for row in rows if row["val_loss"])
    assert (state["step"], state["best_step"], state["best_val_loss"]) == (30, best[1], pytest.approx(best[0]))

    assert train(recipe_from_dict(steps_recipe(tmp_path)), run, verbose=0)["steps_done"] == 30  # nothing to do
    more = train(recipe_from_dict(steps_recipe(tmp_path, steps=45)), run, verbose=0)
    assert (more["resumed_from_step"], more["steps_done"]) == (30, 45)
    assert [row["step"] for row in metrics(run)] == ["10", "20", "30", "40", "45"]
    # After a shorter last segment, more steps go on in whole segments; each commit has a row of its own.
    more = train(recipe_from_dict(steps_recipe(tmp_path, steps=60)), run, verbose=0)
    assert (more["resumed_from_step"], more["steps_done"]) == (45, 60)
    assert [(row["epoch"], row["step"]) for row in metrics(run)] == [
        (str(number), str(step)) for number, step in enumerate([10, 20, 30, 40, 45, 55, 60])]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 7


@pytest.mark.slow
def test_kill_9_loses_at_most_checkpoint_every_steps_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path):
    make_shards(tmp_path, pairs=200)
    raw = steps_recipe(tmp_path, steps=80, checkpoint_every=10, validate_every=40)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    # The run nobody kills trains in the test's process, with a global seed set, as an earlier training
    # or the caller leaves one; the killed run and its rerun in fresh processes: the same stream.
    straight = tmp_path / "straight"
    tf.random.set_seed(1234)
    train(recipe_from_dict(raw), straight, verbose=0)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "textseq", "train", str(recipe_file), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state_file = out / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 300
        while not (state_file.exists() and json.loads(state_file.read_text() or "{}").get("step", 0) >= 30):
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint at step 30 within 300 s"
            time.sleep(0.05)
        time.sleep(0.3)  # a few steps past it
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    committed = json.loads(state_file.read_text())["step"]
    assert 30 <= committed < 80, "the kill came after the run had finished: make it longer"

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    # It went on from the last checkpoint, so it lost only the steps after it (< checkpoint_every).
    assert f"resumed_from_step  {committed}" in rerun.stderr
    assert [row["step"] for row in metrics(out)] == [str(step) for step in range(10, 90, 10)]
    # The same weights, Adam moments and dropout as the run nobody killed: the stream's position and
    # the random states came back exactly.
    assert_same_weights(straight / "checkpoints" / "step-00000080.weights.h5",
                        out / "checkpoints" / "step-00000080.weights.h5")
    # The best weights are the model's alone: Adam's moments belong to the checkpoints (a third of the bytes).
    assert_same_weights(straight / "model.weights.h5", out / "model.weights.h5", optimizer=False)
    assert (out / "model.weights.h5").stat().st_size * 2 < (out / "checkpoints" / "step-00000080.weights.h5").stat().st_size


def test_a_bad_shard_stops_a_new_run_before_its_first_step_naming_its_file_and_line(tmp_path):
    make_shards(tmp_path, packed=False)
    good = (tmp_path / "part-2.en").read_bytes()
    lines = good.split(b"\n")
    (tmp_path / "part-2.en").write_bytes(b"\n".join(lines[:9] + [b"\xff\xfe broken"] + lines[10:]))
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(steps_recipe(tmp_path, steps=10)))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "data.train: " in result.output and "part-2.en, line 10: byte 0xff (column 0) is not UTF-8" in result.output
    assert not (run / "checkpoints").exists()

    (tmp_path / "part-2.en").write_bytes(b"\n".join(lines[:30]))  # 30 lines, its source has 50
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 2 and "part-2.en ends before line 31 but" in result.output

    # The run never saved a checkpoint: a corrected recipe (here: without the bad shard) starts it anew.
    recipe_file.write_text(yaml.safe_dump({**steps_recipe(tmp_path, steps=10), "data": {
        **steps_recipe(tmp_path)["data"], "train": ["part-0", "part-1"]}}))
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "steps_done         10" in result.output


def test_a_training_file_changed_under_a_run_stops_its_resume_and_the_run_keeps_its_checkpoint(tmp_path):
    make_shards(tmp_path, packed=False)
    run = tmp_path / "run"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(steps_recipe(tmp_path, steps=10)))
    assert CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)]).exit_code == 0
    before = sorted(path.name for path in (run / "checkpoints").iterdir())

    good = (tmp_path / "part-2.en").read_bytes()
    (tmp_path / "part-2.en").write_bytes(good + b"one more line\n")
    recipe_file.write_text(yaml.safe_dump(steps_recipe(tmp_path, steps=20)))
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"part-2.en changed ({len(good)} bytes then, {len(good) + 14} now) since this run started" in result.output
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == before

    # Changed in the middle, at the same size: the bytes are compared, not just the ends.
    middle = len(good) // 2
    (tmp_path / "part-2.en").write_bytes(good[:middle] + b"X" + good[middle + 1:])
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 2 and "part-2.en changed (same size, other bytes) since this run started" in result.output
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == before

    # Put back and moved to another directory (data.dir): the same contents, so the run goes on.
    (tmp_path / "part-2.en").write_bytes(good)
    moved = tmp_path / "moved"
    moved.mkdir()
    for shard in tmp_path.glob("part-*"):
        shard.rename(moved / shard.name)
    recipe_file.write_text(yaml.safe_dump({**steps_recipe(moved, steps=20)}))
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "resumed_from_step  10" in result.output and "steps_done         20" in result.output
    assert json.loads((run / "shards.json").read_text())[0][0] == "part-0.de"  # named within data.dir

    result = CliRunner().invoke(cli, ["evaluate", str(run), "--split", "train"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "--split train: " in result.stderr and "evaluate its validation or test split" in result.stderr


@pytest.mark.parametrize("change, message", [
    ({"train": "nothing-*"}, r"data.train: .*nothing-\*\.de \(or \.gz\) matches no file"),
    ({"train": [{"files": "part-*", "weight": -1}]}, r"data.train\[0\].weight must be a positive number"),
])
def test_bad_globs_and_weights_exit_2_with_one_message(tmp_path, change, message):
    make_shards(tmp_path, shards=2)
    raw = steps_recipe(tmp_path)
    raw["data"].update(change)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(cli, ["train", str(recipe_file), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert __import__("re").search(message, result.output), result.output

