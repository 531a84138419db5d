"""textseq score: the log-probability of given pairs and lines, the numbers behind evaluate's loss."""

import json
import math

import pytest
from click.testing import CliRunner

from conftest import tiny_lm, trained
from textseq.cli import cli
from textseq.data.sources import load_pairs, load_text
from textseq.evaluation import evaluate
from textseq.inference import LanguageModel, Translator


def test_pair_scores_add_up_to_evaluates_loss_on_the_same_pairs(trained_run):
    translator = Translator.from_run(trained_run)
    pairs = load_pairs(translator.recipe.data, "test")
    records = translator.score(pairs, batch_size=16)
    assert [(r["source"], r["target"]) for r in records] == pairs
    total, tokens = sum(r["log_probability"] for r in records), sum(r["tokens"] for r in records)
    metrics = evaluate(trained_run, "test")
    assert tokens == metrics["tokens"] and -total / tokens == pytest.approx(metrics["loss"], rel=1e-5)
    assert all(r["log_probability"] < 0 and r["per_token"] == pytest.approx(r["log_probability"] / r["tokens"],
                                                                           abs=1e-6) for r in records)
    # The model's own translation is more probable than a wrong one.
    source = pairs[0][0]
    best = translator.translate([source])[0]
    good, bad = translator.score([(source, best), (source, "1066-10-14")])
    assert good["per_token"] > bad["per_token"]


def test_the_command_reads_tsv_and_writes_json_lines(trained_run, tmp_path):
    result = CliRunner().invoke(cli, ["score", str(trained_run), "-i", "-"],
                                input="3rd of March 1998\t1998-03-03\n\nMarch 4, 1999\t1999-03-04\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    expected = Translator.from_run(trained_run).score([("3rd of March 1998", "1998-03-03"),
                                                       ("March 4, 1999", "1999-03-04")])
    assert records == expected and "scored 2 pairs, 22 tokens" in result.stderr
    (tmp_path / "bad.tsv").write_text("a\tb\nno tab here\n")
    result = CliRunner().invoke(cli, ["score", str(trained_run), "-i", str(tmp_path / "bad.tsv")])
    assert result.exit_code == 2 and "--input: " in result.output and "line 2: 1 tab-separated column(s)" in result.output


@pytest.mark.parametrize("carry_state", [True, False])
def test_line_scores_add_up_to_evaluates_loss_on_the_same_text(lm_run, tmp_path, carry_state):
    run = lm_run if carry_state else trained({**tiny_lm(lm_run.parent), "data": {
        **tiny_lm(lm_run.parent)["data"], "carry_state": False}}, tmp_path / "windows")
    model = LanguageModel.from_run(run)
    text = load_text(model.recipe.data, "test")
    records = model.score(text)
    assert [r["text"] for r in records] == [line for line in text.split("\n") if line.strip()]
    total, tokens = sum(r["log_probability"] for r in records), sum(r["tokens"] for r in records)
    metrics = evaluate(run, "test")
    assert tokens == metrics["tokens"] and -total / tokens == pytest.approx(metrics["loss"], rel=1e-5)
    assert math.exp(-total / tokens) == pytest.approx(metrics["perplexity"], rel=1e-4)
