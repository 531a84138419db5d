"""Shared fixtures: a tiny dates recipe and one tiny trained run for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Small enough to train an epoch in seconds on 2 cores; the full recipe is a benchmark, not a test.
TINY = {
    "data": {"train_examples": 400, "validation_examples": 64, "test_examples": 64, "max_source_length": 40,
             "max_target_length": 12},
    "vocab": {"level": "char"},
    "model": {"embedding_dim": 8, "units": 16, "attention_units": 8},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.01},
    "decode": {"max_length": 12},
}


# Modules whose module-scoped fixtures train, export or start servers for seconds: their tests share
# one worker (pytest-xdist's loadgroup), so each fixture is built once. Spread over workers, a module
# fixture is built on each, and again each time a worker comes back to the module from another one.
SHARED_FIXTURES = {"test_distribute.py", "test_export.py", "test_faults.py", "test_litert.py", "test_litert_translator.py",
                   "test_selection.py", "test_serve.py", "test_subword_runs.py"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """The slow tests first: pytest-xdist hands tests out in collection order, so a slow test that
    came last would leave the other workers idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if item.path.name in SHARED_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture
def tiny_recipe_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny dates run trained for 2 epochs, shared by the tests that only read it."""
    from textseq.recipe import recipe_from_dict
    from textseq.training import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(recipe_from_dict(TINY, ["train.epochs=2"]), run, verbose=0)
    return run


SHARED = ROOT.parent / "shared" / "data"  # the corpus mirror beside the checkout (see its README)
CAPTIONS = SHARED / "multi30k" / "tok" / "train.lc.norm.tok.en"


def tiny_lm(tmp: Path) -> dict:
    """A tiny word-level language model over 3,000 Multi30k captions, in files under `tmp`."""
    lines = CAPTIONS.read_text(encoding="utf-8").splitlines()
    (tmp / "train.txt").write_text("\n".join(lines[:3000]) + "\n", encoding="utf-8")
    (tmp / "valid.txt").write_text("\n".join(lines[3000:3100]) + "\n", encoding="utf-8")
    (tmp / "test.txt").write_text("\n\n".join(lines[3100:3140]) + "\n", encoding="utf-8")  # blank lines: no tokens
    return {
        "task": "language_model",
        "data": {"source": "text", "dir": str(tmp), "train": "train.txt", "validation": "valid.txt",
                 "test": "test.txt", "context": 6, "continuation": 5},
        "vocab": {"level": "word", "min_count": 3},
        "model": {"embedding_dim": 16, "units": 32, "attention_units": 16},
        "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.01},
    }


def trained(raw: dict, run: Path) -> Path:
    """`run`, trained from the recipe `raw` (plain data, as YAML gives it)."""
    from textseq.recipe import recipe_from_dict
    from textseq.training import train

    train(recipe_from_dict(raw), run, verbose=0)
    return run


def run_script_without_textseq(script: Path, *args: str) -> dict:
    """Runs `script` in a fresh Python from its own (empty) directory, so the checkout's textseq/ is
    not importable by accident, and returns the JSON object it prints last."""
    import json
    import subprocess
    import sys

    process = subprocess.run([sys.executable, str(script), *args], cwd=script.parent, capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}, timeout=300)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> Path:
    """A tiny word-level language-model run, trained for one epoch, shared by the tests that only read it."""
    if not CAPTIONS.exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    tmp = tmp_path_factory.mktemp("lm")
    return trained(tiny_lm(tmp), tmp / "run")


SHARD_WORDS = "a b c d e f g h i j k l m n o p".split()


def write_lines(path: Path, lines: list[str], packed: bool = False) -> None:
    import gzip

    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if packed else data)


def make_shards(root: Path, shards: int = 4, pairs: int = 50, packed: bool = True) -> None:
    """Parallel shards part-K.de(.gz) / part-K.en(.gz) under `root`: source "sK_i w..", target "tK_i"
    and the same words reversed, 1 to 8 words, seeded."""
    import numpy as np

    rng = np.random.default_rng(0)
    for k in range(shards):
        sources, targets = [], []
        for i in range(pairs):
            words = list(rng.choice(SHARD_WORDS, size=int(rng.integers(1, 9))))
            sources.append(" ".join([f"s{k}_{i}", *words]))
            targets.append(" ".join([f"t{k}_{i}", *words[::-1]]))
        suffix = ".gz" if packed else ""
        write_lines(root / f"part-{k}.de{suffix}", sources, packed)
        write_lines(root / f"part-{k}.en{suffix}", targets, packed)

