"""The server path of a translation run: how long one sentence takes, greedy and beam 5, at batch 1.

    textseq export runs/multi30k-de-en-spm exports/m30k-spm
    python benchmarks/translate_latency.py runs/multi30k-de-en-spm --export exports/m30k-spm \\
        --sources ~/.cache/textseq/multi30k/raw/test_2016_flickr.de.gz

Callers, each given the sentences one at a time after warm-up:
- `translate`: `Translator.translate([text])` on one sentence;
- `explain`: `Translator.explain(text)`, what `textseq serve`'s `/api/translate` runs (the
  translation and its attention weights); both on a translator set as the server sets it
  (`xla_for_one_text` on);
- `saved_model`: the export's `translate` signature (the recipe's `decode:` settings), loaded with
  TensorFlow (and tensorflow-text for a SentencePiece run) alone, as a model server runs it;
- `litert explain`: `ExportedTranslator.explain`, what `textseq serve EXPORT` runs for a LiteRT
  translator export (`--litert`, e.g. `--quantize dynamic`: int8 weights), with its threads;
- `graph search` beside `search`: the search alone (ids in, tokens out) as the server runs it (one
  XLA computation for a beam search) and as a plain TensorFlow graph of the same `decode`, what
  `textseq translate` runs: the reference the speed-up is measured against.

The sentences are the first --count lines of --sources (test2016's German by default: real lengths,
not one sentence repeated), each timed once per caller and beam; the table gives the median and p99
per call over them, and the median for the 13-word sentence below timed --calls times. Each server
(the run, the SavedModel, each LiteRT export) takes 20 sentences in a row, every sentence going to
its callers in turn, then the next server takes the same 20, the order rotating: a server process
holds one model, whose weights another model's calls would push out of the CPU's caches (~1 ms a
sentence for the int8 translator), and a slow phase of the machine still falls on all of them.
TensorFlow uses its default threads (every core). Prints a table, then one JSON object as the last
line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import spread, timed_apart  # noqa: E402
from machine import cpu_model  # noqa: E402

SENTENCE = "Ein Mann in einem blauen Hemd steht auf einer Leiter und putzt ein Fenster."  # 13 words


def read_sources(path: Path, count: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [line.rstrip("\n") for _, line in zip(range(count), lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a translation run directory")
    parser.add_argument("--export", type=Path, help="its SavedModel export (textseq export RUN OUT); left out if not given")
    parser.add_argument("--litert", type=Path, action="append", default=[],
                        help="a LiteRT translator export of the run, served as textseq serve serves it (repeatable)")
    parser.add_argument("--sources", type=Path, help="a text file (or .gz) of sources, one a line")
    parser.add_argument("--count", type=int, default=200, help="how many sources to time")
    parser.add_argument("--calls", type=int, default=50, help="calls on the 13-word sentence")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()

    import tensorflow as tf

    from textseq.decoding import decode
    from textseq.inference import Translator

    texts = read_sources(args.sources, args.count) if args.sources else [SENTENCE]
    translator = Translator.from_run(args.run)
    translator.texts.xla_for_one_text = True  # as textseq serve holds it
    callers = {}  # of the run
    servers = {"run": callers}
    for beam in args.beams:
        options = translator.options(beam_size=beam)
        graph = tf.function(lambda ids, o=options: decode(translator.model, ids, o),
                            input_signature=[tf.TensorSpec([None, None], tf.int32)])
        callers[f"translate beam {beam}"] = lambda text, o=options: translator.translate([text], o)
        callers[f"explain beam {beam}"] = lambda text, o=options: translator.explain(text, o)
        callers[f"search beam {beam}"] = lambda text, o=options: translator.search(translator.encode([text]), o)[0].numpy()
        callers[f"graph search beam {beam}"] = lambda text, g=graph: g(translator.encode([text]))[0].numpy()
    if args.export:
        meta = json.loads((args.export / "assets" / "textseq.json").read_text())
        if "tensorflow_text" in meta.get("requires", []):
            import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)
        signature = tf.saved_model.load(str(args.export)).signatures["translate"]  # the recipe's decoding
        servers["saved_model"] = {f"saved_model beam {translator.recipe.decode.beam_size}":
                                  lambda text: signature(text=tf.constant([text]))}
    for export in args.litert:
        from textseq.exported import ExportedTranslator

        served = ExportedTranslator(export)
        label = f"litert {served.device.meta['quantize']}"
        if any(name.startswith(f"{label} explain") for calls in servers.values() for name in calls):
            label = f"{label} {export.name}"  # two exports of one quantization: tell them apart
        servers[str(export)] = {f"{label} explain beam {beam}":
                                lambda text, o=served.options(beam_size=beam), s=served: s.explain(text, o)
                                for beam in args.beams}

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {len(texts)} sources", file=sys.stderr)
    # Warm-up on every source once: a one-text beam search compiles once per 16 source lengths.
    over_sources = timed_apart(servers, texts, warm_up=len(texts))
    on_sentence = timed_apart(servers, [SENTENCE] * args.calls)
    rows = {name: {**spread(over_sources[name]), "sentence_median_ms": spread(on_sentence[name])["median_ms"]}
            for name in over_sources}
    print(f"{'caller':<34}{'median ms':>11}{'p99 ms':>9}{'13 words ms':>13}")
    for name, row in rows.items():
        print(f"{name:<34}{row['median_ms']:>11.2f}{row['p99_ms']:>9.2f}{row['sentence_median_ms']:>13.2f}")
    speedups = {f"beam {beam}": round(statistics.median(
        g / s for g, s in zip(over_sources[f"graph search beam {beam}"], over_sources[f"search beam {beam}"])), 2)
        for beam in args.beams}
    print(f"search against the graph search, median of per-sentence ratios: {speedups}")
    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "run": str(args.run), "sources": len(texts),
                      "rows": rows, "search_speedup": speedups}))


if __name__ == "__main__":
    main()
