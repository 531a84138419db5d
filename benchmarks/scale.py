"""A corpus larger than memory, streamed: peak memory, time to the first step and steps/s beside Multi30k.

    python benchmarks/scale.py --data-dir ../shared/data

It writes a large parallel corpus (once; kept in --work-dir): the Multi30k training pairs (the
`multi30k/tok/` files under --data-dir, the local mirror `textseq data fetch multi30k --from` takes)
repeated in a seeded order, each copy of a sentence pair with a seeded share of its words dropped
(the same positions on both sides' copies would be meaningless, so each side drops its own), so
that lines differ, in --shards gzip shards, at least --pairs pairs and --min-mb MB of text. Then
the same recipe (`recipes/multi30k-de-en.yaml` with train.steps, and vocab.max_size 5,000 so that
both models have the same size) trains --steps steps on Multi30k
and on the large corpus, each in a process of its own, and the large run resumes for --resume-steps
more. For each it prints the process' peak resident memory (ru_maxrss), the seconds from the
command's start to the end of the first training step (vocabulary included), and steps per second
over the second half of the steps (after the recurrent loops of most lengths are compiled).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "multi30k-de-en.yaml"

# Runs one training in this child process and reports what the parent cannot see from outside.
DRIVER = """
import json, resource, sys, time
started = float(sys.argv[1])
from textseq.recipe import load_recipe
from textseq.training import train
recipe = load_recipe(sys.argv[2], json.loads(sys.argv[4]))
called = time.time()
summary = train(recipe, sys.argv[3], verbose=0)
# from the command to the end of the first step: imports, then train()'s setup and first step
summary["first_step_seconds"] = called - started + summary["setup_seconds"] + summary["first_step_seconds"]
summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("SUMMARY " + json.dumps(summary))
"""


def write_corpus(data_dir: Path, out: Path, pairs: int, min_mb: int, shards: int, seed: int) -> dict:
    """The large corpus in `shards` gzip shards under `out` (kept: a manifest says what it holds)."""
    manifest = out / "manifest.json"
    wanted = {"pairs": pairs, "min_mb": min_mb, "shards": shards, "seed": seed}
    if manifest.exists():
        found = json.loads(manifest.read_text())
        if found.get("wanted") == wanted:
            return found
    out.mkdir(parents=True, exist_ok=True)
    base = data_dir / "multi30k" / "tok" / "train.lc.norm.tok"
    sources = Path(f"{base}.de").read_text(encoding="utf-8").splitlines()
    targets = Path(f"{base}.en").read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    files = [(gzip.open(out / f"train-{k:02d}.de.gz", "wt", compresslevel=1, encoding="utf-8"),
              gzip.open(out / f"train-{k:02d}.en.gz", "wt", compresslevel=1, encoding="utf-8")) for k in range(shards)]
    written = size = 0
    started = time.monotonic()
    order = list(range(len(sources)))
    while written < pairs or size < min_mb * 1e6:
        rng.shuffle(order)
        for i in order:
            source = " ".join(w for w in sources[i].split() if rng.random() > 0.15) or sources[i]
            target = " ".join(w for w in targets[i].split() if rng.random() > 0.15) or targets[i]
            de, en = files[written % shards]
            de.write(source + "\n")
            en.write(target + "\n")
            written += 1
            size += len(source.encode()) + len(target.encode()) + 2
    for de, en in files:
        de.close()
        en.close()
    found = {"wanted": wanted, "pairs": written, "mb": round(size / 1e6, 1),
             "gz_mb": round(sum(p.stat().st_size for p in out.glob("*.gz")) / 1e6, 1),
             "seconds": round(time.monotonic() - started, 1)}
    manifest.write_text(json.dumps(found))
    return found


def run(recipe_overrides: list[str], out: Path) -> dict:
    """One training in a fresh process; its summary with peak RSS and seconds to the first step."""
    started = time.time()
    result = subprocess.run([sys.executable, "-c", DRIVER, str(started), str(RECIPE), str(out),
                             json.dumps(recipe_overrides)], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    line = next((line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")), None)
    if result.returncode or line is None:
        sys.exit(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    summary = json.loads(line.removeprefix("SUMMARY "))
    summary["command_seconds"] = round(time.time() - started, 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/textseq-scale"))
    parser.add_argument("--pairs", type=int, default=3_000_000)
    parser.add_argument("--min-mb", type=int, default=500)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--resume-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = write_corpus(args.data_dir, args.work_dir / "corpus", args.pairs, args.min_mb, args.shards, args.seed)
    print(f"corpus: {corpus['pairs']:,} pairs, {corpus['mb']} MB of text, {corpus['gz_mb']} MB in {args.shards} "
          f".gz shards", flush=True)
    common = [f"data.dir={args.data_dir.resolve()}", f"train.steps={args.steps}",
              f"train.checkpoint_every={args.steps // 2}", f"train.validate_every={args.steps}",
              "train.reduce_lr_patience=0", "train.early_stopping_patience=0",
              # The repeated corpus lifts Multi30k's rare words over min_count: a fixed size keeps both
              # models (and so their steps) the same size, and what differs is the data they read.
              "vocab.max_size=5000"]
    large = [f"data.train={args.work_dir.resolve() / 'corpus' / 'train-*'}"]
    runs = {}
    for name, overrides in (("multi30k", []), ("large", large)):
        out = args.work_dir / f"run-{name}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        runs[name] = run(common + overrides, out)
    resumed_steps = [f"train.steps={args.steps + args.resume_steps}"]
    runs["large-resumed"] = run(common + large + resumed_steps, args.work_dir / "run-large")

    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; recipe {RECIPE.relative_to(ROOT)} with train.steps")
    print(f"{'run':14} {'pairs':>10} {'peak RSS MB':>12} {'first step s':>13} {'steps/s':>8}")
    for name, summary in runs.items():
        pairs = corpus["pairs"] if name.startswith("large") else 29_000
        print(f"{name:14} {pairs:>10,} {summary['peak_rss_mb']:>12.0f} {summary['first_step_seconds']:>13.1f} "
              f"{summary['steps_per_second']:>8.2f}")
    memory = runs["large"]["peak_rss_mb"] / runs["multi30k"]["peak_rss_mb"]
    speed = runs["large"]["steps_per_second"] / runs["multi30k"]["steps_per_second"]
    print(f"large / multi30k: memory {memory:.2f}x (at most 1.25x, and 3 GB), speed {speed:.2f}x (at least 0.9x); "
          f"first step {runs['large']['first_step_seconds']:.0f} s (at most 90), after a resume "
          f"{runs['large-resumed']['first_step_seconds']:.0f} s (at most 30)")
    print(json.dumps({
        "cpu": cpu_model(), "corpus": corpus,
        "runs": {name: {key: summary[key] for key in ("peak_rss_mb", "first_step_seconds", "steps_per_second",
                                                       "steps_done", "command_seconds")}
                 for name, summary in runs.items()},
        "memory_ratio": round(memory, 3), "speed_ratio": round(speed, 3),
        "met": memory <= 1.25 and runs["large"]["peak_rss_mb"] <= 3000 and speed >= 0.9
        and runs["large"]["first_step_seconds"] <= 90 and runs["large-resumed"]["first_step_seconds"] <= 30,
    }))


if __name__ == "__main__":
    main()
