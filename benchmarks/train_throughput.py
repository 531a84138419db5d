"""Training throughput of textseq beside a hand-written PyTorch loop, same shapes, same batches.

    python benchmarks/train_throughput.py --shapes ptb-small --data-dir ../shared/data
    python benchmarks/train_throughput.py --shapes multi30k --data-dir ../shared/data

`ptb-small` is the classic small Penn Treebank language model (Zaremba et al. 2014): embedding 200,
2 x LSTM(200), a full softmax over 10,000 words, batch 20, 35 steps of truncated back-propagation
with the state carried across windows, SGD with gradient clipping at norm 5. The text is the
English side of Multi30k (`multi30k/tok/train.lc.norm.tok.en` under --data-dir, the same local
mirror `textseq data fetch multi30k --from` takes), mapped into 10,000 ids (padding, `<unk>`,
`<eos>` at line ends, and the 9,997 most frequent words), as PTB is prepared.

Each side runs in its own process (TensorFlow's and PyTorch's thread pools would compete), the
sides alternating --pairs times; each process times --windows windows of --steps training steps after
warm-up and reports the median, then the best float32 matrix-multiply rate it reaches. The table gives
tokens/s, the achieved FLOP/s (3x the forward multiply-adds per token, the usual count for training),
its share of the matmul rate measured in the same process (median over runs) and of the best one
measured in the whole invocation. The last line is one JSON object.

For ptb-small, textseq's speed path (`textseq.kernels`: the hoisted recurrent loops installed into
Keras' LSTM layers, the loss and the optimizer) and output layer (`textseq.layers.Dense`), what
every textseq model trains with, run in a plain LSTM language model trained by Keras, next to
`torch.nn.LSTM` in the loop most PyTorch tutorials write.

`multi30k` is the whole model and pipeline of `recipes/multi30k-de-en.yaml`: textseq's
encoder-decoder (bidirectional LSTM encoder 2 x 256, LSTM(512) decoder, additive attention 256,
tanh combination layer, label-smoothed loss, Adam with per-weight gradient clipping, dropout 0.3)
trained on the batches textseq's pipeline makes from Multi30k (batch 64, grouped by length), next
to the same model written in PyTorch (packed bidirectional encoder, the same attention) trained on
the very same batches. Tokens/s counts real target tokens; the table also gives the padding the
pipeline adds over a whole epoch. Warm-up runs every batch once (textseq compiles its recurrent
loops once per sequence length, as a real run does in its first epoch).

`--precision bfloat16` adds both sides in bfloat16 beside float32: textseq under Keras'
`mixed_bfloat16` policy (what `train.precision: auto` picks on CPUs with AMX), PyTorch under
`torch.autocast("cpu", dtype=torch.bfloat16)`. Every side trains the same batches for the same
number of steps from its framework's same initial weights, and reports its mean loss over the last
timed window, so a step that is faster but learns worse shows. The header says whether the CPU has
bfloat16 units (AMX or AVX512_BF16); without them both frameworks emulate bfloat16 and its timings
say little.

PyTorch is the `bench` extra (`pip install torch==2.13.0` installs the CPU build).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import bfloat16_units, cpu_model  # noqa: E402

# PyTorch runs right after textseq: the machines drift by 10-20% over minutes, and the ratio pairs them.
SIDES = {"ptb-small": ["textseq", "torch", "textseq-xla", "keras", "keras-xla"], "multi30k": ["textseq", "torch"]}
BF16_SIDES = ["textseq-bf16", "torch-bf16"]  # added by --precision bfloat16 (XLA's loops are float32 only)
SHAPES = {
    "ptb-small": dict(vocab=10_000, embedding=200, units=200, layers=2, batch=20, steps=35, learning_rate=1.0,
                      clipnorm=5.0),
    "multi30k": dict(recipe="recipes/multi30k-de-en.yaml", batches=40),
}
MULTI30K_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "multi30k-de-en.yaml"


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


def time_windows(step, batches: list, windows: int, steps: int, warm_up: int = 3, tokens=None) -> dict:
    """Median tokens/s over `windows` windows of `steps` calls of `step(*batch)` (which returns the
    batch's loss), after `warm_up` calls, and the mean loss of the last window. `tokens(batch)`
    counts a batch's tokens (default: the size of its last array)."""
    tokens = tokens or (lambda batch: batch[-1].size)
    for i in range(warm_up):
        step(*batches[i % len(batches)])
    rates, i = [], warm_up
    for _ in range(windows):
        count, losses, started = 0, [], time.perf_counter()
        for _ in range(steps):
            batch = batches[i % len(batches)]
            losses.append(step(*batch))
            count += tokens(batch)
            i += 1
        rates.append(count / (time.perf_counter() - started))
    return {"tokens_per_s": statistics.median(rates), "loss": float(np.mean(losses))}


def ptb_batches(batches: np.ndarray) -> list:
    return [(batches[0, i], batches[1, i]) for i in range(batches.shape[1])]


def textseq_worker(shape: dict, batches: np.ndarray, windows: int, steps: int, jit: bool, plain_keras: bool,
                   bf16: bool = False) -> dict:
    """textseq's LSTM layers and token loss; with `plain_keras`, Keras' own (the reference before
    textseq's); with `bf16`, under the mixed_bfloat16 policy."""
    import keras
    import tensorflow as tf

    from textseq.kernels.loss import TokenLoss
    from textseq.kernels.optimizers import SGD
    from textseq.kernels.recurrent import install
    from textseq.layers import Dense

    if plain_keras:
        Dense, SGD = keras.layers.Dense, keras.optimizers.SGD  # noqa: N806

    keras.utils.set_random_seed(0)
    if bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    inputs = keras.Input(batch_shape=(shape["batch"], shape["steps"]), dtype="int32")
    x = keras.layers.Embedding(shape["vocab"], shape["embedding"])(inputs)
    for _ in range(shape["layers"]):
        # `stateful`: carries the state across windows.
        lstm = keras.layers.LSTM(shape["units"], return_sequences=True, stateful=True, zero_output_for_mask=True)
        if not plain_keras:
            install(lstm)
        x = lstm(x)
    logits = Dense(shape["vocab"])(x)
    model = keras.Model(inputs, logits)
    model.compile(optimizer=SGD(shape["learning_rate"], global_clipnorm=shape["clipnorm"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) if plain_keras else TokenLoss(),
                  jit_compile=jit)
    timed = time_windows(lambda x, y: float(model.train_on_batch(x, y)), ptb_batches(batches), windows, steps)
    return {**timed, "matmul_gflops": matmul_rate(tf.matmul, tf.constant)}


def torch_worker(shape: dict, batches: np.ndarray, windows: int, steps: int, bf16: bool = False) -> dict:
    import contextlib

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
        with autocast():
            logits, state = model(torch.from_numpy(x), state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, shape["vocab"]).float(),
                                                     torch.from_numpy(y).reshape(-1))
        state = tuple(s.detach() for s in state)  # truncated back-propagation, as PTB examples do
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), shape["clipnorm"])
        optimizer.step()
        return loss.item()

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    timed = time_windows(step, ptb_batches(batches), windows, steps)
    return {**timed, "matmul_gflops": matmul_rate(lambda a, b: torch.mm(a, b), torch.from_numpy)}


