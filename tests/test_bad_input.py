"""Bad input, as a careless or hostile user gives it, through the CLI: one message and exit code 2,
no traceback, and nothing half-written or lost."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from textseq.cli import cli

from conftest import SHARED


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and message in result.stderr, result.stderr


@pytest.fixture
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.mark.parametrize("setting, message", [
    ("train.learning_rate=.nan", "--set train.learning_rate=.nan: train.learning_rate must be a finite number; got nan"),
    ("model.dropout=.nan", "model.dropout must be a finite number; got nan"),
    ("train.clipnorm=.inf", "train.clipnorm must be a finite number; got inf"),
    ("train.seed=-1", "train.seed must be at least 0; got -1"),
    ("train.seed=4294967296", "train.seed must be at most 4294967295; got 4294967296"),
    ("data.seed=-5", "data.seed must be at least 0"),
    ("data.max_source_length=100000000000000000000", "data.max_source_length must be at most 100000"),
    ("train.epochs=[1, *a]", "YAML aliases (*a) are not accepted in recipes"),
])
def test_values_no_run_can_use_are_refused_by_check_and_train(tiny_recipe_file, tmp_path, setting, message):
    assert_user_error(invoke("check", tiny_recipe_file, "--set", setting), message)
    out = tmp_path / "run"
    assert_user_error(invoke("train", tiny_recipe_file, "--set", setting, "--out", out), message)
    assert not out.exists()  # no half-made run directory


def test_a_recipe_of_nested_aliases_is_refused_at_once(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi"))
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(bomb)
    assert len(bomb) < 500
    started = time.monotonic()
    assert_user_error(invoke("check", recipe), f"{recipe}:2: YAML aliases (*a) are not accepted in recipes")
    assert time.monotonic() - started < 5  # expanded, it would be 9**9 strings


def test_an_empty_or_non_utf8_recipe_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert_user_error(invoke("train", empty, "--out", tmp_path / "run"), f"{empty}: the recipe is empty")
    assert not (tmp_path / "run").exists()
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("data:\n  source: dates\n# café\n".encode("latin-1"))
    assert_user_error(invoke("check", latin1), f"{latin1}:3: byte 0xe9 (offset 27) is not UTF-8")


def test_damaged_files_in_a_run_are_named(run_copy):
    recipe = run_copy / "recipe.yaml"
    recipe.write_bytes(recipe.read_bytes().replace(b"task: translate", b"task: translate # \xff"))
    assert_user_error(invoke("translate", run_copy, "3rd of March 1998"), f"{recipe}:1: byte 0xff")


def test_a_non_utf8_vocabulary_is_named(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "vocab.txt").write_bytes((run / "vocab.txt").read_bytes() + b"\xff\xfe\n")
    assert_user_error(invoke("translate", run, "3rd of March 1998"), f"{run}/vocab.txt: byte ")
    assert (f"copy the file back from a backup, or train the run anew (textseq train {run}/recipe.yaml --out {run} "
            "--overwrite)") in invoke("translate", run, "x").stderr


def test_damaged_weights_give_advice_that_works(run_copy):
    (run_copy / "model.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    assert_user_error(invoke("translate", run_copy, "3rd of March 1998"),
                      f"train the run anew with textseq train {run_copy}/recipe.yaml --out {run_copy} --overwrite")
    (run_copy / "model.weights.h5").unlink()
    assert_user_error(invoke("translate", run_copy, "3rd of March 1998"),
                      f"model.weights.h5: missing, though the run has trained; copy it back from a backup, or train "
                      f"the run anew with textseq train {run_copy}/recipe.yaml --out {run_copy} --overwrite")
    shutil.rmtree(run_copy / "checkpoints")  # as a start that stopped before its first epoch leaves it
    assert_user_error(invoke("translate", run_copy, "3rd of March 1998"),
                      "If a textseq train is running, wait for it; if one stopped, run it again (after mending what "
                      f"it reported): `textseq train {run_copy}/recipe.yaml --out {run_copy}`")


def test_a_garbage_state_json_resumes_from_the_checkpoints_own_state(run_copy):
    (run_copy / "checkpoints" / "state.json").write_text("{garbage")
    result = invoke("train", run_copy / "recipe.yaml", "--out", run_copy, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert "resumed_from_epoch 2" in result.stderr and "epochs_done        3" in result.stderr


def test_unwritable_targets_are_named(run_copy, tmp_path, monkeypatch):
    # Root writes through permission bits, so these targets are unwritable by their kind instead.
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_user_error(invoke("export", run_copy, a_file / "export"), f"{a_file}/export: cannot write the export")
    assert_user_error(invoke("translate", run_copy, "3rd of March 1998", "-o", a_file / "out.txt"),
                      f"--output {a_file}/out.txt: cannot be written")
    assert_user_error(invoke("plot", run_copy, "-o", a_file / "curves.png"), f"-o {a_file}/curves.png: cannot be written")
    (run_copy / "eval-test.json").mkdir()
    result = invoke("evaluate", run_copy, "--split", "test", "--json")
    assert_user_error(result, f"{run_copy}/eval-test.json: cannot be written")
    assert json.loads(result.stdout)["examples"] == 64  # the metrics were shown all the same
    monkeypatch.setenv("TEXTSEQ_DATA", str(a_file))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    assert_user_error(invoke("data", "fetch", "tinyshakespeare", "--from", mirror),
                      f"{a_file}/tinyshakespeare: cannot be written")


def test_a_damaged_metrics_csv_is_named_by_plot(run_copy, tmp_path):
    metrics = run_copy / "metrics.csv"
    metrics.write_text(metrics.read_text() + "2,oops,0.1\n")
    assert_user_error(invoke("plot", run_copy, "-o", tmp_path / "c.png"), f"{metrics}: damaged (line 4 is not a row")
    metrics.write_bytes(b"\xff\xfe")
    assert_user_error(invoke("plot", run_copy, "-o", tmp_path / "c.png"), f"{metrics}: cannot be read")


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in the range x>=1"),
    (["--n-best", "0"], "Invalid value for '--n-best'"),
    (["--temperature", "nan"], "decode.temperature must be a finite number; got nan"),
    (["--temperature", "1e-300"], "decode.temperature must be at least 0.001; got 1e-300"),
    (["--alpha", "inf", "--beam-size", "2"], "decode.alpha must be a finite number; got inf"),
])
def test_decoding_flags_no_search_can_use_are_refused(trained_run, args, message):
    assert_user_error(invoke("translate", trained_run, "3rd of March 1998", *args), message)


def test_empty_text_and_non_utf8_input_are_refused(trained_run):
    assert_user_error(invoke("translate", trained_run, ""), "TEXT is empty; give the text to translate")
    assert_user_error(invoke("translate", trained_run, "  "), "TEXT is empty")
    result = invoke("translate", trained_run, "-i", "-", input=b"3rd of March 1998\ncaf\xe9\n")
    assert_user_error(result, "--input -: line 2 of standard input is not UTF-8 (byte 0xe9)")


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_named(trained_run, port):
    assert_user_error(invoke("serve", trained_run, "--port", port), "Invalid value for '--port'")


def test_fetched_files_are_readable_like_any_the_user_writes(tmp_path, monkeypatch):
    import os

    if not (SHARED / "tinyshakespeare").is_dir():
        pytest.skip(f"no corpus mirror at {SHARED}")
    monkeypatch.setenv("TEXTSEQ_DATA", str(tmp_path / "cache"))
    mask = os.umask(0o022)
    try:
        result = invoke("data", "fetch", "tinyshakespeare", "--from", SHARED / "tinyshakespeare")
    finally:
        os.umask(mask)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "tinyshakespeare" / "input.txt").stat().st_mode & 0o777 == 0o644
