"""The `textseq` command: a thin click layer that parses, calls the library and prints.

Mistakes a user can fix (`UserError`) print one message on stderr and exit with code 2; `--json`
output is one JSON object on stdout, with progress and logs on stderr.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
from pathlib import Path

import click

from textseq import __version__
from textseq.errors import UserError
from textseq.recipe import describe_defaults, load_recipe


class InputError(click.ClickException):
    exit_code = 2


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise InputError(str(error)) from None


def library(module: str):
    """Imports a TensorFlow-backed textseq module with TensorFlow's C++ start-up chatter hidden.

    Python errors still surface: stderr is restored before any exception propagates.
    """
    # Level 3 also hides C++ "errors" that are only notices (e.g. oneDNN falling back to Eigen).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        loaded = importlib.import_module(module)
        importlib.import_module("tensorflow").config.list_physical_devices()
        return loaded
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def echo_json(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=None))


overrides_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe key, e.g. --set model.units=128 (repeatable).")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="textseq")
def cli():
    """Train and use LSTM/GRU encoder-decoders with additive attention, from YAML recipes.

    \b
    Start with the built-in dates task (no download):
      textseq train recipes/dates.yaml
      textseq translate runs/dates "3rd of March 1998"
      textseq evaluate runs/dates --split test --json
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@overrides_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory. [default: runs/<recipe file name>]")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of a different recipe.")
def train(recipe: Path, overrides: tuple[str, ...], out: Path | None, overwrite: bool):
    """Train a model from RECIPE, or resume the run in --out where it stopped.

    Running the same command again continues from the last finished epoch with the same
    optimizer state; raising train.epochs extends a finished run.

    \b
    Examples:
      textseq train recipes/dates.yaml
      textseq train recipes/dates.yaml --set model.cell=gru --out runs/dates-gru
    \b
    Recipe keys and their defaults:"""
    parsed = load_recipe(recipe, overrides)
    out = out or Path("runs") / recipe.stem
    summary = library("textseq.training").train(parsed, out, overwrite=overwrite)
    click.echo(f"\nrun: {summary['run']}", err=True)
    if summary["epochs_run"] == 0:
        click.echo(f"already trained {summary['epochs_done']} epochs (train.epochs); raise it to train on", err=True)
    for key in ("strategy", "resumed_from_epoch", "epochs_done", "epochs_run", "best_epoch", "best_val_loss",
                "parameters", "wall_seconds"):
        click.echo(f"  {key:18} {summary[key]}", err=True)
    if summary["chief"]:
        click.echo(f"next: textseq evaluate {summary['run']} --split test", err=True)
    else:
        click.echo("this worker wrote nothing: the chief's run directory holds the checkpoints and logs", err=True)


train.help = inspect.cleandoc(train.help) + "\n\n\b\n" + "\n".join("  " + line for line in describe_defaults().splitlines())


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@overrides_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(recipe: Path, overrides: tuple[str, ...], as_json: bool):
    """Validate RECIPE and its data without training, and summarise what training would use.

    \b
    Example:
      textseq check recipes/dates.yaml --set model.units=64
    """
    parsed = load_recipe(recipe, overrides)
    summary = library("textseq.checking").check(parsed)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{recipe}: ok")
    for key, value in summary.items():
        if key != "warnings":
            click.echo(f"  {key:22} {value}")
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help='Print {"source": ..., "translation": ...}.')
def translate(run: Path, text: str, as_json: bool):
    """Translate TEXT with the trained RUN directory (greedy decoding).

    \b
    Example:
      textseq translate runs/dates "3rd of March 1998"
    """
    translator = library("textseq.inference").Translator.from_run(run)
    (translation,) = translator.translate([text])
    if as_json:
        echo_json({"source": text, "translation": translation})
    else:
        click.echo(translation)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
def evaluate(run: Path, split: str, as_json: bool):
    """Score RUN on a data split: loss, perplexity, token accuracy, exact match.

    The result is also written to RUN/eval-SPLIT.json.

    \b
    Example:
      textseq evaluate runs/dates --split test --json
    """
    metrics = library("textseq.evaluation").evaluate(run, split)
    (run / f"eval-{split}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if as_json:
        echo_json(metrics)
        return
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else json.dumps(value) if isinstance(value, dict) else value
        click.echo(f"{key:16} {shown}")


def main():
    cli(prog_name="textseq")
