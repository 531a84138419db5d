"""Each model and training option against the shipped recipe without tied embeddings, at the same budget.

Two tables, one row per option, every row trained for the same budget (translation: steps; keyboard:
epochs) from the same seed:

- translation: recipes/multi30k-de-en-spm.yaml (raw, cased German -> English, SentencePiece), scored
  on test2016 with cased 13a BLEU (sacrebleu, as the recipe reports it), greedy and beam 5;
- keyboard: recipes/keyboard-en.yaml (the phone keyboard's word-level language model), scored on
  its test split: perplexity and top-1 / top-3 accuracy (a keyboard shows three words).

Both print parameters and training seconds. The budget is far below the recipes' own (20 epochs),
and `--units`/`--embedding-dim` may shrink the translation model to fit a small machine: a row tells
how an option moves a model early in training, not the recipe's final BLEU. The rows after the first
reuse its vocabulary (`vocab.from`), so each trains on the same ids.

    python benchmarks/model_options.py --data-dir ../shared/data --out /tmp/options

Run again with the same --out, finished rows are kept (each is a run directory). Prints the tables,
and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

UNTIED = ["model.tie_embeddings=false"]  # every row but one: the recipes before they adopted tying
TRANSLATION_ROWS = {
    "untied": UNTIED,
    "tie_embeddings": ["model.tie_embeddings=true"],
    "tie_embeddings, embedding_init: normal": ["model.tie_embeddings=true", "model.embedding_init=normal"],
    "decoder_units x1.5, dense bridge": [*UNTIED, "model.decoder_units={decoder_units}", "model.bridge=dense"],
    "input_feeding": [*UNTIED, "model.input_feeding=true"],
    "attention: general": [*UNTIED, "model.attention=general"],
    "attention: dot": [*UNTIED, "model.attention=dot"],
    "ema 0.999": [*UNTIED, "train.ema=0.999"],
    "warm-up 200, inverse_sqrt": [*UNTIED, "train.warmup_steps=200", "train.schedule=inverse_sqrt"],
}
KEYBOARD_ROWS = {
    "untied": UNTIED,
    "tie_embeddings": ["model.tie_embeddings=true"],
    "tie_embeddings, embedding_init: normal": ["model.tie_embeddings=true", "model.embedding_init=normal"],
    "input_feeding": [*UNTIED, "model.input_feeding=true"],
    "attention: general": [*UNTIED, "model.attention=general"],
    "ema 0.999": [*UNTIED, "train.ema=0.999"],
}


def overrides(task: str, args) -> list[str]:
    """What every row of `task` shares: the budget, the corpus mirror, the size. A language model
    reads its text in memory, so its budget is epochs (train.steps streams translation files)."""
    shared = [f"data.dir={args.data_dir}"] if args.data_dir else []
    shared += ["train.early_stopping_patience=0", "train.reduce_lr_patience=0"]
    if task == "keyboard":
        return [*shared, f"train.epochs={args.keyboard_epochs}"]
    every = max(args.translation_steps // 2, 1)
    return [*shared, f"train.steps={args.translation_steps}", f"train.validate_every={every}",
            f"train.checkpoint_every={every}", f"model.units={args.units}", f"model.embedding_dim={args.embedding_dim}",
            f"model.attention_units={args.embedding_dim}"]


def train_row(task: str, name: str, extra: list[str], args, first_run: Path | None) -> dict:
    from textseq.recipe import load_recipe
    from textseq.training import train

    recipe_file = ROOT / "recipes" / ("multi30k-de-en-spm.yaml" if task == "translation" else "keyboard-en.yaml")
    values = [value.format(decoder_units=args.units * 3 // 2) for value in extra]
    reused = [f"vocab.from={first_run}"] if first_run else []
    recipe = load_recipe(recipe_file, overrides=[*overrides(task, args), *values, *reused])
    run = args.out / task / name.replace(",", "").replace(":", "").replace(" ", "-")
    started = time.perf_counter()
    summary = train(recipe, run, verbose=0)  # or the finished run, resumed to nothing
    return {"run": run, "options": values, "steps": summary["steps_done"] or summary["epochs_done"],
            "parameters": summary["parameters"],
            "train_seconds": round(time.perf_counter() - started, 1)}


def translation_scores(run: Path) -> dict:
    from textseq.evaluation import evaluate

    found = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        metrics = evaluate(run, "test", {"beam_size": beam})
        found[f"bleu_{name}"] = round(metrics["bleu"], 2)
    return found


def keyboard_scores(run: Path) -> dict:
    from textseq.evaluation import evaluate

    metrics = evaluate(run, "test")
    return {"perplexity": round(metrics["perplexity"], 1), "top1": round(metrics["top1_accuracy"], 4),
            "top3": round(metrics["top3_accuracy"], 4)}


def measure(task: str, rows: dict, args) -> dict:
    results, first = {}, None
    for name, extra in rows.items():
        row = train_row(task, name, extra, args, first)
        first = first or row["run"]
        row.update(translation_scores(row["run"]) if task == "translation" else keyboard_scores(row["run"]))
        row["run"] = str(row["run"])
        results[name] = row
        print(f"{task} / {name}: {row}", flush=True)
    return results


def print_tables(results: dict) -> None:
    if "translation" in results:
        print(f"\n{'translation option':34} {'parameters':>11} {'seconds':>8} {'BLEU greedy':>12} {'BLEU beam 5':>12}")
        for name, r in results["translation"].items():
            print(f"{name:34} {r['parameters']:11,d} {r['train_seconds']:8.1f} {r['bleu_greedy']:12.2f} "
                  f"{r['bleu_beam5']:12.2f}")
    if "keyboard" in results:
        print(f"\n{'keyboard option':34} {'parameters':>11} {'seconds':>8} {'perplexity':>11} {'top-1':>7} {'top-3':>7}")
        for name, r in results["keyboard"].items():
            print(f"{name:34} {r['parameters']:11,d} {r['train_seconds']:8.1f} {r['perplexity']:11.1f} "
                  f"{r['top1']:7.4f} {r['top3']:7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding multi30k/ (default: $TEXTSEQ_DATA or ~/.cache/textseq)")
    parser.add_argument("--out", type=Path, required=True, help="where the runs go; finished rows are kept")
    parser.add_argument("--tasks", default="translation,keyboard", help="comma-separated: translation, keyboard")
    parser.add_argument("--translation-steps", type=int, default=1200)
    parser.add_argument("--keyboard-epochs", type=int, default=3, help="keyboard epochs (the recipe has 20)")
    parser.add_argument("--units", type=int, default=256, help="translation model.units (the recipe has 512)")
    parser.add_argument("--embedding-dim", type=int, default=128,
                        help="translation model.embedding_dim and attention_units (the recipe has 256)")
    args = parser.parse_args()
    if args.data_dir:
        args.data_dir = args.data_dir.resolve()

    tables = {"translation": TRANSLATION_ROWS, "keyboard": KEYBOARD_ROWS}
    results = {task: measure(task, tables[task], args) for task in args.tasks.split(",")}
    print_tables(results)
    print(json.dumps({"machine": cpu_model(), "translation_steps": args.translation_steps,
                      "keyboard_epochs": args.keyboard_epochs, "units": args.units,
                      "embedding_dim": args.embedding_dim, "results": results}))


if __name__ == "__main__":
    main()
