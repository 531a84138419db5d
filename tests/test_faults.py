"""Faults, for real: a training process killed with SIGKILL in the middle of an epoch, a crash while a
checkpoint is being written, damaged or foreign run directories, and malformed TSV corpora."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from textseq.cli import cli
from textseq.errors import UserError
from textseq.inference import load
from textseq.recipe import recipe_from_dict
from textseq.training import train

from conftest import ROOT, TINY, make_shards
from test_training import h5_arrays

def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def train_command(recipe_file, out):
    return [sys.executable, "-m", "textseq", "train", str(recipe_file), "--out", str(out)]


def wait_for_epoch(out, epoch: int, process: subprocess.Popen, timeout: float = 240) -> None:
    state_file = out / "checkpoints" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= epoch:
            return
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} did not finish in {timeout} s")


KILLED_MID_EPOCH = textwrap.dedent("""
    import os, signal
    import textseq.callbacks
    from textseq.cli import main

    end_of_batch, fifth_batches = textseq.callbacks.StepClock.on_train_batch_end, []
    def killed_in_epoch_2(self, batch, logs=None):  # SIGKILL itself at the 5th batch of epoch 2
        end_of_batch(self, batch, logs)
        fifth_batches.extend([batch] if batch == 4 else [])
        if len(fifth_batches) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    textseq.callbacks.StepClock.on_train_batch_end = killed_in_epoch_2
    main()  # textseq with this command line's arguments
""")


@pytest.mark.slow
def test_kill_9_mid_epoch_loses_only_that_epoch_and_the_rerun_continues_exactly(tmp_path, trained_run):
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 2}}))

    # `textseq train`, killed by SIGKILL in the middle of epoch 2: at a batch it chooses itself, so
    # that the kill lands inside the epoch on any machine, however fast.
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_EPOCH, "train", str(recipe_file), "--out", str(out)],
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    assert (out / "training.lock").exists()  # left behind by the killed process; a dead pid's lock is stale

    rerun = subprocess.run(train_command(recipe_file, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed_from_epoch 1" in rerun.stderr and "epochs_done        2" in rerun.stderr
    with open(out / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]
    # Same weights and optimizer state as the run nobody killed (the session's tiny run: this recipe,
    # 2 epochs straight): the order of epoch 2's data and the Adam moments came back exactly.
    expected = h5_arrays(trained_run / "checkpoints" / "epoch-0002.weights.h5")
    actual = h5_arrays(out / "checkpoints" / "epoch-0002.weights.h5")
    assert expected.keys() == actual.keys() and any("optimizer" in key for key in expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


CRASH_WHILE_SAVING = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import textseq.files
    from conftest import TINY
    from textseq.recipe import recipe_from_dict
    from textseq.training import train

    write = textseq.files.write_file
    def write_then_die(path, data):
        if "epoch-0002.weights" in str(path):  # half a file on disk, then the process is gone
            with open(path, "wb") as f:
                f.write(data[:len(data) // 2])
            os._exit(9)
        return write(path, data)
    textseq.files.write_file = write_then_die
    train(recipe_from_dict(TINY, ["train.epochs=3"]), sys.argv[1], verbose=0)
""")


