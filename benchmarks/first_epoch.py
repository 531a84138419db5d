"""Where the start of a training goes: imports, setup, the first step, and each batch shape's first step.

    python benchmarks/first_epoch.py --data-dir ../shared/data [--recipe recipes/multi30k-de-en-spm.yaml]

Trains the recipe for two epochs (--epochs) in a fresh process and reports the seconds of: the
imports (TensorFlow, Keras, textseq), train()'s setup by phase (data and vocabularies, input
pipelines, model and optimizer, restore), the first step (the training step traced and compiled),
and the cost of every batch shape's first step in the first epoch: its duration less the median of
the same shape's later steps (what a new shape builds: XLA executables where the shapes are fixed,
oneDNN kernels for new matrix sizes). It counts the traces of the training and validation steps
(a retrace per shape would show here) and compares the two epochs' step time and validation pass.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# One training in this child process, timed from inside: phases, every step, every trace.
DRIVER = """
import collections, json, statistics, sys, time
started = time.monotonic()
import tensorflow as tf
import textseq.training as training
from textseq.models import Seq2Seq
from textseq.recipe import load_recipe
imported = time.monotonic()
phases, traces = {}, collections.Counter()

def timed(name):
    function = getattr(training, name)
    def wrapper(*args, **kwargs):
        began = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = round(time.monotonic() - began, 2)
    setattr(training, name, wrapper)

for name in ("load_data", "input_pipelines", "build_model", "restore"):
    timed(name)
for step in ("train_step", "test_step"):  # Python runs these only while TensorFlow traces them
    def counted(self, data, _step=step, _original=getattr(Seq2Seq, step)):
        traces[_step] += 1
        return _original(self, data)
    setattr(Seq2Seq, step, counted)

class Clock(training.StepClock):
    spans, validations = [], []
    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        self.began = time.monotonic()
    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.spans.append(time.monotonic() - self.began)
    def on_test_begin(self, logs=None):
        self.validating = time.monotonic()
    def on_test_end(self, logs=None):
        self.validations.append(time.monotonic() - self.validating)

training.StepClock = Clock
recipe = load_recipe(sys.argv[1], json.loads(sys.argv[3]))
summary = training.train(recipe, sys.argv[2], overwrite=True, verbose=0)

from textseq.data.tasks import TaskData
from textseq.runs import Run
data = TaskData.load(recipe, Run(sys.argv[2]).vocabulary_files(recipe.vocab).load())
shapes = []
for epoch in range(summary["epochs_run"]):  # the order of an epoch is a function of the seed and the epoch
    dataset = data.dataset("train", recipe.train.batch_size, shuffle_seed=recipe.train.seed,
                           epoch=tf.Variable(epoch, dtype=tf.int64))
    shapes += [str(tuple(tuple(t.shape) for t in tf.nest.flatten(batch))[0]) for batch in dataset]
steps = len(shapes) // max(summary["epochs_run"], 1)
by_shape = collections.defaultdict(list)
for shape, seconds in zip(shapes, Clock.spans):
    by_shape[shape].append(seconds)
new_shapes = {shape: times[0] - statistics.median(times[1:]) for shape, times in by_shape.items() if len(times) > 1}
# The first step's shape is left out: its first step is the traced and compiled one (first_step_seconds).
first_epoch_new = [shape for shape in dict.fromkeys(shapes[1:steps]) if shape in new_shapes and shape != shapes[0]]
print("RESULT " + json.dumps({
    "imports_seconds": round(imported - started, 2), "setup_seconds": summary["setup_seconds"],
    "phases_seconds": phases, "first_step_seconds": summary["first_step_seconds"],
    "traces": dict(traces), "steps_per_epoch": steps, "shapes": len(by_shape),
    "first_epoch_new_shapes": len(first_epoch_new),
    "first_epoch_new_shape_seconds": round(sum(new_shapes[s] for s in first_epoch_new), 1),
    "new_shape_seconds_median": round(statistics.median([new_shapes[s] for s in first_epoch_new]), 3)
    if first_epoch_new else None,
    "epoch_step_seconds": [round(sum(Clock.spans[e * steps:(e + 1) * steps]), 1) for e in range(summary["epochs_run"])],
    "validation_seconds": [round(v, 1) for v in Clock.validations]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "multi30k-de-en-spm.yaml")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/textseq-first-epoch"))
    args = parser.parse_args()
    overrides = [f"data.dir={args.data_dir.resolve()}", f"train.epochs={args.epochs}",
                 "train.early_stopping_patience=0", "train.reduce_lr_patience=0"]
    done = subprocess.run([sys.executable, "-c", DRIVER, str(args.recipe), str(args.out), json.dumps(overrides)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode or line is None:
        sys.exit(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "recipe": str(args.recipe),
              **json.loads(line.removeprefix("RESULT "))}
    print(f"CPU: {result['cpu']}, {result['cores']} cores; {args.recipe.name}, {args.epochs} epochs", file=sys.stderr)
    print(f"  imports             {result['imports_seconds']:6.1f} s", file=sys.stderr)
    print(f"  setup               {result['setup_seconds']:6.1f} s  "
          + ", ".join(f"{name} {seconds}" for name, seconds in result["phases_seconds"].items()), file=sys.stderr)
    print(f"  first step          {result['first_step_seconds']:6.1f} s  traces: {result['traces']}", file=sys.stderr)
    print(f"  new batch shapes    {result['first_epoch_new_shape_seconds']:6.1f} s  "
          f"({result['first_epoch_new_shapes']} shapes after the first in epoch 1, median "
          f"{result['new_shape_seconds_median']} s each; {result['shapes']} shapes in all)", file=sys.stderr)
    print(f"  steps of each epoch {result['epoch_step_seconds']} s; validation passes {result['validation_seconds']} s",
          file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
