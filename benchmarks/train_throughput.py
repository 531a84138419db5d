"""Training throughput of textseq's recurrent layers beside a hand-written PyTorch loop, same shapes.

    python benchmarks/train_throughput.py --shapes ptb-small --data-dir ../shared/data

`ptb-small` is the classic small Penn Treebank language model (Zaremba et al. 2014): embedding 200,
2 x LSTM(200), a full softmax over 10,000 words, batch 20, 35 steps of truncated back-propagation
with the state carried across windows, SGD with gradient clipping at norm 5. The text is the
English side of Multi30k (`multi30k/tok/train.lc.norm.tok.en` under --data-dir, the same local
mirror `textseq data fetch multi30k --from` takes), mapped into 10,000 ids (padding, `<unk>`,
`<eos>` at line ends, and the 9,997 most frequent words), as PTB is prepared.

Each side runs in its own process (TensorFlow's and PyTorch's thread pools would compete), the two
alternating --pairs times; each process times --windows windows of --steps training steps after
warm-up and reports the median. The table gives tokens/s, the achieved FLOP/s (3x the forward
multiply-adds per token, the usual count for training) and the ratio to the best float32 matrix
multiply measured in the same run. The last line is one JSON object.

textseq trains encoder-decoders; this measures its recurrent layers (`textseq.models.recurrent`,
the layers every textseq model uses) in a plain LSTM language model trained by Keras, next to
`torch.nn.LSTM` in the loop most PyTorch tutorials write. PyTorch is the `bench` extra
(`pip install torch==2.13.0` installs the CPU build).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIDES = ["textseq", "textseq-xla", "keras", "keras-xla", "torch"]
SHAPES = {
    "ptb-small": dict(vocab=10_000, embedding=200, units=200, layers=2, batch=20, steps=35, learning_rate=1.0,
                      clipnorm=5.0),
}


def corpus_batches(data_dir: Path, shape: dict, count: int) -> np.ndarray:
    """`count` consecutive (inputs, targets) windows `[2, count, batch, steps]` of the word stream."""
    path = data_dir / "multi30k" / "tok" / "train.lc.norm.tok.en"
    if not path.exists():
        sys.exit(f"error: {path} not found; pass --data-dir, the directory that holds multi30k/ "
                 "(e.g. ../shared/data, or the cache `textseq data fetch multi30k` fills)")
    lines = path.read_text(encoding="utf-8").splitlines()
    counts = collections.Counter(word for line in lines for word in line.split())
    ids = {word: i + 3 for i, (word, _) in enumerate(counts.most_common(shape["vocab"] - 3))}  # 0 pads, 1 <unk>
    eos = 2
    stream = np.array([i for line in lines for i in [*(ids.get(w, 1) for w in line.split()), eos]], "int64")
    batch, steps = shape["batch"], shape["steps"]
    rows = stream[: len(stream) // batch * batch].reshape(batch, -1)  # PTB's batchify: one stream per row
    needed = count * steps + 1
    if rows.shape[1] < needed:
        raise ValueError(f"the corpus has {rows.shape[1]} steps per row; {needed} are needed")
    inputs = np.stack([rows[:, i * steps:(i + 1) * steps] for i in range(count)])
    targets = np.stack([rows[:, i * steps + 1:(i + 1) * steps + 1] for i in range(count)])
    return np.stack([inputs, targets])


def flops_per_token(shape: dict) -> float:
    """Training FLOPs per token: 3 x (2 x multiply-adds) of the forward pass (the embedding is a lookup)."""
    recurrent = 0
    features = shape["embedding"]
    for _ in range(shape["layers"]):
        recurrent += 4 * shape["units"] * (features + shape["units"])
        features = shape["units"]
    return 3 * 2 * (recurrent + features * shape["vocab"])


def time_windows(step, batches: np.ndarray, windows: int, steps: int) -> float:
    """Median tokens/s over `windows` windows of `steps` calls of `step(inputs, targets)`, after warm-up."""
    count = batches.shape[1]
    for i in range(3):
        step(batches[0, i], batches[1, i])
    rates, i = [], 3
    tokens = steps * batches.shape[2] * batches.shape[3]
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(steps):
            step(batches[0, i % count], batches[1, i % count])
            i += 1
        rates.append(tokens / (time.perf_counter() - started))
    return statistics.median(rates)


def textseq_worker(shape: dict, batches: np.ndarray, windows: int, steps: int, jit: bool, plain_keras: bool) -> dict:
    """textseq's LSTM layers and token loss; with `plain_keras`, Keras' own (the reference before textseq's)."""
    import keras
    import tensorflow as tf

    from textseq.metrics import token_loss
    from textseq.models.recurrent import LSTM

    if plain_keras:
        LSTM = keras.layers.LSTM  # noqa: N806

    keras.utils.set_random_seed(0)
    inputs = keras.Input(batch_shape=(shape["batch"], shape["steps"]), dtype="int32")
    x = keras.layers.Embedding(shape["vocab"], shape["embedding"])(inputs)
    for _ in range(shape["layers"]):
        x = LSTM(shape["units"], return_sequences=True, stateful=True)(x)  # carries the state across windows
    logits = keras.layers.Dense(shape["vocab"])(x)
    model = keras.Model(inputs, logits)
    model.compile(optimizer=keras.optimizers.SGD(shape["learning_rate"], clipnorm=shape["clipnorm"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) if plain_keras else token_loss(),
                  jit_compile=jit)
    rate = time_windows(lambda x, y: model.train_on_batch(x, y), batches, windows, steps)
    return {"tokens_per_s": rate, "matmul_gflops": matmul_rate(lambda a, b: tf.matmul(a, b).numpy(), tf.constant)}


def torch_worker(shape: dict, batches: np.ndarray, windows: int, steps: int) -> dict:
    import torch

    torch.manual_seed(0)

    class LanguageModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(shape["vocab"], shape["embedding"])
            self.lstm = torch.nn.LSTM(shape["embedding"], shape["units"], shape["layers"], batch_first=True)
            self.logits = torch.nn.Linear(shape["units"], shape["vocab"])

        def forward(self, ids, state):
            outputs, state = self.lstm(self.embedding(ids), state)
            return self.logits(outputs), state

    model = LanguageModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=shape["learning_rate"])
    state = None

    def step(x, y):
        nonlocal state
        optimizer.zero_grad()
        logits, state = model(torch.from_numpy(x), state)
        state = tuple(s.detach() for s in state)  # truncated back-propagation, as PTB examples do
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, shape["vocab"]), torch.from_numpy(y).reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), shape["clipnorm"])
        optimizer.step()

    rate = time_windows(step, batches, windows, steps)
    return {"tokens_per_s": rate, "matmul_gflops": matmul_rate(lambda a, b: torch.mm(a, b), torch.from_numpy)}


