"""Pictures of a run: attention heatmaps and training curves (matplotlib, no display needed).

>>> attention_heatmap(Translator.from_run("runs/dates").attention("3rd of March 1998"), "attention.png")  # doctest: +SKIP
>>> training_curves("runs/dates", "curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

from textseq.errors import UserError  # noqa: E402
from textseq.inference import Attention  # noqa: E402
from textseq.runs import Run  # noqa: E402

SPECIAL = {"</s>": "⏎", " ": "␣"}  # visible stand-ins for tokens that would print as nothing


def attention_heatmap(attention: Attention, output: str | Path) -> Path:
    """Heatmap of `attention.weights`: produced tokens down, source tokens across, labelled."""
    weights = attention.weights
    if weights.size == 0:
        raise UserError("nothing to draw: the source or the translation is empty")
    rows, columns = weights.shape
    cell = 0.32  # inches per token: room for a label in 9-point type
    width = max(4.0, columns * cell + 2.0)
    height = max(3.0, rows * cell + 1.6)
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(columns), [SPECIAL.get(t, t) for t in attention.source_tokens],
                    rotation=90 if max(map(len, attention.source_tokens)) > 1 else 0, fontsize=9)
    axes.set_yticks(range(rows), [SPECIAL.get(t, t) for t in attention.output_tokens], fontsize=9)
    axes.set_xlabel("source tokens")
    axes.set_ylabel("produced tokens")
    axes.xaxis.set_label_position("top")
    axes.xaxis.tick_top()
    figure.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    return _save(figure, output)


def training_curves(run_dir: str | Path, output: str | Path) -> Path:
    """Loss, perplexity and token accuracy per epoch, training and validation, from `metrics.csv`."""
    run = Run.open(run_dir)
    if not run.history.path.exists():
        raise UserError(f"{run.history.path}: missing; the run has no finished epoch to plot yet")
    header, rows = run.history.rows()
    if not rows:
        raise UserError(f"{run.history.path}: no epochs recorded yet")
    damaged = (f"{run.history.path}: damaged ({{}}); restore it from a backup. Resuming the run "
               f"(textseq train {run.recipe_file} --out {run.path}) keeps only the rows of the epochs it checkpointed")
    if not {"epoch", "loss"} <= set(header):
        raise UserError(damaged.format(f"the header {','.join(header)!r} lacks epoch and loss"))
    bad = next((line for line, row in enumerate(rows, start=2) if not _numeric(row)), None)
    if bad:
        raise UserError(damaged.format(f"line {bad} is not a row of numbers")) from None
    epochs = [int(row["epoch"]) + 1 for row in rows]
    smoothed = run.recipe().train.label_smoothing > 0

    def column(name):
        return [float(row[name]) if row.get(name) not in (None, "", "NA") else math.nan for row in rows]

    panels = [
        ("loss", "label-smoothed cross-entropy" if smoothed else "cross-entropy per token", column),
        ("loss", "exp(smoothed loss)" if smoothed else "perplexity", lambda name: [math.exp(v) for v in column(name)]),
        ("token_accuracy", "token accuracy", column),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for ax, (name, title, values) in zip(axes, panels):
        ax.plot(epochs, values(name), marker="o", label="training")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, values(f"val_{name}"), marker="o", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    perplexities = [v for v in panels[1][2]("loss") if math.isfinite(v)]
    if perplexities and max(perplexities) / min(perplexities) > 20:
        axes[1].set_yscale("log")  # early epochs would flatten the rest of the curve
    figure.suptitle(f"{run.path.name}: {len(epochs)} epochs")
    return _save(figure, output)


def _numeric(row: dict) -> bool:
    """Whether a metrics.csv row holds an epoch number and numbers (or nothing) in every column."""
    try:
        int(row["epoch"])
        [float(value) for key, value in row.items() if key and value not in (None, "", "NA")]
        return True
    except (TypeError, ValueError):
        return False


def _save(figure, output: str | Path) -> Path:
    output = Path(output)
    if output.suffix.lower() not in {".png", ".svg", ".pdf"}:
        plt.close(figure)
        raise UserError(f"-o {output}: use a .png, .svg or .pdf file name")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output, dpi=150)
    except OSError as error:
        raise UserError(f"-o {output}: cannot be written ({error.strerror or error}); choose a file in a directory "
                        "you can write to") from None
    finally:
        plt.close(figure)
    return output
