"""The LiteRT export of a language model: its next-word step, run in a process that has only
LiteRT's interpreter and numpy (no TensorFlow, no textseq), against the library."""

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from textseq.cli import cli
from textseq.inference import LanguageModel
from textseq.litert import looped_encoder
from textseq.models.encoder import Encoder

from conftest import ROOT, run_script_without_textseq

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
TEXTS = ["a man is riding a", "", "two dogs play in the snow while " * 4, "zzyzx qqq </s> <s>", "A MAN IN A"]

# What an app does: tokenize with vocab.json, feed <s> then each word, keep the state.
STEP_THROUGH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    exports, texts, stream = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    results = {}
    for name, export in exports.items():
        export = Path(export)
        meta = json.loads((export / "textseq.json").read_text())
        vocab = json.loads((export / meta["vocabulary"]).read_text())
        index = {token: i for i, token in enumerate(vocab)}
        step = Interpreter(model_path=str(export / meta["model"]), num_threads=1).get_signature_runner()

        def start():
            return {name: np.zeros(spec["shape"], spec["dtype"]) for name, spec in meta["inputs"].items()
                    if name != "token_id"}

        def feed(state, token):
            out = step(token_id=np.array([token], np.int32), **state)
            return {name: out[name] for name in meta["state"]}, out

        def ids(text):
            words = (text.lower() if meta["lowercase"] else text).split()
            found = [index.get(word, meta["unknown_id"]) for word in words]
            return [meta["unknown_id"] if i in meta["control_ids"] else i for i in found]

        top = []
        for text in texts:
            state = start()
            for token in [meta["start_id"], *ids(text)]:
                state, out = feed(state, token)
            top.append({"ids": out["top_ids"][0].tolist(), "probabilities": out["top_probabilities"][0].tolist()})
        state, first = start(), []
        for token in [meta["start_id"], *stream[:-1]]:  # the most probable next token at every position
            state, out = feed(state, token)
            first.append(int(out["top_ids"][0, 0]))
        answers = []  # ids outside the vocabulary: what <unk> gives
        for token in (meta["unknown_id"], -1, len(vocab), 2 ** 31 - 1):
            _, out = feed(start(), meta["start_id"])
            answers.append(feed(out and {name: out[name] for name in meta["state"]}, token)[1]["top_ids"][0].tolist())
        results[name] = {"top": top, "first": first, "size": (export / meta["model"]).stat().st_size,
                         "top_k": meta["top_k"], "outside": answers, "range": meta["inputs"]["token_id"]["range"]}
    assert "tensorflow" not in sys.modules and "textseq" not in sys.modules
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def exports(lm_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("litert")
    for quantize in QUANTIZATIONS:
        result = CliRunner().invoke(cli, ["export", str(lm_run), str(root / quantize), "--format", "litert",
                                          "--quantize", quantize])
        assert result.exit_code == 0, result.output
    return {quantize: root / quantize for quantize in QUANTIZATIONS}


@pytest.fixture(scope="module")
def stepped(exports, lm_run, tmp_path_factory):
    """What each model answers in a process without TensorFlow, and the test split it read."""
    model = LanguageModel.from_run(lm_run)
    test_text = (lm_run.parent / "test.txt").read_text()
    stream = [i for line in test_text.splitlines() if line.split() for i in [*model.tokenize(line)[1].tolist(), 3]]
    script = tmp_path_factory.mktemp("client") / "step.py"
    script.write_text(STEP_THROUGH)
    results = run_script_without_textseq(script, json.dumps({q: str(path) for q, path in exports.items()}),
                                         json.dumps(TEXTS), json.dumps(stream))
    return model, results, stream


@pytest.mark.slow
def test_the_float_step_predicts_what_the_library_predicts(stepped):
    model, results, _ = stepped
    expected = model.predict(TEXTS, 10)
    float_model = results["none"]
    assert float_model["top_k"] == 10
    for text, want, got in zip(TEXTS, expected, float_model["top"]):
        assert [model.vocab_tokens[i] for i in got["ids"]] == [p.token for p in want], text
        np.testing.assert_allclose(got["probabilities"], [p.probability for p in want], atol=1e-4, err_msg=text)


@pytest.mark.slow
def test_quantized_steps_are_smaller_and_mostly_agree_with_the_float_step(stepped):
    _, results, stream = stepped
    float_first = np.array(results["none"]["first"])
    # The tiny test model (32 units) over its 40 test lines, 538 positions. Measured: float16 1.0,
    # dynamic 0.998, int8 0.983 of the float model's most probable next tokens.
    for quantize, least in (("float16", 0.98), ("dynamic", 0.95), ("int8", 0.9)):
        agreement = float(np.mean(np.array(results[quantize]["first"]) == float_first))
        assert agreement >= least, (quantize, agreement)
        assert results[quantize]["size"] < results["none"]["size"], quantize
    assert len(float_first) == len(stream) > 300


def test_ids_outside_the_vocabulary_read_as_unknown_in_every_quantization(stepped):
    model, results, _ = stepped
    for quantize, result in results.items():
        assert result["range"] == [0, len(model.vocab_tokens) - 1]
        unknown, *outside = result["outside"]
        assert outside == [unknown] * 3, quantize


def test_the_looped_encoder_equals_the_keras_layers_and_does_not_grow_with_the_length():
    ids = tf.constant([[5, 6, 7, 0, 0], [4, 0, 0, 0, 0], [0, 0, 0, 0, 0], [9, 8, 7, 6, 5]])
    for cell, bidirectional, layers in (("lstm", True, 1), ("gru", False, 2)):
        encoder = Encoder(12, 4, 6, cell=cell, bidirectional=bidirectional, num_layers=layers)
        outputs, states = encoder(ids)
        for unrolled in (False, True):
            looped, looped_states = looped_encoder(encoder, ids, unrolled)
            np.testing.assert_allclose(looped.numpy(), outputs.numpy(), atol=1e-6)
            for layer, looped_layer in zip(states, looped_states):
                for state, looped_state in zip(layer, looped_layer):
                    np.testing.assert_allclose(looped_state.numpy(), state.numpy(), atol=1e-6)
        # Each product appears once however long the source: XNNPACK packs every product's weights
        # apart, so an encoder whose ops grew with its length would hold its weights once per step.
        graphs = [tf.function(lambda i: looped_encoder(encoder, i)).get_concrete_function(
            tf.TensorSpec([1, length], tf.int32)).graph for length in (4, 40)]
        assert len(graphs[0].get_operations()) == len(graphs[1].get_operations())
        loops = [op for op in graphs[1].get_operations() if op.type in ("While", "StatelessWhile")]
        assert len(loops) == layers * (2 if bidirectional else 1)


def test_the_export_says_how_to_use_it(exports, lm_run):
    model = LanguageModel.from_run(lm_run)
    meta = json.loads((exports["dynamic"] / "textseq.json").read_text())
    assert json.loads((exports["dynamic"] / "vocab.json").read_text()) == model.vocab_tokens
    assert meta["quantize"] == "dynamic" and meta["level"] == "word" and meta["start_id"] == 2
    assert meta["state"] == ["phase", "history", "memory_outputs", "memory_keys", "memory_length", "states"]
    assert meta["inputs"]["history"] == {"shape": [1, 6], "dtype": "int32"}  # data.context of the tiny recipe
    assert meta["inputs"]["states"] == {"shape": [1, 2, 32], "dtype": "float32"}  # LSTM h and c, 32 units
    assert meta["recipe"] == model.recipe.to_dict()


def test_the_readmes_app_example_runs_as_written(exports, lm_run, tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Next words on a phone")[1]
    code = readme.split("```python\n")[1].split("```")[0]
    assert 'Path("exports/keyboard-en")' in code
    script = tmp_path / "app.py"
    code = code.replace('Path("exports/keyboard-en")', f"Path({str(exports['dynamic'])!r})")
    script.write_text(code.replace("print(suggestions)", "import sys\nassert 'tensorflow' not in sys.modules\n"
                                                         "print(json.dumps(suggestions))"))
    suggestions = run_script_without_textseq(script)
    (predictions,) = LanguageModel.from_run(lm_run).predict(["a man is riding a"], 10)
    words = [p.token for p in predictions if p.token not in ("<pad>", "<unk>", "<s>", "</s>")]
    assert len(suggestions) == 3 and suggestions[0] == words[0] and set(suggestions) <= set(words), suggestions


def test_bad_exports_get_one_message_and_exit_code_2(lm_run, exports, tmp_path):
    def export(*args):
        result = CliRunner().invoke(cli, ["export", *map(str, args)])
        assert result.exit_code == 2, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert "Traceback" not in result.output and len(errors) == 1, result.stderr
        return errors[0]

    assert "Invalid value for '--quantize': 'int4' is not one of" in export(
        lm_run, tmp_path / "out", "--format", "litert", "--quantize", "int4")
    assert "--quantize dynamic applies to --format litert" in export(lm_run, tmp_path / "out", "--quantize", "dynamic")
    before = (exports["int8"] / "next_word.tflite").read_bytes()
    assert "exists and is not empty" in export(lm_run, exports["int8"], "--format", "litert")
    assert (exports["int8"] / "next_word.tflite").read_bytes() == before

    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("mine")
    assert "is not a textseq export" in export(lm_run, stranger, "--format", "litert", "--overwrite")
    assert (stranger / "todo.txt").read_text() == "mine"


def test_the_converters_native_noise_is_dropped_and_other_native_lines_kept(capfd):
    import os

    from textseq.litert import CONVERTER_NOISE, native_lines_dropped

    with native_lines_dropped(CONVERTER_NOISE):
        os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"
