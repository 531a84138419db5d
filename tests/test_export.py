"""The SavedModel export, loaded in a fresh process that has TensorFlow and not textseq."""

import json
import os
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.inference import LanguageModel, Translator

from conftest import run_script_without_textseq

INPUTS = ["3rd of March 1998", "", " \t ", "@@@@ ~~~~", "Saturday, the 31st of December 1999 " * 4, "ünïcödé 1999 中文"]

LOAD_AND_TRANSLATE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    texts = tf.constant(json.loads(sys.argv[2]))
    out = model.signatures["translate"](text=texts)
    attention = model.signatures["attention"](text=texts[:1])
    prefixed = model.signatures["translate_prefix"](text=texts, prefix=tf.constant(["X19"] * len(json.loads(sys.argv[2]))))
    assert "textseq" not in sys.modules
    print(json.dumps({"text": [t.decode("utf-8") for t in out["text"].numpy()],
                      "prefixed": [t.decode("utf-8") for t in prefixed["text"].numpy()],
                      "prefixed_score": prefixed["score"].numpy().tolist(),
                      "score": out["score"].numpy().tolist(),
                      "output_tokens": [t.decode("utf-8") for t in attention["output_tokens"].numpy()[0]],
                      "weights": attention["weights"].numpy()[0].tolist()}))
