"""Model selection and averaging: validation BLEU/chrF picks the best weights (train.select_by), and the
last checkpoints average into a run directory of their own (`textseq average`, train.average_last)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.errors import UserError
from textseq.evaluation import evaluate
from textseq.recipe import recipe_from_dict
from textseq.training import train

from conftest import TINY
from test_training import h5_arrays


@pytest.fixture(scope="module")
def bleu_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("selection") / "run"
    summary = train(recipe_from_dict(TINY, ["train.epochs=3", "train.select_by=bleu", "train.average_last=2",
                                            "decode.beam_size=3"]), run, verbose=0)
    return run, summary


def test_validation_bleu_picks_the_best_weights(bleu_run):
    run, summary = bleu_run
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    bleus = [float(row["val_bleu"]) for row in rows]
    assert len(bleus) == 3 and all(0 <= b <= 100 for b in bleus) and all(row["val_chrf"] for row in rows)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    best = int(np.argmax(bleus))  # the first of equal scores: a later one must beat it
    assert state["best_epoch"] == best + 1 and state["best_val_bleu"] == pytest.approx(bleus[best])
    assert summary["best_val_bleu"] == pytest.approx(bleus[best])
    # The best weights are that epoch's: what evaluate scores with the recipe's decoding (beam 3), as
    # validation decodes.
    scores = evaluate(run, "validation")
    assert scores["bleu"] == pytest.approx(bleus[best], abs=1e-6)


def test_average_last_writes_the_mean_of_the_last_checkpoints_as_a_run(bleu_run):
    run, summary = bleu_run
    assert summary["averaged"] == str(run / "averaged")
    record = json.loads((run / "averaged" / "averaged.json").read_text())
    assert record["checkpoints"] == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    last = [h5_arrays(run / "checkpoints" / name) for name in record["checkpoints"]]
    averaged = h5_arrays(run / "averaged" / "model.weights.h5")
    model_keys = [key for key in last[0] if not key.startswith("optimizer") and key in averaged]
    assert len(model_keys) > 5 and not any(key.startswith("optimizer") for key in averaged)
    for key in model_keys:
        np.testing.assert_allclose(averaged[key], (last[0][key] + last[1][key]) / 2, rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    assert evaluate(run / "averaged", "validation")["examples"] == 64  # a run like any other


def test_the_average_command_and_its_refusals(bleu_run, tmp_path):
    run, _ = bleu_run
    result = CliRunner().invoke(cli, ["average", str(run), "--last", "2", "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    assert "the mean of epoch-0002.weights.h5, epoch-0003.weights.h5" in result.output
    mine, trained = (h5_arrays(path / "model.weights.h5") for path in (tmp_path / "avg", run / "averaged"))
    assert mine.keys() == trained.keys()
    for key in mine:
        np.testing.assert_array_equal(mine[key], trained[key], err_msg=key)

    again = CliRunner().invoke(cli, ["average", str(run), "--last", "2", "--out", str(tmp_path / "avg")])
    assert again.exit_code == 2 and "holds an earlier average; pass --overwrite" in again.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    foreign = CliRunner().invoke(cli, ["average", str(run), "--last", "2", "--out", str(tmp_path / "mine"),
                                       "--overwrite"])
    assert foreign.exit_code == 2 and "was not written by textseq average" in foreign.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    too_many = CliRunner().invoke(cli, ["average", str(run), "--last", "5", "--out", str(tmp_path / "five")])
    assert too_many.exit_code == 2 and "2 checkpoint(s) kept, fewer than the 5 to average" in too_many.output
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "epoch-0003.json").unlink()  # as a crash in its commit leaves it
    uncommitted = CliRunner().invoke(cli, ["average", str(copy), "--last", "2", "--out", str(tmp_path / "x")])
    assert uncommitted.exit_code == 2 and ("1 committed checkpoint(s), fewer than the 2 to average; "
                                           "epoch-0003.weights.h5 lack the state file beside them") in uncommitted.output


def test_select_by_bleu_is_for_translation():
    with pytest.raises(UserError, match="train.select_by: bleu scores translations; a language_model run"):
        recipe_from_dict({"task": "language_model", "data": {"source": "text", "train": "x.txt", "split": 0.9},
                          "train": {"select_by": "bleu"}})
