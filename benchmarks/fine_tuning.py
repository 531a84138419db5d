"""Fine-tuning on real data: adapt a general Multi30k de-en model to one domain, against training
on that domain from scratch at the same cost.

The domain is every pair whose English side mentions a dog (about 1,900 of Multi30k's 29,000
training pairs; 66 validation and 72 test2016 pairs); the general model trains on the other pairs.
Four runs of one model (word vocabularies, a smaller LSTM than recipes/multi30k-de-en.yaml):

1. general: `--general-steps` steps on the pairs without dogs;
2. fine-tuned: `train.init_from` the general run, `--tune-steps` steps on the dog pairs;
3. scratch, same steps: `--tune-steps` steps on the dog pairs from random weights (the wall time
   fine-tuning itself took);
4. scratch, same total: general + tune steps on the dog pairs from random weights (the wall time of
   1 and 2 together).

Each is scored on the dog pairs of test2016 (lower-cased tokenized BLEU, greedy, as Multi30k papers
report it) and on all of test2016. The corpus is read from a local mirror of Multi30k:

    python benchmarks/fine_tuning.py --data-dir ../shared/data --out /tmp/fine-tuning

Prints a table, and as its last line one JSON object.
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

SPLITS = {"train": "train.lc.norm.tok", "validation": "val.lc.norm.tok", "test": "test_2016_flickr.lc.norm.tok"}


def in_domain(english: str) -> bool:
    return bool({"dog", "dogs"} & set(english.split()))


def write_corpora(source: Path, out: Path) -> dict:
    """Parallel files under `out`: general-SPLIT and dog-SPLIT (.de, .en), and all-test; their sizes."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, name in SPLITS.items():
        german = (source / f"{name}.de").read_text(encoding="utf-8").splitlines()
        english = (source / f"{name}.en").read_text(encoding="utf-8").splitlines()
        parts = {"general": [(d, e) for d, e in zip(german, english) if not in_domain(e)],
                 "dog": [(d, e) for d, e in zip(german, english) if in_domain(e)],
                 "all": list(zip(german, english))}
        for part, pairs in parts.items():
            for index, language in enumerate(("de", "en")):
                (out / f"{part}-{split}.{language}").write_text("".join(p[index] + "\n" for p in pairs),
                                                              encoding="utf-8")
            sizes[f"{part}-{split}"] = len(pairs)
    return sizes


def recipe(corpora: Path, domain: str, steps: int, init_from: Path | None = None):
    from textseq.recipe import recipe_from_dict

    every = max(steps // 4, 1)
    raw = {
        "data": {"source": "parallel", "dir": str(corpora), "train": f"{domain}-train",
                 "validation": f"{domain}-validation", "test": "dog-test", "source_language": "de",
                 "target_language": "en", "max_source_length": 64, "max_target_length": 64,
                 "bleu_tokenize": "none"},
        "vocab": {"level": "word", "min_count": 2, "shared": False},
        "model": {"cell": "lstm", "embedding_dim": 128, "units": 256, "bidirectional": True, "dropout": 0.3,
                  "attention_units": 128},
        "train": {"steps": steps, "validate_every": every, "checkpoint_every": every, "batch_size": 64,
                  "learning_rate": 0.001, "clipnorm": 1.0, "label_smoothing": 0.1,
                  **({"init_from": str(init_from)} if init_from else {})},
        "decode": {"max_length": 64},
    }
    return recipe_from_dict(raw)


def scores(run: Path, corpora: Path) -> dict:
    from textseq.inference import Translator
    from textseq.metrics import corpus_scores

    translator = Translator.from_run(run)
    found = {}
    for part in ("dog", "all"):
        sources = (corpora / f"{part}-test.de").read_text(encoding="utf-8").splitlines()
        references = (corpora / f"{part}-test.en").read_text(encoding="utf-8").splitlines()
        hypotheses = translator.translate(sources, translator.options(beam_size=1))
        found[f"bleu_{part}_test"] = round(corpus_scores(hypotheses, references, "none")["bleu"], 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding multi30k/ (default: $TEXTSEQ_DATA or ~/.cache/textseq)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where the corpora and the four runs go; run again, finished runs are kept")
    parser.add_argument("--general-steps", type=int, default=4000)
    parser.add_argument("--tune-steps", type=int, default=600)
    args = parser.parse_args()

    from textseq.data.corpora import data_dir
    from textseq.training import train

    corpora = args.out / "corpora"
    sizes = write_corpora((args.data_dir or data_dir()) / "multi30k" / "tok", corpora)
    plan = [("general", "general", args.general_steps, None),
            ("fine-tuned", "dog", args.tune_steps, "general"),
            ("scratch, same steps", "dog", args.tune_steps, None),
            ("scratch, same total", "dog", args.general_steps + args.tune_steps, None)]
    results = {}
    for name, domain, steps, origin in plan:
        run = args.out / name.replace(", ", "-").replace(" ", "-")
        started = time.perf_counter()
        summary = train(recipe(corpora, domain, steps, origin and args.out / origin), run, verbose=0)  # or resume
        results[name] = {"steps": steps, "train_seconds": round(time.perf_counter() - started, 1),
                         "best_step": summary.get("best_step"), **scores(run, corpora)}
        print(f"{name}: {results[name]}", flush=True)

    print(f"\n{'run':22} {'steps':>6} {'seconds':>8} {'BLEU dog test':>14} {'BLEU all test':>14}")
    for name, r in results.items():
        print(f"{name:22} {r['steps']:6d} {r['train_seconds']:8.1f} {r['bleu_dog_test']:14.2f} {r['bleu_all_test']:14.2f}")
    print(json.dumps({"machine": cpu_model(), "pairs": sizes, "runs": results}))


if __name__ == "__main__":
    main()