def multi30k_recipe(data_dir: Path):
    from textseq.recipe import load_recipe

    return load_recipe(MULTI30K_RECIPE, [f"data.dir={data_dir.resolve()}"])


def multi30k_batches(data_dir: Path, count: int, path: Path) -> dict:
    """Saves `count` training batches of textseq's pipeline to `path` (.npz) and returns the vocabulary
    sizes and the padding of a whole epoch: padded steps over real tokens, sources and targets."""
    import tensorflow as tf

    from textseq.data.tasks import TaskData

    recipe = multi30k_recipe(data_dir)
    data = TaskData.load(recipe)
    epoch = tf.Variable(0, dtype=tf.int64)
    dataset = data.dataset("train", recipe.train.batch_size, shuffle_seed=recipe.train.seed, epoch=epoch)
    arrays, slots, real = {}, np.zeros(2), np.zeros(2)
    for i, (inputs, target_out) in enumerate(dataset.as_numpy_iterator()):
        for j, ids in enumerate((inputs["source"], target_out)):
            slots[j] += ids.size
            real[j] += np.count_nonzero(ids)
        if i < count:
            arrays.update({f"source_{i}": inputs["source"], f"target_in_{i}": inputs["target_in"],
                           f"target_out_{i}": target_out})
    np.savez(path, **arrays)
    return {"source_vocab": data.source.vocab.size, "target_vocab": data.target.vocab.size,
            "source_padding": slots[0] / real[0] - 1, "target_padding": slots[1] / real[1] - 1,
            "padding": slots.sum() / real.sum() - 1}


def load_multi30k_batches(path: Path) -> list:
    arrays = np.load(path)
    count = len([name for name in arrays.files if name.startswith("source_")])
    return [(arrays[f"source_{i}"], arrays[f"target_in_{i}"], arrays[f"target_out_{i}"]) for i in range(count)]