@pytest.mark.slow
def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_usable(tmp_path):
    out = tmp_path / "run"
    script = CRASH_WHILE_SAVING.format(tests=str(ROOT / "tests"))
    crashed = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    assert (out / "checkpoints" / "epoch-0002.weights.h5.tmp").exists()  # the half-written file
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert load(out).model is not None  # the best weights so far still load
    summary = train(recipe_from_dict(TINY, ["train.epochs=3"]), out, verbose=0)
    assert (summary["resumed_from_epoch"], summary["epochs_done"]) == (1, 3)
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch-*.weights.h5")) == [
        "epoch-0002.weights.h5", "epoch-0003.weights.h5"]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def test_a_run_from_a_newer_textseq_is_refused_with_what_to_do(run_copy):
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**info, "textseq_version": "9.0.0", "format": 2}))
    result = invoke("translate", run_copy, "3rd of March 1998")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: {run_copy}: written by textseq 9.0.0 in run format 2; this textseq 0.1.0 reads format 1 and older. "
        "Upgrade textseq (pip install -U textseq) to use this run")

    (run_copy / "run.json").write_text(json.dumps({**info, "textseq_version": "9.0.0"}))
    recipe = yaml.safe_load((run_copy / "recipe.yaml").read_text())
    recipe["model"]["layer_norm"] = True  # a key this version does not know
    (run_copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("translate", run_copy, "3rd of March 1998")
    assert result.exit_code == 2
    assert "unknown key model.layer_norm" in result.stderr
    assert "(the run was made by textseq 9.0.0; this is textseq 0.1.0)" in result.stderr


def test_a_run_from_an_older_textseq_loads_with_the_defaults_of_keys_added_since(run_copy):
    info = json.loads((run_copy / "run.json").read_text())
    info.pop("format", None)  # run.json had no format number before format 1
    (run_copy / "run.json").write_text(json.dumps({**info, "textseq_version": "0.0.1"}))
    recipe = yaml.safe_load((run_copy / "recipe.yaml").read_text())
    del recipe["train"]["schedule"], recipe["data"]["carry_state"]  # keys that came later
    (run_copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("translate", run_copy, "3rd of March 1998", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["translation"] == load(run_copy).translate(["3rd of March 1998"])[0]


def swap_last_two_lines(text: str) -> str:
    *head, before_last, last = text.rstrip("\n").split("\n")
    return "\n".join([*head, last, before_last]) + "\n"


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "vocab.txt").unlink(), "vocab.txt: vocabulary file missing"),
    (lambda run: (run / "model.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100), "model.weights.h5: cannot be loaded"),
    (lambda run: (run / "model.weights.h5").unlink(), "model.weights.h5: missing, though the run has trained"),
    (lambda run: (run / "run.json").write_text("{not json"), "run.json: cannot be read"),
    (lambda run: (run / "run.json").write_text('{"format": "two"}'), 'run.json: "format" is "two", expected a whole number'),
    (lambda run: (run / "recipe.yaml").unlink(), "not a textseq run directory (no recipe.yaml or run.json)"),
    # Another vocabulary of the same size would be read without error, and the weights misread.
    (lambda run: (run / "vocab.txt").write_text(swap_last_two_lines((run / "vocab.txt").read_text())),
     "vocab.txt: is not the vocabulary this run was trained with (its SHA-256 differs from the one run.json recorded)"),
])
def test_a_damaged_run_directory_gives_one_clear_message(run_copy, damage, message):
    damage(run_copy)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(run_copy)
    result = invoke("evaluate", run_copy, "--split", "test")
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def tsv_recipe(tmp_path, train_text: str) -> dict:
    (tmp_path / "train.tsv").write_bytes(train_text.encode("utf-8"))
    (tmp_path / "valid.tsv").write_text("5 May 2001\t2001-05-05\n")
    (tmp_path / "test.tsv").write_text("6 May 2001\t2001-05-06\n")
    return {**TINY, "data": {"source": "tsv", "dir": str(tmp_path), "train": "train.tsv", "validation": "valid.tsv",
                             "test": "test.tsv"}}


def test_tsv_corpora_take_crlf_bom_and_blank_lines_and_name_a_bad_line(tmp_path):
    recipe = tsv_recipe(tmp_path, "\ufeff3rd of March 1998\t1998-03-03\r\n\r\nTue, 03.03.98\t1998-03-03\r\n")
    (tmp_path / "tsv.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("check", tmp_path / "tsv.yaml", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train_examples"] == 2

    recipe = tsv_recipe(tmp_path, "a\tb\nc\td\te\nf\tg\n")
    (tmp_path / "tsv.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("check", tmp_path / "tsv.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: data.train: {tmp_path}/train.tsv, line 2: 3 tab-separated column(s) in 'c\\td\\te'; every line must "
        "be SOURCE<TAB>TARGET (a tab inside a text must be replaced by a space)")

    del recipe["data"]["test"]
    (tmp_path / "tsv.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("check", tmp_path / "tsv.yaml")
    assert result.exit_code == 2 and "data.test is needed with data.source: tsv" in result.stderr


# --- the epoch commit, killed at each of its writes ---------------------------------------------------------

# Epoch 2's commit renames, in order: its checkpoint, its random states (two files), the best weights,
# metrics.csv, the checkpoint's state and state.json. A kill before each and after the last covers every
# state between them. A kill -9 leaves on disk exactly what was written before it, so the run directory
# copied at each of those moments is what a kill there leaves (training.lock included: an flock, which
# a copy does not hold). The real kill -9 is tested above (mid-epoch), in test_steps.py (by steps) and
# in a crash while a checkpoint is written.
COMMIT = ["epoch-0002.weights.h5", "epoch-0002.resume.data-00000-of-00001", "epoch-0002.resume.index",
          "model.weights.h5", "metrics.csv", "epoch-0002.json", "state.json"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run nobody killed; beside it, `snapshots/before-I` (the run directory just before the I-th
    rename of epoch 2's commit) and `snapshots/after-6` (just after the last)."""
    import textseq.files

    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    renamed, real = [], textseq.files.replace

    def replace(tmp, path):
        committing = path.name == COMMIT[0] or COMMIT[0] in renamed
        done = len(renamed) - renamed.index(COMMIT[0]) if COMMIT[0] in renamed else 0
        if committing and done < len(COMMIT):
            shutil.copytree(out, out.parent / "snapshots" / f"before-{done}")
        renamed.append(path.name)
        real(tmp, path)
        if committing and done == len(COMMIT) - 1:
            shutil.copytree(out, out.parent / "snapshots" / f"after-{done}")

    textseq.files.replace = replace  # the one rename every commit makes
    try:
        train(recipe_from_dict(TINY, ["train.epochs=3"]), out, verbose=0)
    finally:
        textseq.files.replace = real
    start = renamed.index("epoch-0002.weights.h5")
    assert renamed[start:start + len(COMMIT)] == COMMIT  # epoch 2 improved on epoch 1: it writes the best weights
    return out


def assert_same_run(actual, expected):
    for name in ("checkpoints/epoch-0003.weights.h5", "model.weights.h5"):
        want, got = h5_arrays(expected / name), h5_arrays(actual / name)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}")
    rows = [list(csv.reader(open(run / "metrics.csv"))) for run in (actual, expected)]
    assert rows[0][0] == rows[1][0] and [row[0] for row in rows[0][1:]] == ["0", "1", "2"]
    np.testing.assert_allclose(np.array(rows[0][1:], float), np.array(rows[1][1:], float), rtol=1e-5)
    assert json.loads((actual / "checkpoints" / "state.json").read_text()) == json.loads(
        (expected / "checkpoints" / "state.json").read_text())
    assert sorted(p.name for p in (actual / "checkpoints").iterdir()) == sorted(
        p.name for p in (expected / "checkpoints").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("where, index", [("before", i) for i in range(len(COMMIT))] + [("after", len(COMMIT) - 1)])
def test_what_a_kill_at_any_write_of_an_epoch_commit_leaves_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted,
                                                                                            where, index):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted.parent / "snapshots" / f"{where}-{index}", out)
    committed = where == "after"
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == (2 if committed else 1)

    summary = train(recipe_from_dict(TINY, ["train.epochs=3"]), out, verbose=0)
    assert (summary["resumed_from_epoch"], summary["epochs_done"]) == (2 if committed else 1, 3)
    assert_same_run(out, uninterrupted)


def test_a_missing_state_json_resumes_from_the_newest_checkpoint_not_from_scratch(run_copy, uninterrupted, caplog):
    out = run_copy  # TINY, 2 epochs
    (out / "checkpoints" / "state.json").unlink()
    best = (out / "model.weights.h5").read_bytes()
    result = invoke("train", out / "recipe.yaml", "--out", out, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert "resumed_from_epoch 2" in result.stderr
    assert f"resuming from epoch-0002.weights.h5 ({out}/checkpoints/state.json was missing or damaged)" in caplog.text
    assert_same_run(out, uninterrupted)
    assert best != (out / "model.weights.h5").read_bytes()  # epoch 3 was better, as in the uninterrupted run


def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(run_copy, uninterrupted):
    out = run_copy  # TINY, 2 epochs
    (out / "checkpoints" / "epoch-0002.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    summary = train(recipe_from_dict(TINY, ["train.epochs=3"]), out, verbose=0)
    assert (summary["resumed_from_epoch"], summary["epochs_done"]) == (1, 3)
    assert_same_run(out, uninterrupted)


@pytest.mark.parametrize("damage", ["delete checkpoints", "damage every checkpoint"])
def test_a_run_without_an_intact_checkpoint_is_refused_and_keeps_its_best_weights(run_copy, damage):
    out = run_copy  # TINY, 2 epochs
    if damage == "delete checkpoints":
        shutil.rmtree(out / "checkpoints")
    else:
        for path in (out / "checkpoints").glob("*.weights.h5"):
            path.write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    result = invoke("train", out / "recipe.yaml", "--out", out, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{out}: has finished epochs but no intact checkpoint to resume from" in result.stderr
    assert "pass --overwrite to train the run anew" in result.stderr
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_a_run_without_its_recipe_is_never_deleted_without_overwrite(tmp_path, tiny_recipe_file):
    out = tmp_path / "run"
    train(recipe_from_dict(TINY), out, verbose=0)
    (out / "recipe.yaml").unlink()
    (out / "notes.txt").write_text("mine")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    result = invoke("train", tiny_recipe_file, "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{out}: a textseq run whose recipe.yaml is missing, so it cannot be resumed" in result.stderr
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before

    # --overwrite deletes what textseq wrote there, and nothing else: not a folder of the user's that
    # has the name of the one `textseq average` writes.
    (out / "averaged").mkdir()
    (out / "averaged" / "mine.txt").write_text("mine too")
    result = invoke("train", tiny_recipe_file, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "averaged" / "mine.txt").read_text() == "mine too"
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 1

    # train.average_last would write into that folder: refused before any training, with a remedy that works.
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    result = invoke("train", tiny_recipe_file, "--out", out, "--set", "train.epochs=2", "--set", "train.average_last=1")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert (f"train.average_last: 1 writes the average to {out / 'averaged'}, which exists and was not written by "
            f"textseq average; move that folder away, or set train.average_last: 0") in result.stderr
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_fewer_epochs_on_a_finished_run_train_nothing_and_keep_its_recipe(run_copy):
    recipe_before = (run_copy / "recipe.yaml").read_text()
    result = invoke("train", run_copy / "recipe.yaml", "--out", run_copy, "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert "already trained 2 epochs (train.epochs); raise it to train on" in result.stderr
    assert (run_copy / "recipe.yaml").read_text() == recipe_before  # still says 2 epochs: what the weights had


def test_evaluate_and_export_of_a_run_in_training_say_so_and_name_their_weights(run_copy, tmp_path, caplog):
    from textseq.data.textfiles import file_sha256
    from textseq.runs import Run

    state = json.loads((run_copy / "checkpoints" / "state.json").read_text())
    expected = {"file": "model.weights.h5", "sha256": file_sha256(run_copy / "model.weights.h5"),
                "epoch": state["best_epoch"]}
    training = Run(run_copy)
    training.lock.take()  # as a `textseq train` holds it while it writes the run
    try:
        result = invoke("evaluate", run_copy, "--split", "test")
        assert result.exit_code == 0, result.output
        assert f"{run_copy} is being trained (pid " in caplog.text
        assert f"these are its best weights so far (epoch {state['best_epoch']})" in caplog.text
    finally:
        training.lock.release()
    assert json.loads((run_copy / "eval-test.json").read_text())["weights"] == expected
    caplog.clear()
    result = invoke("export", run_copy, tmp_path / "export")
    assert result.exit_code == 0 and "is being trained" not in caplog.text, result.output
    assert json.loads((tmp_path / "export" / "assets" / "textseq.json").read_text())["weights"] == expected


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system of its own (tmpfs, mounted as root, as CI runs), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small file system here ({mounted.stderr.strip()}); needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_a_full_disk_stops_training_with_a_message_and_keeps_the_last_checkpoint(small_disk, tmp_path):
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 500}}))
    out = small_disk / "run"
    process = subprocess.Popen(train_command(recipe_file, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for_epoch(out, 2, process)
        with open(small_disk / "filler", "wb") as filler:  # the disk fills up while epoch 3 or so trains
            with pytest.raises(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
        _, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 2 and "Traceback" not in stderr, stderr[-3000:]
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert f"cannot be saved (No space left on device); training stopped and the run keeps epoch {state['epoch']}" \
        in stderr
    assert not [p for p in out.rglob("*") if p.name.startswith("tmp-") or p.name.endswith(".tmp")]
    (small_disk / "filler").unlink()
    resumed = invoke("train", recipe_file, "--out", out, "--set", f"train.epochs={state['epoch'] + 1}")
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed_from_epoch {state['epoch']}" in resumed.stderr

    # An export that meets the full disk: one message, nothing left behind, nothing half-written.
    filled = subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"], capture_output=True)
    assert filled.returncode != 0  # stopped by the full disk
    before = sorted(path.name for path in small_disk.iterdir())
    result = invoke("export", out, small_disk / "export")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{small_disk / 'export'}: cannot write the export (" in result.stderr
    assert sorted(path.name for path in small_disk.iterdir()) == before


def fill(disk) -> None:
    """Takes every byte left on `disk`."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    if not os.write(fd, b"\0" * size):
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


@pytest.mark.slow
@pytest.mark.parametrize("kind, fills", [("epochs", range(10)), ("steps", [1, 10])])
def test_a_disk_that_fills_at_any_write_of_a_commit_stops_training_and_the_rerun_goes_on(small_disk, tmp_path,
                                                                                         monkeypatch, kind, fills):
    """Each rerun meets a full disk one write later in its commit (weights, the resume state, the best
    weights, metrics.csv, the checkpoint's state, state.json), until one commits; every stop leaves the
    last commit whole and no partial file, and the room freed, the same command goes on. A step commit
    is the same `EpochCheckpoint.commit` through the same writers; what differs is its resume state,
    which holds the stream's position (TensorFlow's own writer): that write is the one tried there."""
    import textseq.checkpoints
    import textseq.files
    from test_steps import steps_recipe

    writes = {"inside": False, "count": 0, "fill_at": None}

    def counted(step, name):
        def wrapped(*args):
            if writes["inside"]:
                if writes["count"] == writes["fill_at"]:
                    fill(small_disk)
                    writes["filled"] = name
                writes["count"] += 1
            return step(*args)
        return wrapped

    def inside_commit(commit):
        def wrapped(self, *args):
            writes.update(inside=True, count=0)
            try:
                return commit(self, *args)
            finally:
                writes["inside"] = False
        return wrapped

    Checkpoint = textseq.checkpoints.EpochCheckpoint
    monkeypatch.setattr(textseq.files, "write_file", counted(textseq.files.write_file, "a file"))
    ResumeState = textseq.checkpoints.ResumeState
    monkeypatch.setattr(ResumeState, "save", counted(ResumeState.save, "the resume state"))
    monkeypatch.setattr(Checkpoint, "commit", inside_commit(Checkpoint.commit))
    if kind == "steps":
        make_shards(tmp_path, shards=2)
        raw, unit = steps_recipe(tmp_path, steps=4, checkpoint_every=4, validate_every=4), "step"
    else:
        raw, unit = {**TINY, "data": {**TINY["data"], "train_examples": 128}}, "epoch"
    out = small_disk / "run"

    def recipe(commits: int):
        return recipe_from_dict(raw, [f"train.steps={4 * commits}" if kind == "steps" else f"train.epochs={commits}"])

    train(recipe(1), out, verbose=0)
    committed = 1
    for fill_at in fills:
        writes["fill_at"] = fill_at
        try:
            train(recipe(committed + 1), out, verbose=0)
        except UserError as error:
            kept = committed * 4 if kind == "steps" else committed
            assert (f"{unit} {kept + (4 if kind == 'steps' else 1)} cannot be saved (No space left on device); "
                    f"training stopped and the run keeps {unit} {kept}") in str(error)
            assert not [p for p in out.rglob("*") if p.name.startswith("tmp-") or p.name.endswith(".tmp")]
            state = json.loads((out / "checkpoints" / "state.json").read_text())
            assert state["epoch"] == committed and (out / "checkpoints" / state["checkpoint"]).exists()
            (small_disk / "filler").unlink()
            assert kind == "epochs" or writes["filled"] == "the resume state"
            continue
        finally:
            if (small_disk / "filler").exists():
                (small_disk / "filler").unlink()
        committed += 1
        if writes["count"] <= fill_at:  # this commit ended before its write number fill_at: all were met
            break
    assert fill_at >= 5 or kind == "steps", f"only {fill_at} writes in a commit"
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == committed and committed >= 2
    assert [int(row["epoch"]) for row in csv.DictReader(open(out / "metrics.csv"))] == list(range(committed))
