"""A translation run on a phone's terms: the LiteRT translator (float and each quantization) and the
SavedModel, by file size, per-sentence latency on one thread and BLEU.

For every export: its size beside the float32 weights (parameters x 4 bytes); the latency of one
sentence at a time over the test split's sources (median and p99, milliseconds, one thread) with
greedy decoding and beam 5 (the LiteRT files through `textseq/on_device.py`, the app loop; the
SavedModel through its `translate` signature, which decodes as the recipe's `decode:` says); and
BLEU of those translations against the test references, tokenized as the recipe's
`data.bleu_tokenize` says (13a, cased, for multi30k-de-en-spm). For each LiteRT file also the memory
an app gives it (`app_memory.py`: a fresh process that loads it with the app loop and translates
--memory-sentences sources with beam 5).

    python benchmarks/translate_on_device.py runs/multi30k-de-en-spm --out /tmp/on-device

Run again with the same --out, finished exports are kept. Prints a table, and as its last line one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_memory import memory_held  # noqa: E402
from timing import spread, timed  # noqa: E402
from machine import cpu_model  # noqa: E402

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_size(path: Path) -> int:
    """The bytes a device loads: the .tflite file, or the SavedModel less its assets (vocabularies)."""
    tflite = path / "translator.tflite"
    return tflite.stat().st_size if tflite.exists() else size_of(path) - size_of(path / "assets")


def measure_litert(export: Path, sources: list[str], references: list[str], bleu_tokenize: str, beam: int) -> dict:
    from textseq.metrics import corpus_scores
    from textseq.on_device import DeviceTranslator

    translator = DeviceTranslator(export, num_threads=1)
    outputs = {}

    def translate(i):
        outputs[i] = translator.translate(sources[i], beam_size=beam)[0]

    times = timed(translate, range(len(sources)), warm_up=1)  # the interpreter's first call allocates
    return {**spread(times), "bleu": round(corpus_scores(list(outputs.values()), references, bleu_tokenize)["bleu"], 2)}


def measure_saved_model(export: Path, sources: list[str], references: list[str], bleu_tokenize: str) -> dict:
    import tensorflow as tf

    from textseq.metrics import corpus_scores

    translate = tf.saved_model.load(str(export)).signatures["translate"]
    outputs = {}

    def translate_one(i):
        outputs[i] = translate(text=tf.constant([sources[i]]))["text"].numpy()[0].decode("utf-8")

    times = timed(translate_one, range(len(sources)), warm_up=1)  # the first call traces
    return {**spread(times), "bleu": round(corpus_scores(list(outputs.values()), references, bleu_tokenize)["bleu"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained translation run")
    parser.add_argument("--out", type=Path, required=True, help="where the exports go; finished ones are kept")
    parser.add_argument("--sentences", type=int, default=None, help="the first N test sources (default: all)")
    parser.add_argument("--quantize", default=",".join(QUANTIZATIONS), help="comma-separated LiteRT quantizations")
    parser.add_argument("--memory-sentences", type=int, default=20, help="sources the memory probe translates")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one thread, as a phone app gives it
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from textseq.data.sources import load_pairs
    from textseq.export import export
    from textseq.inference import Translator

    translator = Translator.from_run(args.run)
    recipe = translator.recipe
    pairs = load_pairs(recipe.data, "test")[:args.sentences]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    float_bytes = translator.model.count_params() * 4
    results = {}
    for quantize in args.quantize.split(","):
        path = args.out / f"litert-{quantize}"
        if not path.exists():
            export(args.run, path, format="litert", quantize=quantize)
        row = {"bytes": model_size(path), "of_float_weights": round(model_size(path) / float_bytes, 3),
               "held_mb": memory_held("translate", path, sources[:args.memory_sentences])}
        for beam in (1, 5):
            row[f"beam{beam}"] = measure_litert(path, sources, references, recipe.data.bleu_tokenize, beam)
        results[f"litert {quantize}"] = row
        print(f"litert {quantize}: {row}", flush=True)
    path = args.out / "saved_model"
    if not path.exists():
        export(args.run, path)
    row = {"bytes": model_size(path), "of_float_weights": round(model_size(path) / float_bytes, 3),
           f"beam{translator.options().beam_size}": measure_saved_model(path, sources, references,
                                                                       recipe.data.bleu_tokenize)}
    results["saved_model"] = row
    print(f"saved_model: {row}", flush=True)

    print(f"\n{'export':18} {'MB':>7} {'x float':>8} {'held MB':>8} {'beam 1 median/p99 ms':>21} {'BLEU':>6} "
          f"{'beam 5 median/p99 ms':>21} {'BLEU':>6}")
    for name, r in results.items():
        cells = []
        for beam in ("beam1", "beam5"):
            m = r.get(beam)
            cells.append(f"{m['median_ms']:>10.2f} /{m['p99_ms']:>9.2f} {m['bleu']:6.2f}" if m else f"{'-':>21} {'-':>6}")
        held = f"{r['held_mb']:8.1f}" if "held_mb" in r else f"{'-':>8}"
        print(f"{name:18} {r['bytes'] / 1e6:7.2f} {r['of_float_weights']:8.3f} {held} {cells[0]} {cells[1]}")
    print(json.dumps({"machine": cpu_model(), "run": str(args.run), "sentences": len(sources),
                      "float32_weight_bytes": float_bytes, "results": results}))


if __name__ == "__main__":
    main()
