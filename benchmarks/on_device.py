"""The keyboard model on a phone's terms: size, one-thread latency and next-word accuracy of its
LiteRT exports (float, float16, dynamic range, int8), beside the SavedModel.

    python benchmarks/on_device.py --data-dir ../shared/data            # trains recipes/keyboard-en.yaml if needed
    python benchmarks/on_device.py --data-dir ../shared/data --run runs/keyboard-en

For every `.tflite` model, LiteRT's Python interpreter (`ai-edge-litert`, one thread, batch 1) reads
the test split as one stream, one token per call, as a keyboard reads what is typed (captions end
with `</s>`): the latency is that of each call (median and p99 over all of them, the encoder's
re-reads at window borders included), the accuracy whether the next word is the first (top-1)
or among the first three (top-3) it suggests, over the positions where a word follows (not the
captions' ends: a keyboard suggests words, never `</s>` or another control token; an unknown
word counts as missed). The SavedModel row: its size, the latency of one `next_words` call
(batch 1, `k` 3, TensorFlow on one thread) on a caption so far, and the accuracy of the same model
in TensorFlow over the same positions, read by windows as `textseq evaluate` reads them (what
`next_words` computes, tests/test_export.py). Each LiteRT row also gives the memory a keyboard app
gives the step (`app_memory.py`: a fresh process that loads it with `DeviceNextWords` and reads 20
test captions). Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)  # a phone's one core: before TensorFlow starts
tf.config.threading.set_inter_op_parallelism_threads(1)

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_memory import memory_held  # noqa: E402
from timing import spread  # noqa: E402
from machine import cpu_model  # noqa: E402

RECIPE = ROOT / "recipes" / "keyboard-en.yaml"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SAVED_MODEL_QUERIES = 500  # next_words calls timed on the SavedModel (each re-reads its caption)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the corpus mirror (as TEXTSEQ_DATA)")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "keyboard-en",
                        help="a language-model run; trained from recipes/keyboard-en.yaml when it has no weights")
    parser.add_argument("--out", type=Path, default=ROOT / "exports" / "on-device", help="where the exports go")
    args = parser.parse_args()
    os.environ["TEXTSEQ_DATA"] = str(args.data_dir.resolve())

    from textseq.data.pipeline import encode_text
    from textseq.data.sources import load_text
    from textseq.export import export
    from textseq.inference import LanguageModel

    if not (args.run / "model.weights.h5").exists():
        print(f"training {RECIPE.relative_to(ROOT)} into {args.run} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "textseq", "train", str(RECIPE), "--out", str(args.run)], check=True)
    model = LanguageModel.from_run(args.run)
    data = model.recipe.data
    text = load_text(data, "test")
    stream = encode_text(text, model.target).numpy()
    captions = text.splitlines()
    parameters = int(sum(np.prod(w.shape) for w in model.model.weights))
    print(f"CPU: {cpu_model()}; {args.run}: {parameters:,} parameters, test stream {len(stream):,} tokens",
          file=sys.stderr)

    rows = {"saved_model": saved_model_row(model, stream, export(args.run, args.out / "saved_model", overwrite=True))}
    for quantize in QUANTIZATIONS:
        out = export(args.run, args.out / f"litert-{quantize}", overwrite=True, format="litert", quantize=quantize)
        rows[f"litert {quantize}"] = {**litert_row(out, stream), "held_mb": memory_held("type", out, captions[:20])}
        print(f"  litert {quantize}: {rows[f'litert {quantize}']}", file=sys.stderr)

    float_top3 = rows["litert none"]["top3"]
    for quantize in QUANTIZATIONS[1:]:
        rows[f"litert {quantize}"]["top3_cost_points"] = round(100 * (float_top3 - rows[f"litert {quantize}"]["top3"]), 2)
    print(f"\n{'model':<18}{'size':>12}{'held MB':>9}{'median ms':>11}{'p99 ms':>9}{'top-1':>8}{'top-3':>8}")
    for name, row in rows.items():
        held = f"{row['held_mb']:>9.1f}" if "held_mb" in row else f"{'-':>9}"
        print(f"{name:<18}{row['bytes']:>12,}{held}{row['median_ms']:>11.3f}{row['p99_ms']:>9.3f}"
              f"{row['top1']:>8.4f}{row['top3']:>8.4f}")
    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "run": str(args.run), "parameters": parameters,
                      "test_tokens": len(stream), "test_words": int(word_positions(stream).sum()), "models": rows}))


def litert_row(export: Path, stream: np.ndarray) -> dict:
    """Reads the stream through the `.tflite` step: size, per-call latency, top-1/top-3."""
    meta = json.loads((export / "textseq.json").read_text())
    path = export / meta["model"]
    step = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    start = {name: np.zeros(spec["shape"], spec["dtype"]) for name, spec in meta["inputs"].items()
             if name != "token_id"}
    state = dict(start)
    for token in [meta["start_id"], *stream[:50]]:  # warm-up
        out = step(token_id=np.array([token], np.int32), **state)
        state = {name: out[name] for name in meta["state"]}
    state, latencies, top1, top3 = dict(start), [], 0, 0
    inputs = [meta["start_id"], *stream[:-1]]
    for fed, expected in zip(inputs, stream):
        token = np.array([fed], np.int32)
        started = time.perf_counter()
        out = step(token_id=token, **state)
        latencies.append((time.perf_counter() - started) * 1000)
        state = {name: out[name] for name in meta["state"]}
        suggested = [i for i in out["top_ids"][0] if i not in meta["control_ids"]]
        top1 += int(suggested[0] == expected)
        top3 += int(expected in suggested[:3])
    words = int(word_positions(stream).sum())
    return {"bytes": path.stat().st_size, **spread(latencies, digits=4), "top1": round(top1 / words, 4),
            "top3": round(top3 / words, 4)}


def word_positions(ids: np.ndarray) -> np.ndarray:
    """Where the expected next token is a word (the unknown one included), not padding or `</s>`."""
    from textseq.constants import EOS, PAD

    return (ids != PAD) & (ids != EOS)


def saved_model_row(model, stream: np.ndarray, export: Path) -> dict:
    """The SavedModel's size and `next_words` latency; the model's accuracy over the stream by windows."""
    from textseq.constants import PAD, RESERVED
    from textseq.data.pipeline import language_model_examples

    data = model.recipe.data
    if data.carry_state:
        raise SystemExit("the SavedModel's accuracy is read by independent windows: use a recipe with "
                         "data.carry_state: false (recipes/keyboard-en.yaml)")
    source, target_in, target_out = language_model_examples(stream, data.context, data.continuation)
    top1 = top3 = 0
    for start in range(0, int(source.nrows()), 256):
        rows = slice(start, start + 256)
        logits = model.model({"source": source[rows].to_tensor(PAD), "target_in": target_in[rows].to_tensor(PAD)})
        expected = target_out[rows].to_tensor(PAD).numpy()
        controls = tf.range(tf.shape(logits)[-1]) < len(RESERVED)  # never suggested, as in next_words
        best = tf.math.top_k(tf.where(controls, -np.inf, logits), 3).indices.numpy()
        real = word_positions(expected)
        top1 += int(((best[..., 0] == expected) & real).sum())
        top3 += int(((best == expected[..., None]).any(-1) & real).sum())

    signature = tf.saved_model.load(str(export)).signatures["next_words"]
    captions = [line.split() for line in load_captions(model)]
    prefixes = [" ".join(words[:n]) for words in captions for n in range(len(words))][:SAVED_MODEL_QUERIES]
    for text in prefixes[:20]:  # warm-up
        signature(text=tf.constant([text]), k=tf.constant(3))
    latencies = []
    for text in prefixes:
        started = time.perf_counter()
        signature(text=tf.constant([text]), k=tf.constant(3))
        latencies.append((time.perf_counter() - started) * 1000)
    size = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    words = int(word_positions(stream).sum())
    return {"bytes": size, **spread(latencies, digits=4), "top1": round(top1 / words, 4), "top3": round(top3 / words, 4)}


def load_captions(model) -> list[str]:
    from textseq.data.sources import load_text

    return [line for line in load_text(model.recipe.data, "test").splitlines() if line.strip()]


if __name__ == "__main__":
    main()