def real_target_tokens(batch) -> int:
    return int(np.count_nonzero(batch[2]))


def textseq_seq2seq_worker(data_dir: Path, sizes: dict, batches: list, windows: int, steps: int,
                           bf16: bool = False) -> dict:
    """The recipe's model built and compiled as `textseq train` does (no accuracy metric: the PyTorch
    loop computes none), trained by `train_on_batch` on the saved batches; with `bf16`, under the
    mixed_bfloat16 policy."""
    import keras

    from textseq import kernels
    from textseq.kernels.loss import TokenLoss
    from textseq.models.seq2seq import build_seq2seq
    from textseq.optimization import make_optimizer

    recipe = multi30k_recipe(data_dir)
    keras.utils.set_random_seed(0)
    if bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_seq2seq(recipe.model, sizes["source_vocab"], sizes["target_vocab"])
    kernels.install(model)  # as `textseq train` does with train.kernels: auto
    model.compile(optimizer=make_optimizer(recipe.train, 1), loss=TokenLoss(recipe.train.label_smoothing))
    step = lambda source, target_in, target_out: float(model.train_on_batch(  # noqa: E731
        {"source": source, "target_in": target_in}, target_out))
    return time_windows(step, batches, windows, steps, warm_up=len(batches), tokens=real_target_tokens)


def torch_seq2seq_worker(data_dir: Path, sizes: dict, batches: list, windows: int, steps: int,
                         bf16: bool = False) -> dict:
    """The same encoder-decoder in PyTorch, written as its tutorials write one; with `bf16`, under
    CPU autocast to bfloat16."""
    import contextlib

    import torch
    from torch import nn

    config = multi30k_recipe(data_dir)
    model_config, train_config = config.model, config.train
    embedding, units, attention_units = model_config.embedding_dim, model_config.units, model_config.attention_units
    torch.manual_seed(0)

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.source_embedding = nn.Embedding(sizes["source_vocab"], embedding, padding_idx=0)
            self.encoder = nn.LSTM(embedding, units // 2, batch_first=True, bidirectional=True)
            self.target_embedding = nn.Embedding(sizes["target_vocab"], embedding, padding_idx=0)
            self.decoder = nn.LSTM(embedding, units, batch_first=True)
            self.query = nn.Linear(units, attention_units, bias=False)
            self.key = nn.Linear(units, attention_units)
            self.score = nn.Linear(attention_units, 1, bias=False)
            self.combine = nn.Linear(2 * units, units)
            self.logits = nn.Linear(units, sizes["target_vocab"])
            self.drop = nn.Dropout(model_config.dropout)

        def forward(self, source, target_in):
            lengths = (source != 0).sum(1)
            packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.source_embedding(source)), lengths.cpu(),
                                                       batch_first=True, enforce_sorted=False)
            packed_outputs, (h, c) = self.encoder(packed)
            keys, _ = nn.utils.rnn.pad_packed_sequence(packed_outputs, batch_first=True,
                                                       total_length=source.shape[1])
            keys = self.drop(keys)
            state = (torch.cat([h[0], h[1]], -1)[None], torch.cat([c[0], c[1]], -1)[None])
            x, _ = self.decoder(self.drop(self.target_embedding(target_in)), state)
            x = self.drop(x)
            hidden = torch.tanh(self.query(x)[:, :, None] + self.key(keys)[:, None])
            scores = self.score(hidden)[..., 0].masked_fill((source == 0)[:, None], -1e9)
            context = torch.softmax(scores, -1) @ keys
            return self.logits(self.drop(torch.tanh(self.combine(torch.cat([x, context], -1)))))

    model = Seq2Seq()
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)

    def step(source, target_in, target_out):
        optimizer.zero_grad()
        with autocast():
            logits = model(torch.from_numpy(source).long(), torch.from_numpy(target_in).long())
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                               torch.from_numpy(target_out).long().reshape(-1), ignore_index=0,
                                               label_smoothing=train_config.label_smoothing)
        loss.backward()
        for parameter in model.parameters():  # Keras' clipnorm clips each weight's gradient on its own
            nn.utils.clip_grad_norm_([parameter], train_config.clipnorm)
        optimizer.step()
        return loss.item()

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    return time_windows(step, batches, windows, steps, warm_up=len(batches), tokens=real_target_tokens)