def matmul_rate(matmul, to_tensor) -> float:
    """The best float32 matrix-multiply rate (GFLOP/s) over square and model-shaped products."""
    best = 0.0
    rng = np.random.default_rng(0)
    for m, k, n in [(2048, 2048, 2048), (700, 200, 10_000), (1024, 1024, 1024)]:
        a, b = to_tensor(rng.random((m, k), "float32")), to_tensor(rng.random((k, n), "float32"))
        matmul(a, b)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            matmul(a, b)
            times.append(time.perf_counter() - started)
        best = max(best, 2 * m * k * n / min(times) / 1e9)
    return best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def run_worker(args, side: str) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--shapes", args.shapes, "--data-dir", str(args.data_dir),
               "--windows", str(args.windows), "--steps", str(args.steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: the {side} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=SHAPES, default="ptb-small")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TEXTSEQ_DATA", "../shared/data")))
    parser.add_argument("--pairs", type=int, default=3, help="alternating textseq/PyTorch runs (default 3)")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per run; the median counts")
    parser.add_argument("--steps", type=int, default=10, help="training steps per window")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = SHAPES[args.shapes]
    batches = corpus_batches(args.data_dir, shape, count=40)

    if args.worker:
        if args.worker == "torch":
            result = torch_worker(shape, batches, args.windows, args.steps)
        else:
            result = textseq_worker(shape, batches, args.windows, args.steps, jit=args.worker.endswith("xla"),
                                    plain_keras=args.worker.startswith("keras"))
        print(json.dumps(result))
        return

    sides = SIDES
    results = {side: [] for side in sides}
    for pair in range(args.pairs):
        for side in sides:
            results[side].append(run_worker(args, side))
            print(f"run {pair + 1}/{args.pairs} {side:12s} {results[side][-1]['tokens_per_s']:8.0f} tokens/s",
                  file=sys.stderr)
    flops = flops_per_token(shape)
    matmul = max(r["matmul_gflops"] for side in sides for r in results[side])
    median = {side: statistics.median(r["tokens_per_s"] for r in results[side]) for side in sides}
    ratios = {side: statistics.median(t["tokens_per_s"] / p["tokens_per_s"]
                                      for t, p in zip(results[side], results["torch"])) for side in sides}
    cpu = cpu_model()
    print(f"{args.shapes} on {cpu}, {os.cpu_count()} cores; {flops / 1e6:.1f} MFLOP per training token; "
          f"best float32 matmul {matmul:.0f} GFLOP/s")
    print(f"{'':22s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of matmul':>9s} {'vs PyTorch':>10s}")
    names = {"textseq": "textseq (graph)", "textseq-xla": "textseq (XLA)", "keras": "Keras LSTM (graph)",
             "keras-xla": "Keras LSTM (XLA)", "torch": "PyTorch nn.LSTM"}
    for side in sides:
        achieved = median[side] * flops / 1e9
        print(f"{names[side]:22s} {median[side]:9.0f} {achieved:8.1f} {achieved / matmul:9.0%} {ratios[side]:9.2f}x")
    best = max(("textseq", "textseq-xla"), key=lambda side: median[side])
    print(json.dumps({
        "shapes": args.shapes, "textseq_tokens_per_s": round(median[best]), "textseq_mode": best,
        "torch_tokens_per_s": round(median["torch"]), "ratio": round(ratios[best], 3),
        "textseq_graph_ratio": round(ratios["textseq"], 3), "textseq_xla_ratio": round(ratios["textseq-xla"], 3),
        "keras_ratio": round(max(ratios["keras"], ratios["keras-xla"]), 3),
        "achieved_gflops": round(median[best] * flops / 1e9, 1), "matmul_gflops": round(matmul, 1),
        "matmul_fraction": round(median[best] * flops / 1e9 / matmul, 3), "cpu": cpu,
    }))


if __name__ == "__main__":
    main()
