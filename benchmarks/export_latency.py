"""Latency and throughput of an exported SavedModel, loaded with TensorFlow alone.

    python benchmarks/export_latency.py exports/multi30k-en-lm          # a language model: next_words
    python benchmarks/export_latency.py exports/multi30k-de-en          # a translation model: translate

Reports the export's size and load time, the batch-1 latency (median and p99 over --calls calls,
after warm-up) and the batch-64 throughput. Prints a table, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import spread, timed  # noqa: E402
from machine import cpu_model  # noqa: E402

# 13 words, the length of a typical Multi30k caption.
SENTENCES = {
    "translate": "ein mann in einem blauen hemd steht auf einer leiter vor einem haus",
    "next_words": "a man in a blue shirt is standing on a ladder cleaning a",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--text", help="input text (default: a 13-word Multi30k-like sentence)")
    args = parser.parse_args()

    size = sum(f.stat().st_size for f in args.export.rglob("*") if f.is_file())
    metadata = json.loads((args.export / "assets" / "textseq.json").read_text(encoding="utf-8"))
    for package in metadata.get("requires", []):  # a SentencePiece export's ops (tensorflow_text)
        __import__(package)
    started = time.perf_counter()
    model = tf.saved_model.load(str(args.export))
    load_seconds = time.perf_counter() - started
    name = "translate" if "translate" in model.signatures else "next_words"
    signature = model.signatures[name]
    text = args.text or SENTENCES[name]
    extra = {"k": tf.constant(5)} if name == "next_words" else {}

    def call(batch: int):
        return signature(text=tf.constant([text] * batch), **extra)

    batch1 = spread(timed(call, [1] * args.calls, warm_up=10))  # warm-up: the first calls build caches
    call(64)
    rounds, started = 20, time.perf_counter()
    for _ in range(rounds):
        call(64)
    per_second = rounds * 64 / (time.perf_counter() - started)

    result = {
        "export": str(args.export), "signature": name, "text_words": len(text.split()),
        "size_mb": round(size / 1e6, 1), "load_seconds": round(load_seconds, 2),
        "batch1_median_ms": batch1["median_ms"], "batch1_p99_ms": batch1["p99_ms"],
        "batch64_texts_per_second": round(per_second, 1), "calls": args.calls,
        "cpu": cpu_model(), "cores": os.cpu_count(),
    }
    for key, value in result.items():
        print(f"{key:26} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