def matmul_rate(matmul, to_tensor) -> float:
    """The best float32 matrix-multiply rate (GFLOP/s) over square and model-shaped products.

    Eager CPU ops return when done, so the product is timed without copying it out (a copy cost
    TensorFlow ~5% of the rate, which flattered textseq's share of it)."""
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


def run_worker(args, side: str, extra: list[str] = ()) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--shapes", args.shapes, "--data-dir", str(args.data_dir),
               "--windows", str(args.windows), "--steps", str(args.steps), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: the {side} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(args, sides: list[str], extra: list[str] = ()) -> dict:
    """Each side's results over --pairs rounds, the sides alternating within each round."""
    results = {side: [] for side in sides}
    for pair in range(args.pairs):
        for side in sides:
            results[side].append(run_worker(args, side, extra))
            print(f"run {pair + 1}/{args.pairs} {side:12s} {results[side][-1]['tokens_per_s']:8.0f} tokens/s",
                  file=sys.stderr)
    return results


def paired_ratios(results: dict, reference: str = "torch") -> dict:
    """Per side, the median over rounds of its tokens/s over the reference side's in the same round."""
    return {side: statistics.median(t["tokens_per_s"] / p["tokens_per_s"] for t, p in zip(runs, results[reference]))
            for side, runs in results.items()}


def sides_for(args) -> list[str]:
    return SIDES[args.shapes] + (BF16_SIDES if args.precision == "bfloat16" else [])


def bfloat16_summary(results: dict) -> dict:
    """With --precision bfloat16: each framework's bfloat16 speed over its float32 speed, textseq's
    bfloat16 over PyTorch's, and every side's loss after the same steps."""
    if "torch-bf16" not in results:
        return {}
    over_torch = paired_ratios(results, "torch-bf16")
    losses = {side: round(statistics.median(r["loss"] for r in runs), 4) for side, runs in results.items()}
    return {"bf16_units": bfloat16_units(), "bf16_ratio": round(over_torch["textseq-bf16"], 3),
            "textseq_bf16_over_float32": round(paired_ratios(results, "textseq")["textseq-bf16"], 3),
            "torch_bf16_over_float32": round(paired_ratios(results, "torch")["torch-bf16"], 3), "losses": losses}


