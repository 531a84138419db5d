"""Multi30k test2016 BLEU of a trained multi30k-de-en run, both ways papers report it.

1. Lower-cased tokenized (`tok/*.lc.norm.tok.en`, sacrebleu `tokenize="none"`): how Multi30k
   papers report BLEU, and what `textseq evaluate` computes for this recipe.
2. Detokenized and cased against the raw references (sacrebleu's default 13a): the hypotheses are
   detokenized with Moses' rules (sacremoses) and their first letter capitalised; everything else
   stays lower case, so names ("Boston Terrier") count as errors.

    python benchmarks/multi30k_bleu.py runs/multi30k-de-en --data-dir ../shared/data --beam-size 5 --alpha 0.6

Prints a table, and as its last line one JSON object. Needs the `bench` extra (sacremoses).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding multi30k/ (default: $TEXTSEQ_DATA or ~/.cache/textseq)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from sacrebleu.metrics import BLEU, CHRF
    from sacremoses import MosesDetokenizer

    from textseq.data.corpora import data_dir
    from textseq.data.textfiles import read_lines
    from textseq.inference import Translator

    root = (args.data_dir or data_dir()) / "multi30k"
    sources = read_lines(root / "tok/test_2016_flickr.lc.norm.tok.de", "source")
    tok_refs = read_lines(root / "tok/test_2016_flickr.lc.norm.tok.en", "reference")
    raw_refs = read_lines(root / "raw/test_2016_flickr.en.gz", "reference")

    translator = Translator.from_run(args.run)
    rows, results = [], {}
    for name, options in [("greedy", translator.options(beam_size=1)),
                          (f"beam {args.beam_size}, alpha {args.alpha}", translator.options(beam_size=args.beam_size,
                                                                                       alpha=args.alpha))]:
        started = time.perf_counter()
        hypotheses = translator.translate(sources, options, args.batch_size)
        seconds = time.perf_counter() - started
        detokenizer = MosesDetokenizer("en")
        detok = [capitalise(detokenizer.detokenize(h.split())) for h in hypotheses]
        tok_bleu, chrf = BLEU(tokenize="none"), CHRF()
        raw_bleu = BLEU()
        scores = {
            "bleu_tok_lc": round(tok_bleu.corpus_score(hypotheses, [tok_refs]).score, 2),
            "chrf_tok_lc": round(chrf.corpus_score(hypotheses, [tok_refs]).score, 2),
            "bleu_detok_cased": round(raw_bleu.corpus_score(detok, [raw_refs]).score, 2),
            "decode_seconds": round(seconds, 1),
            "bleu_tok_lc_signature": str(tok_bleu.get_signature()),
            "bleu_detok_cased_signature": str(raw_bleu.get_signature()),
        }
        results[options.method] = {**scores, "decoding": options.describe()}
        rows.append((name, scores))

    print(f"{'decoding':24} {'BLEU tok lc':>12} {'chrF tok lc':>12} {'BLEU detok cased':>17} {'seconds':>8}")
    for name, s in rows:
        print(f"{name:24} {s['bleu_tok_lc']:12.2f} {s['chrf_tok_lc']:12.2f} {s['bleu_detok_cased']:17.2f} "
              f"{s['decode_seconds']:8.1f}")
    print(json.dumps({"run": str(args.run), "sentences": len(sources), **results}))


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


if __name__ == "__main__":
    main()
