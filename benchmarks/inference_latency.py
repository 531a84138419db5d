"""Next-word latency and generation speed of a language-model run, in-process and through its export.

    textseq export runs/multi30k-en-lm exports/multi30k-en-lm
    python benchmarks/inference_latency.py runs/multi30k-en-lm exports/multi30k-en-lm

In-process is `textseq.inference.load(RUN)` (what `textseq predict`, `generate` and `serve` call);
the export is the SavedModel loaded with TensorFlow alone (`next_words`, `generate`). Next-word
latency is one text of 13 words (a typical Multi30k caption) at batch 1: median and p99 over
--calls calls after warm-up, each read from its start (in-process, the model forgets what it read
before each call). Typing is in-process `predict` on the caption as a keyboard sends it, one word
longer each call from the empty text, so each call reads on from the one before (--calls calls
over repeated passes). Generation is greedy, --tokens tokens from the same text, the median
of --rounds runs. Prints a table, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import spread, timed  # noqa: E402
from machine import cpu_model  # noqa: E402

TEXT = "a man in a blue shirt is standing on a ladder cleaning a"


def latencies_ms(call, calls: int) -> dict:
    """Median and p99 of `calls` calls of `call()`, after 10 that warm it up."""
    return spread(timed(lambda _: call(), range(calls), warm_up=10))


def tokens_per_second(generate, tokens: int, rounds: int) -> float:
    generate()  # warm-up: traces the function
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        generate()
        rates.append(tokens / (time.perf_counter() - started))
    return round(statistics.median(rates), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained language-model run directory")
    parser.add_argument("export", type=Path, help="its export (textseq export RUN DIR)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import tensorflow as tf

    from textseq.inference import load

    lm = load(args.run)
    if lm.task != "language_model":
        sys.exit(f"error: {args.run} is a {lm.task} run; this benchmark measures language models")
    exported = tf.saved_model.load(str(args.export))
    next_words, generate = exported.signatures["next_words"], exported.signatures["generate"]
    text = tf.constant([TEXT])

    words = TEXT.split()
    typed = [" ".join(words[:n]) for n in range(len(words) + 1)]

    def type_on(call: int) -> None:
        if call % len(typed) == 0:
            lm.forget()  # a new text: its first call reads the empty text
        lm.predict([typed[call % len(typed)]], 5)

    def first_request() -> None:
        lm.forget()
        lm.predict([TEXT], 5)

    results = {
        "in_process_next_word": latencies_ms(first_request, args.calls),
        "in_process_typing": spread(timed(type_on, range(args.calls - args.calls % len(typed)), warm_up=len(typed))),
        "export_next_word": latencies_ms(lambda: next_words(text=text, k=tf.constant(5)), args.calls),
        "in_process_generate_tokens_per_s": tokens_per_second(
            lambda: lm.generate(TEXT, max_tokens=args.tokens), args.tokens, args.rounds),
        "export_generate_tokens_per_s": tokens_per_second(
            lambda: generate(text=text, max_tokens=tf.constant(args.tokens))["text"].numpy(), args.tokens, args.rounds),
    }
    cpu = cpu_model()
    print(f"{args.run} on {cpu}, {os.cpu_count()} cores; next word after {len(TEXT.split())} words, batch 1; "
          f"greedy generation of {args.tokens} tokens")
    print(f"{'':14s} {'next word median':>17s} {'p99':>8s} {'generation tokens/s':>20s}")
    for side in ("in_process", "export"):
        latency = results[f"{side}_next_word"]
        print(f"{side.replace('_', '-'):14s} {latency['median_ms']:14.2f} ms {latency['p99_ms']:5.2f} ms "
              f"{results[f'{side}_generate_tokens_per_s']:20.1f}")
    typing = results["in_process_typing"]
    print(f"{'typing':14s} {typing['median_ms']:14.2f} ms {typing['p99_ms']:5.2f} ms")
    print(json.dumps({**results, "run": str(args.run), "cpu": cpu}))


if __name__ == "__main__":
    main()
