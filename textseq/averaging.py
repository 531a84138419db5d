"""Checkpoint averaging: the mean of a run's last N checkpoints' weights, as a run directory of its own.

Averaging the weights of the last checkpoints of a run smooths the noise of the last updates and
usually gains a little BLEU for nothing (Vaswani et al., 2017; Popel and Bojar, 2018). The result
is a run directory (by default `RUN/averaged`) with the run's recipe and vocabulary and the
averaged weights as its `model.weights.h5`, so evaluate, translate, serve and export take it as
they take any run.

>>> average("runs/multi30k-de-en", last=5)  # doctest: +SKIP
{'out': 'runs/multi30k-de-en/averaged', 'checkpoints': ['epoch-0016.weights.h5', ...]}
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from textseq.errors import UserError
from textseq.files import write_atomically
from textseq.checkpoints import load_model, load_weights, save_weights_atomically
from textseq.runs import AVERAGED_FILE, Run, is_average

log = logging.getLogger(__name__)


def checkpoints_to_average(run: Run, last: int) -> list[Path]:
    """The run's last `last` committed checkpoints (each with its state beside it), oldest first."""
    found = run.checkpoints.weights_files()
    committed = [path for path in found if run.checkpoints.is_committed(path)]
    if len(committed) < last and len(found) > len(committed):
        unsure = sorted(path.name for path in set(found) - set(committed))
        raise UserError(f"{run.checkpoints.path}: {len(committed)} committed checkpoint(s), fewer than the {last} to "
                        f"average; {', '.join(unsure)} lack the state file beside them (NAME.json), so they may be "
                        "from a commit a crash cut short. Resume the run (textseq train) to commit them again, or "
                        f"average fewer (--last {max(len(committed), 1)})")
    if len(committed) < last:
        raise UserError(f"{run.checkpoints.path}: {len(committed)} checkpoint(s) kept, fewer than the {last} to average; "
                        f"train with train.keep_checkpoints: {last} (or more), or average fewer (--last "
                        f"{max(len(committed), 1)})")
    return committed[-last:]


def average(run_dir: str | Path, last: int, out: str | Path | None = None, overwrite: bool = False) -> dict:
    """Averages the last `last` checkpoints of the run into the run directory `out` (RUN/averaged)."""
    if last < 1:
        raise UserError(f"--last must be at least 1; got {last}")
    run = Run.open(run_dir)
    out = Path(out) if out is not None else run.averaged
    prepare_out(out, overwrite)
    paths = checkpoints_to_average(run, last)
    recipe = run.recipe()
    vocabularies = run.vocabulary_files(recipe.vocab)
    source, target = vocabularies.load()
    model = load_model(run, recipe, source.size, target.size)
    weights = model.weights
    sums = [np.zeros(w.shape, np.float64) for w in weights]
    for path in paths:
        load_weights(model, path)
        for total, weight in zip(sums, weights):
            total += np.asarray(weight.numpy(), np.float64)
    for total, weight in zip(sums, weights):
        weight.assign((total / len(paths)).astype(weight.dtype))
    out.mkdir(parents=True, exist_ok=True)
    for path in [run.info.path, run.recipe_file, *vocabularies.paths]:
        shutil.copyfile(path, out / path.name)
    save_weights_atomically(model, out / "model.weights.h5")
    record = {"run": str(run.path), "checkpoints": [path.name for path in paths]}
    write_atomically(out / AVERAGED_FILE, json.dumps(record, indent=2))
    return {"out": str(out), **record}


def prepare_out(out: Path, overwrite: bool) -> None:
    """`out` may be new, or an earlier average (replaced only with `overwrite`); nothing else."""
    if not out.exists():
        return
    if not is_average(out):
        raise UserError(f"{out}: exists and was not written by textseq average; choose another --out")
    if not overwrite:
        raise UserError(f"{out}: holds an earlier average; pass --overwrite to replace it, or choose another --out")


def average_last_checkpoints(run: Run, last: int, made: int) -> dict:
    """train.average_last: the mean of the last checkpoints (fewer when the run `made` fewer) in RUN/averaged."""
    if not last:
        return {}
    count = min(last, made)
    if count < last:
        log.warning("warning: train.average_last: %d, but the run has %d checkpoint(s); averaging those", last, count)
    return {"averaged": average(run.path, count, overwrite=True)["out"]}


def check_average_target(run: Run, last: int) -> None:
    """Before any training: train.average_last must be able to write RUN/averaged when the run ends."""
    if last and run.averaged.exists() and not is_average(run.averaged):
        raise UserError(f"train.average_last: {last} writes the average to {run.averaged}, which exists and was not "
                        f"written by textseq average; move that folder away, or set train.average_last: 0 and "
                        f"average later with `textseq average {run.path} --last {last} --out DIR`")
