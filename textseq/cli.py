"""The `textseq` command: a thin click layer that parses, calls the library and prints.

Mistakes a user can fix (`UserError`) print one message on stderr and exit with code 2; `--json`
output is one JSON object on stdout, with progress and logs on stderr.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

import click

from textseq import __version__
from textseq.constants import EXPORT_FORMATS, QUANTIZATIONS
from textseq.errors import UserError
from textseq.quiet import stderr_silenced
from textseq.recipe import describe_defaults, load_recipe


class InputError(click.ClickException):
    exit_code = 2


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise InputError(str(error)) from None


def start_tensorflow(run: Path | None = None) -> None:
    """Loads TensorFlow once, with its C++ start-up notices hidden; commands that need it call this
    first and then import what they use. A command on a `run` directory checks it first, so a
    mistyped path fails at once instead of after the seconds TensorFlow takes to load.

    See `textseq.quiet` for why stderr is silenced while it loads.
    """
    if run is not None:
        from textseq.runs import check_run_directory

        check_run_directory(run)
    with stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def is_export_directory(path: Path) -> bool:
    """Whether `path` looks like an export (`textseq.exported` checks which), without TensorFlow."""
    return (path / "textseq.json").is_file() or (path / "saved_model.pb").is_file()


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
    \b
    Translation and next-word prediction on real corpora:
      textseq data fetch multi30k
      textseq train recipes/multi30k-de-en.yaml
      textseq translate runs/multi30k-de-en "zwei hunde spielen im schnee ." --beam-size 5
      textseq train recipes/multi30k-en-lm.yaml
      textseq predict runs/multi30k-en-lm "a man is riding a"
      textseq export runs/multi30k-de-en exports/multi30k-de-en
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise InputError(f"KERAS_BACKEND={backend}: the textseq command runs on TensorFlow (its data pipelines, "
                         "strategies and export); unset KERAS_BACKEND or set it to tensorflow. textseq's layers, "
                         "models and decoding work under any Keras backend from Python")
    # The log levels, once: textseq's progress messages on stderr, TensorFlow's Python and C++ errors only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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

    Running the same command again continues from the last finished epoch (or, with train.steps,
    the last checkpoint) with the same optimizer state and data order; raising train.epochs or
    train.steps extends a finished run.

    \b
    Examples:
      textseq train recipes/dates.yaml
      textseq train recipes/dates.yaml --set model.cell=gru --out runs/dates-gru
    \b
    Recipe keys and their defaults:"""
    parsed = load_recipe(recipe, overrides)
    out = out or Path("runs") / recipe.stem
    start_tensorflow()
    from textseq.runs import Run
    from textseq.callbacks import request_stop
    from textseq.training import train as train_run

    stopped_by = {"label": "interrupted", "code": 130, "signalled": False}

    def stop(number, frame):  # Ctrl-C, and SIGTERM (kill, a scheduler's stop) the same way
        stopped_by.update(label="interrupted" if number == signal.SIGINT else "stopped by SIGTERM", code=128 + number,
                          signalled=True)
        request_stop()  # in case this KeyboardInterrupt lands where Python ignores it
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A terminal gets progress bars; a log file (nohup, CI) one line per epoch, not their redraws.
        summary = train_run(parsed, out, overwrite=overwrite, verbose=1 if sys.stdout.isatty() else 2)
    except (KeyboardInterrupt, Exception) as error:
        # A KeyboardInterrupt raised inside a library's own error handling can come out as another
        # error (numpy's retry of `__array__` while a checkpoint is written gave a TypeError): after
        # a signal, any error is the stop it asked for. The checkpoints are written atomically.
        if not (isinstance(error, KeyboardInterrupt) or stopped_by["signalled"]):
            raise
        state = Run(out).checkpoints.state() or {}
        kept = f"keeps its last finished epoch ({state['epoch']})" if state.get("epoch") else "has no finished epoch yet"
        if parsed.train.steps:
            kept = f"keeps its last checkpoint (step {state['step']})" if state.get("step") else "has no checkpoint yet"
        click.echo(f"\n{stopped_by['label']}: {out} {kept}; run the same command to resume from there", err=True)
        sys.exit(stopped_by["code"])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    click.echo(f"\nrun: {summary['run']}", err=True)
    steps = parsed.train.steps
    if summary["epochs_run"] == 0:
        click.echo(f"already trained {summary['steps_done']} steps (train.steps); raise it to train on" if steps else
                   f"already trained {summary['epochs_done']} epochs (train.epochs); raise it to train on", err=True)
    progress = ("resumed_from_step", "steps_done", "best_step") if steps else (
        "resumed_from_epoch", "epochs_done", "epochs_run", "best_epoch")
    for key in ("strategy", *progress, "best_val_loss", "parameters", "wall_seconds"):
        click.echo(f"  {key:18} {summary[key]}", err=True)
    if summary["first_step_seconds"] is not None:  # where the start went: before the first step, and in it
        click.echo(f"  {'first_step':18} after {summary['setup_seconds'] + summary['first_step_seconds']:.1f} s "
                   f"(data, vocabularies and model {summary['setup_seconds']:.1f} s; the step itself, traced and "
                   f"compiled, {summary['first_step_seconds']:.1f} s)", err=True)
    if summary.get("averaged"):
        click.echo(f"  {'averaged':18} {summary['averaged']} (train.average_last)", err=True)
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
    start_tensorflow()
    from textseq.checking import check as check_recipe

    summary = check_recipe(parsed)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{recipe}: ok")
    for key, value in summary.items():
        if key != "warnings":
            click.echo(f"  {key:26} {value}")
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@overrides_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Also save the vocabulary files here (spm.model or vocab.txt, as a run names them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def vocab(recipe: Path, overrides: tuple[str, ...], out: Path | None, as_json: bool):
    """Build RECIPE's vocabulary alone and show how it cuts the validation text.

    For each side: the tokens in the vocabulary, the mean, 99th percentile and longest count of
    tokens per line and per word, and the share of the text the vocabulary covers on its own
    (SentencePiece: characters not spelled in bytes; word and char: tokens not read as <unk>).
    Try a few vocab.size values with --set before training.

    \b
    Examples:
      textseq vocab recipes/multi30k-de-en-spm.yaml
      textseq vocab recipes/multi30k-de-en-spm.yaml --set vocab.size=16000 --out vocab-16k
    """
    parsed = load_recipe(recipe, overrides)
    start_tensorflow()
    from textseq.vocab_stats import vocab_stats

    report = vocab_stats(parsed, out)
    if as_json:
        echo_json(report)
        return
    kind = f"sentencepiece {report['model_type']}" if report["level"] == "sentencepiece" else report["level"]
    click.echo(f"{recipe}: {kind} vocabulary{' (shared)' if report['shared'] else ''}, built in "
               f"{report['build_seconds']:.1f} s; on the validation text:")
    click.echo(f"  {'side':8} {'tokens':>8} {'lines':>7} {'per line mean/p99/max':>22} {'per word mean/p99/max':>22} "
               f"{'covered':>8}")
    for side, stats in report["sides"].items():
        line, word = stats["pieces_per_line"], stats["pieces_per_word"]
        click.echo(f"  {side:8} {stats['vocabulary']:>8,} {stats['lines']:>7,} "
                   f"{line['mean']:>9.1f} {line['p99']:>5.0f} {line['max']:>6} {word['mean']:>9.2f} {word['p99']:>5.0f} "
                   f"{word['max']:>6} {stats['covered']:>8.2%}")
    for path in report["files"]:
        click.echo(f"saved {path}")
    click.echo(f"done in {report['seconds']:.1f} s (reading the text, building the vocabulary, measuring it)", err=True)


def decoding_options(command):
    """The decoding flags shared by translate, evaluate and attention: the recipe's `decode` keys, by
    the same names (defaults: the run's recipe)."""
    flags = [
        click.option("--beam-size", type=int, help="Hypotheses kept by beam search; 1 is greedy. "
                                                   "[default: decode.beam_size]"),
        click.option("--alpha", type=float, help="Length penalty of beam search (GNMT); 0 ranks by log-probability. "
                                                 "[default: decode.alpha]"),
        click.option("--max-length", type=int, help="Longest output in tokens. [default: decode.max_length]"),
        click.option("--temperature", type=float, help="Sample instead of searching, at this temperature."),
        click.option("--top-k", type=int, help="Sample from the k most probable tokens only."),
        click.option("--top-p", type=float, help="Sample from the smallest set of tokens whose probability reaches p."),
        click.option("--seed", type=int, help="Seed of sampling: the same seed gives the same output."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


@contextlib.contextmanager
def progress_bar(label: str, show: bool = True):
    """A `progress(done, total)` callback that draws a bar on stderr once the total is known."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield progress if show else None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("text", required=False)
@click.option("--input", "-i", "input_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Translate this file, one source a line (- for stdin).")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the translations here, one a line, in input order. [default: stdout]")
@click.option("--n-best", type=click.IntRange(min=1), default=None,
              help="Hypotheses per source (beam search: at most --beam-size; sampling: that many samples). "
                   "[default: decode.n_best]")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sources decoded together.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source: source, translation, hypotheses.")
@click.option("--prefix", default=None, help="Start every translation with this target text, as given; the search "
                                             "goes on from there (interactive translation).")
@decoding_options
def translate(run: Path, text: str | None, input_file: Path | None, output_file: Path | None, n_best: int,
              batch_size: int, as_json: bool, prefix: str | None, **flags):
    """Translate TEXT, or a file of sources, with the trained RUN directory.

    Decodes with the recipe's decode settings (beam size, length penalty, ...) unless flags say otherwise.
    With --n-best N, each hypothesis is printed as "SCORE<TAB>TEXT" and sources are separated by
    an empty line.

    RUN may also be a translation run's LiteRT export (textseq export RUN OUT --format litert),
    which translates one sentence at a time by beam search (no sampling).

    \b
    Examples:
      textseq translate runs/dates "3rd of March 1998"
      textseq translate runs/multi30k-de-en "ein mann fährt fahrrad ." --beam-size 5 --n-best 3
      textseq translate runs/multi30k-de-en -i test.de -o hyp.en --beam-size 5 --alpha 0.6
      textseq translate runs/dates "May 5th 2001" --temperature 0.8 --seed 1
      textseq translate runs/multi30k-de-en "ein mann fährt fahrrad ." --prefix "a man"
    """
    if (text is None) == (input_file is None):
        raise InputError("give either TEXT or --input FILE (one source a line)")
    if text is not None and not text.strip():
        raise InputError("TEXT is empty; give the text to translate")
    if input_file is not None:
        raw = read_stdin() if str(input_file) == "-" else read_input(input_file)
        sources = raw.splitlines()
    else:
        sources = [text]
    start_tensorflow(None if is_export_directory(run) else run)  # an export: textseq.exported checks it
    from textseq.exported import ExportedTranslator, litert_translator
    from textseq.inference import Translator, translation_record

    translator = ExportedTranslator(run) if litert_translator(run) else Translator.from_run(run)
    options = translator.options(n_best=n_best, **flags)
    with progress_bar("translating", show=input_file is not None) as progress:
        results = translator.n_best(sources, options, batch_size, progress=progress,
                                    prefixes=[prefix] * len(sources) if prefix is not None else None)
    lines = []
    for source, hypotheses in zip(sources, results):
        if as_json:
            lines.append(json.dumps(translation_record(source, hypotheses), ensure_ascii=False))
        elif options.n_best > 1:
            lines.extend([*(f"{h.score:.4f}\t{h.text}" for h in hypotheses), ""])
        else:
            lines.append(hypotheses[0].text)
    if output_file is not None:
        from textseq.data.textfiles import write_text

        write_text(output_file, "".join(line + "\n" for line in lines), "choose a file in a directory you can write "
                   "to", label="--output ")
        click.echo(f"wrote {len(sources)} translations to {output_file} ({json.dumps(options.describe())})", err=True)
    else:
        for line in lines:
            click.echo(line)


def read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise InputError(f"--input -: line {line} of standard input is not UTF-8 (byte {data[error.start]:#04x}); "
                         "convert it, e.g. iconv -f latin1 -t utf-8") from None


def read_input(path: Path) -> str:
    from textseq.data.textfiles import read_text
    try:
        return read_text(path, "--input")
    except FileNotFoundError:
        raise InputError(f"--input {path}: no such file") from None


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Sources decoded together (translation; default 64). Language models read the split in "
                   "this many rows, each from its first token; default the run's train.batch_size, the rows "
                   "its validation loss was measured with.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@decoding_options
def evaluate(run: Path, split: str, batch_size: int | None, as_json: bool, **flags):
    """Score RUN on a data split: loss, perplexity and token accuracy; BLEU and chrF for translation.

    Translation runs are also decoded, and the outputs scored by exact match, BLEU and chrF
    (sacrebleu; its signatures are in the result).

    A language model is scored on every token of the split's stream exactly once (line ends
    counted), with top-1 and top-5 accuracy, and bits per character for character models.
    The metrics are also written to RUN/eval-SPLIT.json and translations to RUN/hyp-SPLIT.txt.

    \b
    Examples:
      textseq evaluate runs/dates --split test --json
      textseq evaluate runs/multi30k-de-en --split test --beam-size 5 --alpha 0.6
    """
    start_tensorflow(run)
    from textseq.evaluation import MetricsNotSaved, evaluate as evaluate_run

    try:
        with progress_bar(f"decoding {split}") as progress:
            metrics = evaluate_run(run, split, flags, batch_size, progress, save=True)
    except MetricsNotSaved as error:
        show_metrics(error.metrics, as_json)  # computed all the same: show them, then say what failed
        raise
    show_metrics(metrics, as_json)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--input", "-i", "input_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The text to score, - for standard input: lines SOURCE<TAB>TARGET for a translation run, "
                   "plain text for a language model.")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON lines here instead of standard output.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Pairs scored together (default 64), or a language model's rows (default the run's "
                   "train.batch_size, as evaluate reads a split).")
def score(run: Path, input_file: Path, output_file: Path | None, batch_size: int | None):
    """Score given text with RUN: how probable the model finds it, in nats, one JSON line each.

    A translation run scores each pair's target (and its end mark) given its source; a language
    model reads the text as one stream, as evaluate reads a split, and scores each line after the
    lines before it. Each line gives log_probability (the sum over its tokens), tokens and
    per_token; a summary goes to stderr. Over a data split, minus the mean per token is evaluate's
    loss (the training loss also smooths labels, when train.label_smoothing is set).

    \b
    Examples:
      printf 'ein hund läuft .\\ta dog runs .\\n' | textseq score runs/multi30k-de-en -i -
      textseq score runs/multi30k-en-lm -i notes.txt -o scores.jsonl
    """
    start_tensorflow(run)
    from textseq.inference import Translator, load

    text = read_stdin() if str(input_file) == "-" else read_input(input_file)
    loaded = load(run)
    if isinstance(loaded, Translator):
        from textseq.data.sources import tsv_columns

        pairs = [tuple(column.strip() for column in tsv_columns(line.strip("\r"), input_file, number, "--input"))
                 for number, line in enumerate(text.split("\n"), 1) if line.strip()]
        records = loaded.score(pairs, batch_size or 64)
    else:
        records = loaded.score(text, batch_size)
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in records)
    if output_file is not None:
        from textseq.data.textfiles import write_text

        write_text(output_file, lines, "choose a file in a directory you can write to", label="--output ")
    else:
        click.echo(lines, nl=False)
    total, tokens = sum(item["log_probability"] for item in records), sum(item["tokens"] for item in records)
    click.echo(f"scored {len(records)} {'pairs' if isinstance(loaded, Translator) else 'lines'}, {tokens} tokens: "
               f"{-total / max(tokens, 1):.4f} nats per token (perplexity {math.exp(-total / max(tokens, 1)):.2f})",
               err=True)


def show_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        echo_json(metrics)
        return
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else json.dumps(value) if isinstance(value, dict) else value
        click.echo(f"{key:16} {shown}")


VISIBLE = {"\n": "⏎", " ": "␣", "\t": "⇥", "</s>": "</s> (end of line)"}


def bars(predictions) -> list[str]:
    """One line per (token, probability): the token made visible, the percentage and a bar."""
    width = max(len(VISIBLE.get(token, token)) for token, _ in predictions)
    return [f"  {VISIBLE.get(token, token):{width}}  {probability:6.1%}  {'█' * max(1, round(probability * 40))}"
            for token, probability in predictions]


def suggestions_option(command):
    """The option --suggestions (-k) N; the old name --top-k (which samples, in generate and translate)
    is still read, with a note."""
    @functools.wraps(command)
    def with_old_name(*args, top_k=None, **kwargs):
        if top_k is not None:
            click.echo("note: --top-k is now --suggestions here; read as such", err=True)
            kwargs["k"] = top_k
        return command(*args, **kwargs)

    with_old_name = click.option("--top-k", type=click.IntRange(min=1), hidden=True)(with_old_name)
    return click.option("--suggestions", "-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
                        help="How many next words (or characters) to show.")(with_old_name)


def language_model(run: Path):
    start_tensorflow(run)
    from textseq.inference import load

    loaded = load(run)
    if loaded.task != "language_model":
        raise InputError(f"{run} is a {loaded.task} run; use textseq translate for it")
    return loaded


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("text")
@suggestions_option
@click.option("--json", "as_json", is_flag=True, help='Print {"text": ..., "predictions": [{"token", "probability"}]}.')
def predict(run: Path, text: str, k: int, as_json: bool):
    """Show the most probable next words (or characters) after TEXT, with the language-model RUN.

    Unknown words are read as <unk> and listed on stderr; an empty TEXT asks for the first token.

    \b
    Example:
      textseq predict runs/multi30k-en-lm "a man is riding a"
    """
    model = language_model(run)
    from textseq.inference import prediction_record

    record = prediction_record(model, text, k)
    if as_json:
        echo_json(record)
        return
    unknown = record["unknown"]
    if unknown:
        click.echo(f"unknown to the model (read as <unk>): {', '.join(unknown)}", err=True)
    if not text.strip():
        click.echo("empty text: these are the tokens the model expects first", err=True)
    for line in bars([(p["token"], p["probability"]) for p in record["predictions"]]):
        click.echo(line)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("text", default="")
@click.option("--max-tokens", type=click.IntRange(0, 10_000), default=100, show_default=True, help="Tokens to add.")
@click.option("--temperature", type=float, help="Sample at this temperature (else greedy).")
@click.option("--top-k", type=int, help="Sample from the k most probable tokens only.")
@click.option("--top-p", type=float, help="Sample from the smallest set of tokens whose probability reaches p.")
@click.option("--seed", type=int, help="Seed of sampling: the same seed gives the same text.")
@click.option("--json", "as_json", is_flag=True, help='Print {"text": ..., "continuation": ...}.')
def generate(run: Path, text: str, max_tokens: int, temperature, top_k, top_p, seed, as_json: bool):
    """Continue TEXT with the language-model RUN: greedy, or sampled with --temperature/--top-k/--top-p.

    \b
    Examples:
      textseq generate runs/tinyshakespeare "ROMEO:" --max-tokens 200 --temperature 0.8 --seed 1
      textseq generate runs/multi30k-en-lm "two dogs" --max-tokens 12
    """
    model = language_model(run)
    continuation = model.generate(text, max_tokens, temperature, top_k, top_p, seed)  # bad settings: UserError
    if as_json:
        echo_json({"text": text, "continuation": continuation})
    else:
        click.echo(model.append(text, continuation))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@suggestions_option
def demo(run: Path, k: int):
    """Type text and watch the language-model RUN's next-word predictions, with probability bars.

    Each line you type is added to the text so far (words with a space; for a character model,
    the line and a line end); the top next tokens are shown after it. An empty line or Ctrl-D ends.

    \b
    Example:
      textseq demo runs/multi30k-en-lm
    """
    model = language_model(run)
    text = ""
    click.echo("Type some words and press Enter; an empty line or Ctrl-D ends.", err=True)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            break
        if not line.strip():
            break
        text = model.target.add_line(text, line)
        unknown = model.unknown_words(line)
        if unknown:
            click.echo(f"  unknown (read as <unk>): {', '.join(unknown)}")
        words = model.target.unit == "word"
        click.echo(f"  after: {' '.join(model.tokens(text)[-12:]) if words else text[-60:]!r}")
        for bar in bars(model.predict([text], k)[0]):
            click.echo(bar)
    click.echo("bye", err=True)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; another than loopback lets other machines in (with a warning).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also answer requests addressed to this host name, e.g. the name a reverse proxy forwards "
                   "(repeatable). On loopback only localhost, 127.0.0.1 and [::1] are answered otherwise, so "
                   "that no web page can reach the server through a name of its own (DNS rebinding).")
@click.option("--idle-timeout", type=click.FloatRange(0, 3600, min_open=True), default=10.0, show_default=True,
              help="Seconds a connection may stay without sending a complete request before it is closed.")
def serve(run: Path, host: str, port: int, allowed_hosts: tuple[str, ...], idle_timeout: float):
    """Serve RUN as a web page and a JSON API until Ctrl-C.

    A language-model run shows the next words as you type, with probability bars, and continues
    the text; a translation run translates and draws the attention heatmap. The API answers
    POST /api/predict, /api/generate, /api/translate or /api/score with a JSON object (the same fields as
    the CLI's --json; the request must say Content-Type: application/json), and GET /api/info.

    RUN may also be a translation run's LiteRT export (textseq export RUN OUT --format litert):
    with int8 weights (--quantize dynamic) it answers a sentence about 3 times as fast as the run,
    with beam search only (no scoring or sampling).

    \b
    Examples:
      textseq serve runs/multi30k-en-lm             # then open http://127.0.0.1:8000/
      curl -s localhost:8000/api/predict -H 'Content-Type: application/json' \\
           -d '{"text": "a man is riding a", "suggestions": 3}'
      textseq serve runs/dates --port 8080
      textseq export runs/multi30k-de-en-spm exports/de-en-int8 --format litert --quantize dynamic
      textseq serve exports/de-en-int8
    """
    start_tensorflow(None if is_export_directory(run) else run)  # an export: textseq.exported checks it
    from textseq.serve import serve as serve_run

    serve_run(run, host, port, say=lambda message: click.echo(message, err=True), allowed_hosts=allowed_hosts,
              idle_timeout=idle_timeout)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("text")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default="attention.png",
              show_default=True, help="Image file (png, svg or pdf, by its suffix).")
@decoding_options
def attention(run: Path, text: str, output: Path, **flags):
    """Draw the attention of RUN translating TEXT as a heatmap.

    One row per produced token, one column per source token.

    \b
    Example:
      textseq attention runs/dates "3rd of March 1998" -o attention.png
    """
    start_tensorflow(run)
    from textseq.inference import Translator
    from textseq.plots import attention_heatmap

    translator = Translator.from_run(run)
    found = translator.attention(text, translator.options(**flags))
    attention_heatmap(found, output)
    click.echo(" ".join(found.output_tokens))
    click.echo(f"wrote {output}", err=True)


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default="curves.png",
              show_default=True, help="Image file (png, svg or pdf, by its suffix).")
def plot(run: Path, output: Path):
    """Plot RUN's training curves (loss, perplexity, token accuracy) from its metrics.csv.

    One point per epoch (per checkpoint with train.steps), for training and validation.

    \b
    Example:
      textseq plot runs/dates -o curves.png
    """
    start_tensorflow(run)
    from textseq.plots import training_curves

    training_curves(run, output)
    click.echo(f"wrote {output}", err=True)


@cli.command(name="export")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(EXPORT_FORMATS), default="saved_model",
              show_default=True, help="saved_model: strings in, strings out, for TensorFlow Serving and "
              "tf.saved_model.load. litert: a .tflite file for phones (a language model's next-word step, a "
              "translation model's encoder and decoder step).")
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default="none",
              show_default=True, help="litert: store the weights as float16, or as int8 (dynamic: weights only; "
              "int8: activations too, calibrated on the run's training text).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in OUT_DIR.")
def export_command(run: Path, out_dir: Path, format_: str, quantize: str, overwrite: bool):
    """Write RUN as a model that runs without textseq, in OUT_DIR.

    A SavedModel (the default) takes and returns raw strings and needs TensorFlow only:
    tf.saved_model.load(OUT_DIR), then call its "translate" (or "next_words") signature with a
    batch of strings. Decoding follows the recipe's decode section (beam_size, alpha, ...).

    --format litert writes a language model's next-word step for LiteRT (TensorFlow Lite):
    next_word.tflite takes the id of the word just typed and the state the previous call
    returned, and gives the new state and the 10 most probable next words. vocab.json and
    textseq.json beside it say how to tokenize and how to call it (README: "Next words on a phone").
    For a translation run it writes translator.tflite: an encoder per source length ("encode_8",
    "encode_16", ...) and a decoder "step", which the app loop in textseq/on_device.py (numpy
    only) runs with beam search, and the vocabularies or SentencePiece models to tokenize with.

    \b
    Examples:
      textseq export runs/dates exports/dates
      saved_model_cli show --dir exports/dates --all
      textseq export runs/keyboard-en exports/keyboard-en --format litert --quantize dynamic
      textseq export runs/multi30k-de-en-spm exports/de-en-phone --format litert --quantize dynamic
    """
    start_tensorflow(run)
    from textseq.export import export

    path = export(run, out_dir, overwrite, format_, quantize)
    click.echo(f"wrote {path}", err=True)


@cli.command("average")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--last", type=click.IntRange(min=1), required=True, help="How many of the newest checkpoints.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to write. [default: RUN/averaged]")
@click.option("--overwrite", is_flag=True, help="Replace an earlier average in --out.")
def average_command(run: Path, last: int, out_dir: Path | None, overwrite: bool):
    """Average the weights of RUN's last checkpoints into a run directory of their own.

    The result has RUN's recipe and vocabulary and the averaged weights as its best weights, so
    evaluate, translate, serve and export take it like any run. The run must keep that many
    checkpoints (train.keep_checkpoints; train.average_last averages at the end of training).

    \b
    Example:
      textseq average runs/multi30k-de-en --last 5
      textseq evaluate runs/multi30k-de-en/averaged --split test
    """
    start_tensorflow(run)
    from textseq.averaging import average

    result = average(run, last, out_dir, overwrite)
    click.echo(f"wrote {result['out']}: the mean of {', '.join(result['checkpoints'])}", err=True)


@cli.group()
def data():
    """Get the public corpora that the recipes use."""


@data.command()
@click.argument("name")
@click.option("--from", "mirror", type=click.Path(path_type=Path),
              help="Copy from this local mirror instead of downloading (same layout, same checksums).")
def fetch(name: str, mirror: Path | None):
    """Download corpus NAME (multi30k, tinyshakespeare) and check every file's sha256.

    Files go to $TEXTSEQ_DATA (default ~/.cache/textseq).

    \b
    Examples:
      textseq data fetch multi30k
      textseq data fetch multi30k --from /mnt/mirror/multi30k
    """
    from textseq.data.corpora import data_dir, fetch as fetch_corpus
    paths = fetch_corpus(name, mirror, progress=lambda relative: click.echo(f"  {relative}", err=True))
    click.echo(f"{name}: {len(paths)} files checked in {data_dir() / name}", err=True)


def main():
    cli(prog_name="textseq")