def print_bfloat16(summary: dict) -> None:
    if not summary:
        return
    units = "has" if summary["bf16_units"] else "has NO"
    print(f"bfloat16 (this CPU {units} bfloat16 units): textseq {summary['bf16_ratio']:.2f}x PyTorch; "
          f"over its own float32 step textseq {summary['textseq_bf16_over_float32']:.2f}x, "
          f"PyTorch {summary['torch_bf16_over_float32']:.2f}x")
    print("loss over the last timed window, after the same steps: " +
          ", ".join(f"{side} {loss:.4f}" for side, loss in summary["losses"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=SHAPES, default="ptb-small")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TEXTSEQ_DATA", "../shared/data")))
    parser.add_argument("--pairs", type=int, default=3, help="alternating textseq/PyTorch runs (default 3)")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per run; the median counts")
    parser.add_argument("--steps", type=int, default=10, help="training steps per window")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: also both sides in bfloat16, with their losses (see above)")
    parser.add_argument("--worker", choices=sorted({s for sides in SIDES.values() for s in sides} | set(BF16_SIDES)),
                        help=argparse.SUPPRESS)
    parser.add_argument("--batches-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shapes == "multi30k":
        multi30k_main(args)
    else:
        ptb_main(args)


def multi30k_main(args) -> None:
    shape = SHAPES["multi30k"]
    if args.worker:
        worker = torch_seq2seq_worker if args.worker.startswith("torch") else textseq_seq2seq_worker
        print(json.dumps(worker(args.data_dir, args.sizes, load_multi30k_batches(args.batches_file),
                                args.windows, args.steps, bf16=args.worker.endswith("bf16"))))
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "batches.npz"
        sizes = multi30k_batches(args.data_dir, shape["batches"], path)
        results = alternate(args, sides_for(args), ["--batches-file", str(path), "--sizes", json.dumps(sizes)])
    median = {side: statistics.median(r["tokens_per_s"] for r in runs) for side, runs in results.items()}
    ratios = paired_ratios(results)
    cpu = cpu_model()
    print(f"multi30k-de-en on {cpu}, {os.cpu_count()} cores; vocabularies {sizes['source_vocab']}/"
          f"{sizes['target_vocab']}, batch 64, {shape['batches']} batches of the first epoch")
    print(f"padding over a whole epoch (padded steps / real tokens): sources {sizes['source_padding']:.1%}, "
          f"targets {sizes['target_padding']:.1%}, both {sizes['padding']:.1%}")
    print(f"{'':30s} {'target tokens/s':>15s} {'vs PyTorch':>10s}")
    names = {"textseq": "textseq (recipe's model)", "torch": "PyTorch encoder-decoder",
             "textseq-bf16": "textseq, mixed_bfloat16", "torch-bf16": "PyTorch, bfloat16 autocast"}
    for side in results:
        print(f"{names[side]:30s} {median[side]:15.0f} {ratios[side]:9.2f}x")
    bf16 = bfloat16_summary(results)
    print_bfloat16(bf16)
    print(json.dumps({
        "shapes": "multi30k", "textseq_tokens_per_s": round(median["textseq"]),
        "torch_tokens_per_s": round(median["torch"]), "ratio": round(ratios["textseq"], 3),
        "padding": round(sizes["padding"], 4), "source_padding": round(sizes["source_padding"], 4),
        "target_padding": round(sizes["target_padding"], 4), "cpu": cpu, **bf16,
    }))


def ptb_main(args) -> None:
    shape = SHAPES["ptb-small"]
    batches = corpus_batches(args.data_dir, shape, count=40)
    if args.worker:
        bf16 = args.worker.endswith("bf16")
        if args.worker.startswith("torch"):
            result = torch_worker(shape, batches, args.windows, args.steps, bf16=bf16)
        else:
            result = textseq_worker(shape, batches, args.windows, args.steps, jit=args.worker.endswith("xla"),
                                    plain_keras=args.worker.startswith("keras"), bf16=bf16)
        print(json.dumps(result))
        return

    sides = sides_for(args)
    results = alternate(args, sides)
    flops = flops_per_token(shape)
    best_matmul = max(r["matmul_gflops"] for side in sides for r in results[side])
    median = {side: statistics.median(r["tokens_per_s"] for r in results[side]) for side in sides}
    # Each run's achieved rate over the matmul rate its own process measured right after its windows:
    # the machine drifts by 10-30% within minutes, so a maximum over the whole invocation pairs a slow
    # minute's training with a fast minute's matmul.
    fraction = {side: statistics.median(r["tokens_per_s"] * flops / 1e9 / r["matmul_gflops"] for r in results[side])
                for side in sides}
    ratios = paired_ratios(results)
    cpu = cpu_model()
    print(f"{args.shapes} on {cpu}, {os.cpu_count()} cores; {flops / 1e6:.1f} MFLOP per training token; "
          f"best float32 matmul {best_matmul:.0f} GFLOP/s")
    print(f"{'':22s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of matmul':>9s} {'of best':>8s} {'vs PyTorch':>10s}")
    names = {"textseq": "textseq (graph)", "textseq-xla": "textseq (XLA)", "keras": "Keras LSTM (graph)",
             "keras-xla": "Keras LSTM (XLA)", "torch": "PyTorch nn.LSTM", "textseq-bf16": "textseq bfloat16",
             "torch-bf16": "PyTorch bfloat16"}
    for side in sides:
        achieved = median[side] * flops / 1e9
        print(f"{names[side]:22s} {median[side]:9.0f} {achieved:8.1f} {fraction[side]:9.0%} {achieved / best_matmul:8.0%} "
              f"{ratios[side]:9.2f}x")
    print("of matmul: median over runs of each run's FLOP/s over the matmul rate measured in its own process; "
          "of best: over the best matmul of the whole invocation")
    bf16 = bfloat16_summary(results)
    print_bfloat16(bf16)
    best = max(("textseq", "textseq-xla"), key=lambda side: ratios[side])  # the paired ratio is the comparison
    print(json.dumps({
        "shapes": args.shapes, "textseq_tokens_per_s": round(median[best]), "textseq_mode": best,
        "torch_tokens_per_s": round(median["torch"]), "ratio": round(ratios[best], 3),
        "textseq_graph_ratio": round(ratios["textseq"], 3), "textseq_xla_ratio": round(ratios["textseq-xla"], 3),
        "keras_ratio": round(max(ratios["keras"], ratios["keras-xla"]), 3),
        "achieved_gflops": round(median[best] * flops / 1e9, 1), "matmul_gflops": round(best_matmul, 1),
        "matmul_fraction": round(fraction[best], 3), "torch_matmul_fraction": round(fraction["torch"], 3),
        "matmul_fraction_of_best": round(median[best] * flops / 1e9 / best_matmul, 3), "cpu": cpu, **bf16,
    }))


if __name__ == "__main__":
    main()
