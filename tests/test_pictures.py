"""The attention heatmap and the training curves, drawn from a tiny trained run.

The images are kept in the test's tmp directory (pytest prints its path) so a person can open them.
"""

import csv

import matplotlib.figure
import matplotlib.image
import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.errors import UserError
from textseq.inference import Translator
from textseq.plots import attention_heatmap, training_curves


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_attention_heatmap_has_a_labelled_cell_per_token_pair(trained_run, tmp_path):
    result = invoke("attention", trained_run, "3rd of March 1998", "-o", tmp_path / "attention.png")
    assert result.exit_code == 0, result.output
    attention = Translator.from_run(trained_run).attention("3rd of March 1998")
    assert result.stdout.strip() == " ".join(attention.output_tokens)
    image = matplotlib.image.imread(tmp_path / "attention.png")
    # 0.32 inches a token at 150 dpi: wide enough for one 9-point label per column, so none overlap.
    assert image.shape[1] >= len(attention.source_tokens) * 0.32 * 150
    assert image.shape[0] >= len(attention.output_tokens) * 0.32 * 150


def test_attention_heatmap_labels(trained_run, tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: saved.update(figure=self))
    attention = Translator.from_run(trained_run).attention("12 Jan 2001")
    attention_heatmap(attention, tmp_path / "a.png")
    axes = saved["figure"].axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == [{" ": "␣"}.get(t, t) for t in attention.source_tokens]
    assert [t.get_text() for t in axes.get_yticklabels()] == [{"</s>": "⏎"}.get(t, t) for t in attention.output_tokens]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("source tokens", "produced tokens")


def test_training_curves_plot_every_epoch(trained_run, tmp_path, monkeypatch):
    result = invoke("plot", trained_run, "-o", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[1] > 1000

    saved = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: saved.update(figure=self))
    training_curves(trained_run, tmp_path / "c.png")
    with open(trained_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    titles = [ax.get_title() for ax in saved["figure"].axes]
    assert titles == ["cross-entropy per token", "perplexity", "token accuracy"]
    loss_axes = saved["figure"].axes[0]
    training, validation = loss_axes.get_lines()
    assert list(training.get_xdata()) == [1, 2]
    assert list(training.get_ydata()) == pytest.approx([float(r["loss"]) for r in rows])
    assert list(validation.get_ydata()) == pytest.approx([float(r["val_loss"]) for r in rows])


def test_picture_mistakes_are_user_errors(trained_run, tmp_path):
    result = invoke("plot", trained_run, "-o", tmp_path / "curves.jpg2")
    assert result.exit_code == 2 and "use a .png, .svg or .pdf file name" in result.stderr
    with pytest.raises(UserError, match="nothing to draw"):
        attention_heatmap(Translator.from_run(trained_run).attention(""), tmp_path / "empty.png")