""")


def served_by_export(run, out, script_text: str, inputs: list[str]) -> dict:
    """Exports `run` to `out` through the CLI and returns what `script_text` (run without textseq,
    with the export's path and the JSON inputs) prints."""
    result = CliRunner().invoke(cli, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    script = out.parent / "load.py"
    script.write_text(script_text)
    return run_script_without_textseq(script, str(out), json.dumps(inputs))


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "dates"
    result = CliRunner().invoke(cli, ["export", str(trained_run), str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_export_translates_like_the_library_in_a_process_without_textseq(exported, trained_run, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(LOAD_AND_TRANSLATE)
    served = run_script_without_textseq(script, str(exported), json.dumps(INPUTS))
    translator = Translator.from_run(trained_run)
    expected = translator.n_best(INPUTS)
    assert served["text"] == [h[0].text for h in expected]
    with_prefix = translator.n_best(INPUTS, prefixes=["X19"] * len(INPUTS))  # X: not a target character
    assert served["prefixed"] == [h[0].text for h in with_prefix] and all(t.startswith("X19") for t in served["prefixed"])
    np.testing.assert_allclose(served["prefixed_score"], [h[0].score for h in with_prefix], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(served["score"], [h[0].score for h in expected], rtol=1e-5, atol=1e-5)
    attention = translator.attention(INPUTS[0])
    steps = len(attention.output_tokens)
    assert served["output_tokens"][:steps] == attention.output_tokens
    np.testing.assert_allclose(np.array(served["weights"])[:steps, : len(attention.source_tokens)],
                               attention.weights, atol=1e-5)
    metadata = json.loads((exported / "assets" / "textseq.json").read_text())
    assert metadata["task"] == "translate" and metadata["recipe"] == translator.recipe.to_dict()
    # Every weight is saved once (not also as its Keras variable): the float32 weights and a checkpoint index.
    saved = sum(f.stat().st_size for f in (exported / "variables").iterdir())
    assert saved < translator.model.count_params() * 4 * 1.05 + 20_000, saved


@pytest.mark.skipif(not shutil.which("saved_model_cli"), reason="saved_model_cli is not on PATH")
def test_saved_model_cli_lists_the_signatures(exported):
    shown = saved_model_cli(exported)
    for name in ("serving_default", "translate", "attention"):
        assert f"signature_def['{name}']" in shown
    translate = shown.split("signature_def['translate']")[1].split("signature_def[")[0]
    assert "inputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in translate
    assert "outputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in translate
    assert "outputs['score'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1)" in translate


def test_export_refuses_to_overwrite_without_asking(exported, trained_run):
    result = CliRunner().invoke(cli, ["export", str(trained_run), str(exported)])
    assert result.exit_code == 2 and "exists and is not empty" in result.stderr


LOAD_AND_PREDICT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    texts = tf.constant(json.loads(sys.argv[2]))
    top = model.signatures["next_words"](text=texts, k=tf.constant(4))
    default = model.signatures["serving_default"](text=texts)
    generated = model.signatures["generate"](text=texts, max_tokens=tf.constant(13))
    refused = []
    for name, arguments in [("next_words", {"k": tf.constant(-1)}), ("next_words", {"k": tf.constant(0)}),
                            ("generate", {"max_tokens": tf.constant(10_001)})]:
        try:
            model.signatures[name](text=texts, **arguments)
        except tf.errors.InvalidArgumentError as error:
            refused.append(error.message)
    assert "textseq" not in sys.modules
    print(json.dumps({"words": [[w.decode("utf-8") for w in row] for row in top["words"].numpy()],
                      "probabilities": top["probabilities"].numpy().tolist(),
                      "default_k": int(default["words"].shape[1]),
                      "generated": [t.decode("utf-8") for t in generated["text"].numpy()], "refused": refused}))
""")
LM_INPUTS = ["a man is riding a", "", " \t ", "zzyzx qqq", "two dogs play in the snow while " * 10, "中文 émigré"]


@pytest.mark.slow
def test_language_model_export_predicts_and_generates_like_the_library(lm_run, tmp_path):
    out = tmp_path / "lm"
    served = served_by_export(lm_run, out, LOAD_AND_PREDICT, LM_INPUTS)
    model = LanguageModel.from_run(lm_run)
    expected = model.predict(LM_INPUTS, 4)
    assert served["words"] == [[p.token for p in row] for row in expected]
    np.testing.assert_allclose(served["probabilities"], [[p.probability for p in row] for row in expected],
                               atol=1e-5)
    assert served["default_k"] == 5
    assert served["generated"] == [model.generate(text, 13) for text in LM_INPUTS]
    assert len(served["refused"]) == 3, served["refused"]
    assert all("next_words: k must be at least 1" in message for message in served["refused"][:2]), served["refused"]
    assert "generate: max_tokens must be at most 10000" in served["refused"][2]

    if shutil.which("saved_model_cli"):
        shown = saved_model_cli(out)
        next_words = shown.split("signature_def['next_words']")[1].split("signature_def[")[0]
        for expected in ("inputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)",
                         "inputs['k'] tensor_info:\n        dtype: DT_INT32\n        shape: ()",
                         "outputs['words'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1, -1)",
                         "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1)"):
            assert expected in next_words
        generate = shown.split("signature_def['generate']")[1].split("signature_def[")[0]
        assert "inputs['max_tokens'] tensor_info:\n        dtype: DT_INT32\n        shape: ()" in generate
        assert "outputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in generate


def saved_model_cli(path) -> str:
    return subprocess.run(["saved_model_cli", "show", "--dir", str(path), "--all"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout


def files_of(path):
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_export_overwrite_replaces_only_an_earlier_export(exported, trained_run, tmp_path):
    stranger = tmp_path / "p"
    (stranger / "sub").mkdir(parents=True)
    (stranger / "t.tex").write_text("x")
    for out, message in [(stranger, "is not a textseq export (no saved_model.pb and assets/textseq.json, nor a "
                                    "next_word.tflite or translator.tflite and textseq.json)"),
                         (trained_run, "is inside the run directory"),
                         (trained_run / "checkpoints", "is inside the run directory"),
                         (trained_run.parent, "holds the run directory")]:
        before = files_of(out)
        result = CliRunner().invoke(cli, ["export", str(trained_run), str(out), "--overwrite"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert message in result.stderr
        assert files_of(out) == before, f"{out} changed"

    # An earlier export's own files (those its textseq.json lists) are replaced, and the user's files kept.
    earlier = tmp_path / "earlier"
    shutil.copytree(exported, earlier)
    metadata = json.loads((earlier / "assets" / "textseq.json").read_text())
    assert "saved_model.pb" in metadata["files"] and "assets/textseq.json" in metadata["files"]
    (earlier / "assets" / "stale.txt").write_text("from an earlier export")
    metadata["files"].append("assets/stale.txt")
    (earlier / "assets" / "textseq.json").write_text(json.dumps(metadata))
    (earlier / "notes.txt").write_text("mine")
    (earlier / "variables" / "mine.txt").write_text("mine too")
    (earlier / "empty").mkdir()
    result = CliRunner().invoke(cli, ["export", str(trained_run), str(earlier), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (earlier / "assets" / "stale.txt").exists() and (earlier / "saved_model.pb").exists()
    assert (earlier / "notes.txt").read_text() == "mine" and (earlier / "variables" / "mine.txt").read_text() == "mine too"
    assert (earlier / "empty").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "p"]  # nothing left beside it


def test_a_kill_at_any_step_of_the_swap_leaves_an_export_the_next_command_puts_back(exported, trained_run, tmp_path,
                                                                                    monkeypatch, caplog):
    """The disk states a kill -9 leaves at each rename of `--overwrite`'s swap, copied from one export
    (a kill runs no clean-up): the next export to OUT restores or deletes what it left, and says so."""
    import textseq.export
    import textseq.files

    root = tmp_path / "exports"
    out = root / "dates"
    shutil.copytree(exported, out)
    (out / "notes.txt").write_text("mine")
    old_files = files_of(out)
    states = []

    def snapshot_then(step, when=lambda path: True):
        def wrapped(path, *args, **kwargs):
            if when(path):
                copy = tmp_path / f"state-{len(states)}"
                shutil.copytree(root, copy, symlinks=True)
                states.append(copy)
            return step(path, *args, **kwargs)
        return wrapped

    rmtree = shutil.rmtree
    monkeypatch.setattr(textseq.files, "replace", snapshot_then(textseq.files.replace))
    monkeypatch.setattr(textseq.export.shutil, "rmtree", snapshot_then(rmtree, lambda path: ".previous-" in str(path)))
    result = CliRunner().invoke(cli, ["export", str(trained_run), str(out), "--overwrite"])
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    new_files = files_of(out)
    assert (out / "notes.txt").read_text() == "mine" and new_files != old_files
    # Before the first rename, between the two, before the earlier export's deletion, and during it.
    hidden = [sorted(path.name.split("-")[0] for path in state.iterdir() if path.name.startswith(".")) for state in states]
    assert hidden == [[".dates.partial"], [".dates.partial", ".dates.previous"], [".dates.previous"]]
    during = tmp_path / "state-during"
    shutil.copytree(states[-1], during, symlinks=True)
    rmtree(next(during.glob(".dates.previous-*")) / "variables")
    states.append(during)

    for state in states:
        caplog.clear()
        result = CliRunner().invoke(cli, ["export", str(trained_run), str(state / "dates")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "exists and is not empty" in result.stderr
        assert [path.name for path in state.iterdir()] == ["dates"]  # nothing hidden left beside it
        restored = {path.relative_to(state): data for path, data in files_of(state / "dates").items()}
        assert restored in ({path.relative_to(root): data for path, data in files.items()}
                            for files in (old_files, new_files))
        assert ("put back the earlier export" in caplog.text or "deleted .dates." in caplog.text), caplog.text


def test_a_failed_export_leaves_the_earlier_one_whole(exported, trained_run, tmp_path, monkeypatch):
    import textseq.export

    earlier = tmp_path / "earlier"
    shutil.copytree(exported, earlier)
    before = files_of(earlier)

    def disk_full(loaded, path):
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(textseq.export, "write_saved_model", disk_full)
    result = CliRunner().invoke(cli, ["export", str(trained_run), str(earlier), "--overwrite"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{earlier}: cannot write the export (No space left on device)" in result.stderr
    assert files_of(earlier) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]
