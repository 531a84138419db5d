import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from textseq.distribute import describe, make_strategy, precision, resolve_precision
from textseq.errors import UserError
from textseq.recipe import TrainConfig, recipe_from_dict
from textseq.training import train

from conftest import ROOT, TINY
from test_steps import metrics


def test_auto_picks_the_default_strategy_here(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert describe(make_strategy(TrainConfig(strategy="auto"))) == "default strategy, 1 replica"


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx2 avx512f avx512_bf16", "mixed_bfloat16"),  # AMD Zen 4, Intel Cooper Lake
    ("fpu sse2 avx2 avx512f amx_bf16 amx_tile", "mixed_bfloat16"),  # Intel Sapphire Rapids
    ("fpu sse2 avx2 avx512f", "float32"),  # AVX-512 without bf16: emulated bf16 is slower than float32
    (None, "float32"),  # no /proc/cpuinfo (macOS, Windows)
])
def test_auto_precision_uses_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr("tensorflow.config.list_physical_devices", lambda kind=None: [])
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert resolve_precision("auto", cpuinfo=str(cpuinfo)) == expected
    assert resolve_precision("mixed_float16", cpuinfo=str(cpuinfo)) == "mixed_float16"  # a named policy stays


def test_tpu_without_a_tpu_says_what_was_looked_for(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(UserError, match=r"found no TPU: looked for .*/dev/accel.*TPU_NAME.*set train.tpu"):
        make_strategy(TrainConfig(strategy="tpu"))


def test_devices_need_the_mirrored_strategy():
    with pytest.raises(UserError, match="train.devices applies to train.strategy: mirrored"):
        recipe_from_dict({}, ["train.devices=/cpu:0,/cpu:1"])


def test_mixed_bfloat16_trains_to_a_finite_loss_with_float32_logits(tmp_path):
    summary = train(recipe_from_dict(TINY, ["train.precision=mixed_bfloat16"]), tmp_path / "bf16", verbose=0)
    assert np.isfinite(summary["last_metrics"]["loss"])
    with precision("mixed_bfloat16"):
        from textseq.models import build_seq2seq
        from textseq.recipe import ModelConfig
        model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 10, 10)
    logits = model({"source": np.array([[4, 5]]), "target_in": np.array([[2, 6]])})
    assert logits.dtype == "float32" and model.decoder.combine.compute_dtype == "bfloat16"
    assert model.decoder.logits.compute_dtype == "bfloat16"  # the output product uses the bf16 units
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


MIRRORED = """
import sys
from textseq.cli import cli
for recipe, out in zip(sys.argv[1::2], sys.argv[2::2]):
    cli.main(["train", recipe, "--out", out, "--set", "train.strategy=mirrored", "--set", "train.devices=/cpu:0,/cpu:1"],
             prog_name="textseq", standalone_mode=False)
"""


@pytest.fixture(scope="module")
def mirrored(trained_run, lm_run, tmp_path_factory) -> dict[str, dict[str, float]]:
    """The session's tiny translation run and language-model run, each trained anew with `textseq
    train` under the mirrored strategy over two logical CPUs, one after the other in a process of
    their own (logical devices are set before TensorFlow starts); their last metrics by name."""
    root = tmp_path_factory.mktemp("mirrored")
    runs = {"translation": trained_run, "language model": lm_run}
    args = [str(item) for name, run in runs.items() for item in (run / "recipe.yaml", root / name)]
    process = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stderr.count(": mirrored strategy, 2 replicas") == 2, process.stderr[-3000:]  # one start line a run
    return {name: last_metrics(root / name) for name in runs}


def last_metrics(run) -> dict[str, float]:
    return {key: float(value) for key, value in metrics(run)[-1].items()}


@pytest.mark.slow
def test_a_language_model_carries_each_replicas_own_states(mirrored, lm_run):
    """Each replica keeps the states of its own rows: training and validation with carried states
    under two replicas give one device's losses (a mix-up of rows between replicas would not).
    One epoch crosses every window border of the LM's rows."""
    single = last_metrics(lm_run)
    for key in ("loss", "val_loss"):
        assert mirrored["language model"][key] == pytest.approx(single[key], rel=2e-3), (mirrored, single)


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device(mirrored, trained_run):
    single = last_metrics(trained_run)
    # Every piece of a global batch is padded to the same length, so the replicas' averaged losses
    # and gradients equal one device's up to the order of float32 sums. Measured here after the 2
    # epochs of the tiny run: 2.3806734 vs 2.3806732 (the LM above: 3.9090087 vs 3.9090078, its
    # validation loss 7e-5 apart). 0.2% leaves room for other CPUs' rounding while still catching a
    # wrong batch split or gradient scaling, which moves the loss by whole percents.
    for key in ("loss", "val_loss"):
        assert mirrored["translation"][key] == pytest.approx(single[key], rel=2e-3), (mirrored, single)


def test_multi_worker_without_tf_config_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match=r"multi_worker reads the cluster from the TF_CONFIG .* not set; .*\"task\""):
        make_strategy(TrainConfig(strategy="multi_worker"))


def test_multi_worker_with_a_tf_config_that_misses_this_task(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(UserError, match=r"TF_CONFIG: .* does not name this task in its cluster \(IndexError"):
        make_strategy(TrainConfig(strategy="multi_worker"))


def test_check_reads_the_cluster_without_contacting_it(monkeypatch):
    from textseq.checking import check
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    summary = check(recipe_from_dict(TINY, ["train.strategy=multi_worker"]))
    assert summary["workers"] == 2 and summary["this_worker"] == "worker 1" and summary["task"] == "translate"


def test_a_global_batch_larger_than_the_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"train.batch_size: 1000 is more than the 400 training examples"):
        train(recipe_from_dict(TINY, ["train.batch_size=1000"]), tmp_path / "run", verbose=0)
