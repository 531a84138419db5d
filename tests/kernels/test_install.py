"""A model with the speed path installed computes what the pure Keras model computes: logits, final
states, the loss and every gradient, in a training step of one shape (the XLA loops and fused scores)
and of varying shapes (XLA loops over padded arrays in a long run, the graph loops in a short one);
and the core never imports TensorFlow."""

import ast
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from textseq import kernels
from textseq.metrics import token_loss
from textseq.models import build_seq2seq
from textseq.recipe import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
SOURCE = np.array([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0], [4, 4, 4, 4, 4]], "int32")
TARGET_IN = np.array([[2, 5, 6, 0], [2, 7, 0, 0], [2, 8, 8, 9]], "int32")
TARGET_OUT = np.array([[5, 6, 3, 0], [7, 3, 0, 0], [8, 8, 9, 3]], "int32")


def model_pair(cell: str, planned_steps: int | None = None):
    """The same model twice, with the same weights: pure Keras, and with the kernels installed."""
    config = ModelConfig(cell=cell, units=8, embedding_dim=6, attention_units=5, layers=2)
    pure, fast = (build_seq2seq(config, 11, 12) for _ in range(2))
    kernels.install(fast, planned_steps)
    inputs = {"source": SOURCE, "target_in": TARGET_IN}
    pure(inputs), fast(inputs)
    fast.set_weights(pure.get_weights())
    return pure, fast


def step(model, loss, fixed_shapes: bool):
    dims = (3, None) if not fixed_shapes else None
    signature = [tf.TensorSpec(dims or SOURCE.shape, tf.int32), tf.TensorSpec(dims or TARGET_IN.shape, tf.int32),
                 tf.TensorSpec(dims or TARGET_OUT.shape, tf.int32)]

    @tf.function(input_signature=signature)
    def run(source, target_in, target_out):
        with tf.GradientTape() as tape:
            logits, _, states = model.logits_and_attention(source, target_in, training=True, return_states=True)
            value = loss(target_out, logits)
        return logits, states, value, tape.gradient(value, model.trainable_variables)

    return run(SOURCE, TARGET_IN, TARGET_OUT)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("fixed_shapes,planned_steps", [(True, None), (False, None), (False, 10)],
                         ids=["xla", "xla-padded", "graph"])
def test_the_speed_path_equals_the_keras_path(cell, fixed_shapes, planned_steps):
    pure, fast = model_pair(cell, planned_steps)
    expected = step(pure, token_loss(0.1), fixed_shapes)
    got = step(fast, kernels.token_loss(0.1), fixed_shapes)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5, err_msg="logits")
    for state, expected_state in zip(tf.nest.flatten(got[1]), tf.nest.flatten(expected[1])):
        np.testing.assert_allclose(state, expected_state, rtol=1e-4, atol=1e-5, err_msg="final states")
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, err_msg="loss")
    names = [v.path for v in pure.trainable_variables]
    assert len(got[3]) == len(expected[3]) == len(names)
    for name, gradient, expected_gradient in zip(names, got[3], expected[3]):
        np.testing.assert_allclose(tf.convert_to_tensor(gradient), tf.convert_to_tensor(expected_gradient),
                                   rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_keras_loss_equals_the_kernel_loss_and_its_gradient(smoothing):
    logits = tf.constant(np.random.default_rng(0).normal(size=(3, 4, 12)).astype("float32") * 3)
    values = []
    for loss in (token_loss(smoothing), kernels.token_loss(smoothing)):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(TARGET_OUT, logits)
        values.append((value, tape.gradient(value, logits)))
    np.testing.assert_allclose(values[0][0], values[1][0], rtol=1e-6)
    np.testing.assert_allclose(values[0][1], values[1][1], rtol=1e-5, atol=1e-7)
    assert not np.any(values[0][1].numpy()[1, 2:])  # padded tokens get no gradient


def textseq_imports(path: Path) -> set[str]:
    """The modules a file imports (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_the_core_imports_no_tensorflow():
    core = [*sorted((ROOT / "textseq" / "models").glob("*.py")), *sorted((ROOT / "textseq" / "layers").glob("*.py")),
            ROOT / "textseq" / "decoding.py", ROOT / "textseq" / "metrics.py"]
    seen, queue = set(), list(core)
    while queue:  # follow textseq's own imports: the core may not reach TensorFlow through them either
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        imported = textseq_imports(path)
        offending = {name for name in imported if name.split(".")[0] == "tensorflow"
                     or name.startswith("textseq.kernels")}
        assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"
        queue += [file for name in imported if name.startswith("textseq") and (file := module_file(name))]
    assert ROOT / "textseq" / "recipe" / "sections.py" in seen  # the walk did follow textseq's imports


def test_a_run_without_the_speed_path_trains_and_translates(tmp_path):
    from conftest import TINY

    from textseq.inference import Translator
    from textseq.recipe import recipe_from_dict
    from textseq.training import train

    run = tmp_path / "run"
    summary = train(recipe_from_dict(TINY, ["train.epochs=2", "train.kernels=keras"]), run, verbose=0)
    assert summary["epochs_done"] == 2
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    losses = [float(row[header.index("loss")]) for row in
              (line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:])]
    assert losses[1] < losses[0]  # it learns
    translator = Translator.from_run(run)
    assert keras.backend.backend() == "tensorflow"  # the speed path would apply, but the recipe says keras
    assert not any("inner_loop" in vars(layer) for layer in kernels.recurrent_layers(translator.model))
    assert translator.model.decoder.attention.score_function.__module__ == "textseq.layers.attention"
    assert isinstance(translator.translate(["3rd of March 1998"])[0], str)
