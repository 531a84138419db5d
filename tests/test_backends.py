"""textseq's layers, models, loss and decoding are Keras 3 code for any backend: under JAX a tiny
dates model builds, learns with `model.fit`, and decodes greedy and beam (tests/kernels/test_install.py
checks that none of that code imports TensorFlow; Keras itself loads it where installed, to
serialize layers). Strategies, tf.data, export and the CLI stay on TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

TRAIN_AND_DECODE = textwrap.dedent("""
    import json
    import keras
    import numpy as np
    from keras import ops

    from textseq.constants import BOS, EOS, PAD, RESERVED
    from textseq.data.synthetic import dates_examples
    from textseq.decoding import beam_search, greedy_search
    from textseq.metrics import TokenAccuracy, token_loss
    from textseq.models import build_seq2seq
    from textseq.recipe import ModelConfig

    pairs = dates_examples("train", 512, seed=0)
    chars = sorted({c for pair in pairs for text in pair for c in text})
    ids = {c: i for i, c in enumerate([*RESERVED, *chars])}
    def encode(texts, length, start=False, end=False):
        rows = [[BOS] * start + [ids[c] for c in text] + [EOS] * end for text in texts]
        return np.array([row[:length] + [PAD] * (length - len(row[:length])) for row in rows], "int32")
    source = encode([s for s, _ in pairs], 40)
    target_in, target_out = encode([t for _, t in pairs], 11, start=True), encode([t for _, t in pairs], 11, end=True)

    keras.utils.set_random_seed(0)
    model = build_seq2seq(ModelConfig(units=32, embedding_dim=16, attention_units=16), len(ids), len(ids))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=token_loss(0.1), metrics=[TokenAccuracy()])
    history = model.fit({"source": source, "target_in": target_in}, target_out, batch_size=32, epochs=10,
                        verbose=0).history
    greedy, greedy_scores, weights = greedy_search(model, source[:8], 11)
    beam, beam_scores, _ = beam_search(model, source[:8], 11, beam_size=3, n_best=2)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "losses": [float(v) for v in history["loss"]], "accuracy": float(history["token_accuracy"][-1]),
        "greedy": ops.convert_to_numpy(greedy).shape, "beam": ops.convert_to_numpy(beam).shape,
        "weights_sum": float(ops.convert_to_numpy(ops.sum(weights[:, 0, 0]))),
        "beam_first_equals_greedy_or_better": bool(np.all(ops.convert_to_numpy(beam_scores)[:, 0] >=
                                                          ops.convert_to_numpy(greedy_scores)[:, 0] - 1e-4)),
    }))
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (the test extra has it)")
def test_the_model_trains_and_decodes_under_jax(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    process = subprocess.run([sys.executable, "-c", TRAIN_AND_DECODE], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["losses"][-1] < 0.7 * result["losses"][0] and result["accuracy"] > 0.4, result  # it learns
    assert result["greedy"] == [8, 1, 11] and result["beam"] == [8, 2, 11]
    assert abs(result["weights_sum"] - 8.0) < 1e-3  # each of the 8 rows' attention sums to 1
    assert result["beam_first_equals_greedy_or_better"]


def test_the_cli_under_another_backend_says_it_needs_tensorflow(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    process = subprocess.run([sys.executable, "-m", "textseq", "check", str(ROOT / "recipes" / "dates.yaml")],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert process.returncode == 2, process.stderr[-2000:]
    assert process.stderr.strip() == (
        "Error: KERAS_BACKEND=jax: the textseq command runs on TensorFlow (its data pipelines, strategies "
        "and export); unset KERAS_BACKEND or set it to tensorflow. textseq's layers, models and decoding "
        "work under any Keras backend from Python")
