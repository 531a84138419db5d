"""The LiteRT translator (`textseq export RUN OUT --format litert` of a translation run), run by the
app loop `textseq/on_device.py` in a process with numpy and LiteRT's interpreter only, against the
library's own beam search."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, run_script_without_textseq
from textseq.cli import cli
from textseq.inference import Translator

# What an app does: on_device.py copied beside it, the export's folder, texts in, (text, score) out.
APP = textwrap.dedent("""
    import json, sys
    from on_device import DeviceTranslator

    export, texts, beams = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    translator = DeviceTranslator(export)
    results = {str(beam): [translator.translate(text, beam_size=beam) for text in texts] for beam in beams}
    assert "tensorflow" not in sys.modules and "textseq" not in sys.modules
    print(json.dumps(results))
""")
TEXTS = ["3rd of March 1998", "", " \t ", "Saturday, the 31st of December 1999 " * 3, "ünïcödé 1999 中文", "<s> </s>"]


def export_litert(run: Path, out: Path, quantize: str = "none") -> Path:
    result = CliRunner().invoke(cli, ["export", str(run), str(out), "--format", "litert", "--quantize", quantize])
    assert result.exit_code == 0, result.output
    return out


def on_device(export: Path, texts: list[str], beams: list[int], tmp_path: Path) -> dict:
    """What the app loop answers for every text and beam size, in a process without TensorFlow."""
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    shutil.copy(ROOT / "textseq" / "on_device.py", app / "on_device.py")
    (app / "translate.py").write_text(APP)
    return run_script_without_textseq(app / "translate.py", str(export), json.dumps(texts), json.dumps(beams))


def assert_same_as_the_library(run: Path, answers: dict, texts: list[str]) -> None:
    translator = Translator.from_run(run)
    for beam, got in answers.items():
        expected = [h[0] for h in translator.n_best(texts, translator.options(beam_size=int(beam)))]
        assert [text for text, _ in got] == [h.text for h in expected], beam
        np.testing.assert_allclose([score for _, score in got], [h.score for h in expected], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def float_export(trained_run, tmp_path_factory) -> Path:
    return export_litert(trained_run, tmp_path_factory.mktemp("litert") / "float")


@pytest.mark.slow
def test_the_float_translator_translates_as_the_library_greedy_and_beam(trained_run, float_export, tmp_path):
    meta = json.loads((float_export / "textseq.json").read_text())
    assert meta["signatures"] == ["encode_8", "encode_16", "encode_32", "encode_40", "step", "forced_step"]  # TINY: 40
    assert meta["source"]["level"] == "char"
    assert sorted(p.name for p in float_export.iterdir()) == ["textseq.json", "translator.tflite", "vocab.json"]
    assert_same_as_the_library(trained_run, on_device(float_export, TEXTS, [1, 5], tmp_path), TEXTS)


def test_a_beam_wider_than_the_exports_candidates_is_refused(float_export):
    from textseq.on_device import DeviceTranslator

    with pytest.raises(ValueError, match="beam_size 11: this export's step gives 10 candidates per hypothesis"):
        DeviceTranslator(float_export).translate("3rd of March 1998", beam_size=11)


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_an_int8_translator_stays_close_to_the_float_one(trained_run, tmp_path, quantize):
    export = export_litert(trained_run, tmp_path / quantize, quantize)
    answers = on_device(export, TEXTS, [5], tmp_path)
    expected = [h[0] for h in Translator.from_run(trained_run).n_best(TEXTS)]
    # int8 weights (and activations) move the scores a little.
    np.testing.assert_allclose([score for _, score in answers["5"]], [h.score for h in expected], atol=0.5)


@pytest.mark.parametrize("prefix", [None, "19", "X 2"])  # X is no target character: <unk>, shown as given
def test_the_float_translator_gives_the_librarys_n_best_attention_and_prefixes(trained_run, float_export, prefix):
    from textseq.on_device import DeviceTranslator

    translator, device = Translator.from_run(trained_run), DeviceTranslator(float_export)
    options = translator.options(beam_size=4, n_best=3)
    for text in [t for t in TEXTS if t.strip()]:
        expected, attention = translator.explain(text, options, prefix)
        forced = device.prefix_ids(prefix, options.max_length) if prefix else None
        found = device.hypotheses(device.source_ids(text), 4, options.alpha, options.max_length, 3, forced)
        assert [device.text(h.ids, prefix, forced) for h in found] == [h.text for h in expected], text
        np.testing.assert_allclose([h.score for h in found], [h.score for h in expected], rtol=1e-4, atol=1e-4)
        assert len(found[0].ids) == len(attention.output_tokens)
        np.testing.assert_allclose(found[0].attention, attention.weights, atol=1e-5)
    if prefix:
        assert device.translate(TEXTS[0], beam_size=4, prefix=prefix)[0] == translator.translate(
            [TEXTS[0]], translator.options(beam_size=4), prefixes=[prefix])[0]


def test_serve_answers_from_a_litert_export_as_from_its_run(trained_run, float_export, tmp_path):
    from test_serve import Server

    server = Server(float_export)
    try:
        translator = Translator.from_run(trained_run)
        status, answer = server.post("api/translate", {"text": "3rd of March 1998", "beam_size": 4, "n_best": 2})
        assert status == 200
        expected, attention = translator.explain("3rd of March 1998", translator.options(beam_size=4, n_best=2))
        assert [h["text"] for h in answer["hypotheses"]] == [h.text for h in expected]
        assert answer["attention"]["source_tokens"] == attention.source_tokens
        assert answer["attention"]["output_tokens"] == attention.output_tokens
        np.testing.assert_allclose(answer["attention"]["weights"], attention.weights, atol=1e-5)
        assert server.request("api/info")[1]["decoding"] == translator.options().describe()
        status, answer = server.post("api/translate", {"text": "3rd of March 1998", "prefix": "2077-"})
        assert answer["translation"] == translator.translate(["3rd of March 1998"], prefixes=["2077-"])[0]
        needs_the_run = "use the run directory the export was made from"
        status, answer = server.post("api/translate", {"text": "3rd of March", "temperature": 0.5})
        assert status == 400 and answer["error"].endswith(needs_the_run), answer
        status, answer = server.post("api/score", {"text": "3rd of March 1998", "target": "1998-03-03"})
        assert status == 400 and answer["error"].endswith(needs_the_run), answer
        assert server.post("api/translate", {"text": "a", "beam_size": 11})[1]["error"] == (
            "decode.beam_size: 11 is more than the 10 candidates this export's step gives per hypothesis; "
            "ask for at most 10")
    finally:
        server.stop()
    saved_model = tmp_path / "saved"  # what textseq export writes by default, as far as the check reads it
    (saved_model / "assets").mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"")
    (saved_model / "assets" / "textseq.json").write_text(json.dumps({"task": "translate"}))
    result = CliRunner().invoke(cli, ["serve", str(saved_model), "--port", "0"])
    assert result.exit_code == 2
    assert "is a saved_model export of a translate run; textseq serve and translate take a run directory or a " \
           "translation run's LiteRT export" in result.output


def test_translate_takes_a_litert_export_as_it_takes_its_run(trained_run, float_export):
    args = ["3rd of March 1998", "--beam-size", "4", "--n-best", "2", "--prefix", "19"]
    from_export = CliRunner().invoke(cli, ["translate", str(float_export), *args])
    from_run = CliRunner().invoke(cli, ["translate", str(trained_run), *args])
    assert from_export.exit_code == 0 and from_run.exit_code == 0, from_export.output + from_run.output
    lines = [line.split("\t") for line in from_export.stdout.splitlines() if line]
    expected = [line.split("\t") for line in from_run.stdout.splitlines() if line]
    assert [text for _, text in lines] == [text for _, text in expected]
    np.testing.assert_allclose([float(score) for score, _ in lines], [float(score) for score, _ in expected], atol=1e-3)
    refused = CliRunner().invoke(cli, ["translate", str(float_export), "3rd of March", "--top-k", "5"])
    assert refused.exit_code == 2 and "to sample, use the run directory the export was made from" in refused.output
