"""SentencePiece runs end to end: training, translate/predict/generate through the CLI, the JSON API
and a SavedModel loaded where only tensorflow and tensorflow_text are imported; plain text out."""

from __future__ import annotations

import gzip
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from textseq.cli import cli
from textseq.data.subwords import WORD_START
from textseq.inference import LanguageModel, Translator, top_next_tokens
from textseq.recipe import recipe_from_dict
from textseq.training import train

from conftest import ROOT, SHARED, run_script_without_textseq, tiny_lm, trained
from test_serve import Server

pytestmark = pytest.mark.slow

RAW = SHARED / "multi30k" / "raw"
# Emoji, CJK, combining accents, right-to-left text, typed reserved names and piece markers.
ARBITRARY = ["Ein Mann fährt 😀 auf einem 自転車.", "e\u0301te\u0301 — naïve Café", "שלום عالم مرحبا",
             "<s> </s> <unk> ▁ @@ <0xF0>", "🇩🇪👩‍👩‍👧", ""]
MARKERS = (WORD_START, "<unk>", "\u2047", "<0x", "@@")


def plain(text: str) -> bool:
    return not any(marker in text for marker in MARKERS)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def first_lines(name: str, count: int, skip: int = 0) -> list[str]:
    with gzip.open(RAW / f"{name}.gz", "rt", encoding="utf-8") as lines:
        return [line.rstrip("\n") for _, line in zip(range(skip + count), lines)][skip:]


def translation_recipe(tmp: Path) -> dict:
    for split, skip, count in (("train", 0, 1500), ("val", 1500, 64), ("test", 1564, 64)):
        for language in ("de", "en"):
            (tmp / f"{split}.{language}").write_text("\n".join(first_lines(f"train.{language}", count, skip)) + "\n",
                                                     encoding="utf-8")
    return {
        "data": {"source": "parallel", "dir": str(tmp), "train": "train", "validation": "val", "test": "test",
                 "source_language": "de", "target_language": "en", "max_source_length": 48,
                 "max_target_length": 48},
        "vocab": {"level": "sentencepiece", "size": 500, "shared": False},
        "model": {"embedding_dim": 16, "units": 32, "attention_units": 16},
        "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.01},
        "decode": {"max_length": 24, "beam_size": 3},
    }


@pytest.fixture(scope="module")
def spm_translation(tmp_path_factory) -> Path:
    if not RAW.exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    tmp = tmp_path_factory.mktemp("spm-translate")
    return trained(translation_recipe(tmp), tmp / "run")


@pytest.fixture(scope="module")
def spm_lm(tmp_path_factory) -> Path:
    if not RAW.exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    tmp = tmp_path_factory.mktemp("spm-lm")
    raw = tiny_lm(tmp)
    raw["vocab"] = {"level": "sentencepiece", "size": 400}
    return trained(raw, tmp / "run")


def test_the_run_keeps_its_sentencepiece_models_and_a_resume_uses_them(spm_translation, tmp_path):
    from textseq.data.subwords import train_sentencepiece
    from textseq.recipe import VocabConfig

    run = tmp_path / "run"
    shutil.copytree(spm_translation, run)
    assert (run / "source.spm.model").exists() and not (run / "vocab.txt").exists()
    # Models of 500 pieces that the corpus would never learn: a resume that rebuilt its vocabulary
    # from the corpus would replace them.
    other = [" ".join(reversed(line.split())) + " zzqx wvvk" for line in first_lines("train.en", 1500)]
    models = {name: train_sentencepiece(other, VocabConfig(level="sentencepiece", size=500))
              for name in ("source.spm.model", "target.spm.model")}
    for name, model in models.items():
        (run / name).write_bytes(model)
    # Put in by hand, they are not what the run trained with (run.json has their SHA-256): refused.
    result = invoke("train", run / "recipe.yaml", "--out", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "source.spm.model: is not the vocabulary this run was trained with" in result.stderr
    # Saved as the run's own, the resume reads them, never the corpus.
    from textseq.data.vocab import Vocabulary
    from textseq.runs import Run

    Run(run).vocabulary_files(Run(run).recipe().vocab).save(
        *(Vocabulary.sentencepiece(model) for model in models.values()))
    result = invoke("train", run / "recipe.yaml", "--out", run, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert "resumed_from_epoch 2" in result.stderr
    assert {name: (run / name).read_bytes() for name in models} == models


def test_translate_gives_plain_text_for_any_utf8_through_the_cli(spm_translation, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(ARBITRARY) + "\n", encoding="utf-8")
    result = invoke("translate", spm_translation, "-i", source, "--json", "--n-best", "3")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["source"] for r in records] == ARBITRARY
    outputs = [h["text"] for r in records for h in r["hypotheses"]]
    assert len(outputs) == 3 * len(ARBITRARY) and all(plain(text) for text in outputs), outputs
    assert any(outputs)  # something was written, and none of it is a piece


def test_the_json_api_translates_any_utf8_to_plain_text(spm_translation):
    server = Server(spm_translation)
    try:
        for text in ARBITRARY[:-1]:
            status, body = server.post("api/translate", {"text": text})
            assert status == 200, body
            assert plain(body["translation"]) and all(plain(h["text"]) for h in body["hypotheses"])
            assert all(plain(token) for token in body["attention"]["source_tokens"] + body["attention"]["output_tokens"])
        status, about = server.request("api/info")
        assert about["level"] == "sentencepiece"
    finally:
        server.stop()


LOAD_ONLY_TF = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the SentencePiece ops: what a serving system must load
    model = tf.saved_model.load(sys.argv[1])
    texts = tf.constant(json.loads(sys.argv[2]))
    out = {}
    if "translate" in model.signatures:
        result = model.signatures["translate"](text=texts)
        attention = model.signatures["attention"](text=texts)
        out = {"text": [t.decode() for t in result["text"].numpy()], "score": result["score"].numpy().tolist(),
               "tokens": [t.decode() for t in attention["output_tokens"].numpy().ravel()] +
                         [t.decode() for t in attention["source_tokens"].numpy().ravel()]}
    else:
        words = model.signatures["next_words"](text=texts, k=tf.constant(4))
        generated = model.signatures["generate"](text=texts, max_tokens=tf.constant(12))
        out = {"words": [[w.decode() for w in row] for row in words["words"].numpy()],
               "probabilities": words["probabilities"].numpy().tolist(),
               "generated": [t.decode() for t in generated["text"].numpy()]}
    loaded = sorted(name.split(".")[0] for name in sys.modules)
    out["textseq_loaded"] = "textseq" in loaded
    print(json.dumps(out))
""")


def run_export(run: Path, tmp_path: Path, texts: list[str]) -> dict:
    out = tmp_path / "export"
    result = invoke("export", run, out)
    assert result.exit_code == 0, result.output
    assert (out / "assets" / "textseq.json").exists()
    metadata = json.loads((out / "assets" / "textseq.json").read_text())
    assert metadata["requires"] == ["tensorflow_text"]
    for path in metadata["sentencepiece_models"].values():
        assert (out / path).read_bytes() == (run / Path(path).name).read_bytes()
    script = tmp_path / "load.py"
    script.write_text(LOAD_ONLY_TF)
    served = run_script_without_textseq(script, str(out), json.dumps(texts))
    assert served.pop("textseq_loaded") is False
    return served


def test_export_translates_exactly_as_the_library_with_only_tensorflow_text(spm_translation, tmp_path):
    served = run_export(spm_translation, tmp_path, ARBITRARY)
    expected = Translator.from_run(spm_translation).n_best(ARBITRARY)
    assert served["text"] == [h[0].text for h in expected]
    np.testing.assert_allclose(served["score"], [h[0].score for h in expected], rtol=1e-5, atol=1e-5)
    assert all(plain(text) for text in served["text"] + served["tokens"])


def test_a_subword_language_model_suggests_whole_words(spm_lm):
    model = LanguageModel.from_run(spm_lm)
    (predictions,) = model.predict(["a man is riding a"], 6)
    words = [p.token for p in predictions]
    assert len(words) == 6 and len(set(words)) == 6
    assert all(word and plain(word) and " " not in word for word in words), words
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    # A word's probability: its pieces' probabilities, one after the other, times that of a new word
    # (or the line's end) after it; other segmentations of the same word can only add to it.
    top = words[0]
    pieces = model.target.encode(tf.constant([f"a man is riding a {top}"])).to_list()[0]
    context = model.target.encode(tf.constant(["a man is riding a"])).to_list()[0]
    product = 1.0
    for end in range(len(context), len(pieces) + 1):
        top = top_next_tokens(model.model, model.recipe.data, tf.ragged.constant([pieces[:end]]),
                               model.target.vocab_size)
        by_id = dict(zip(top.indices.numpy()[0].tolist(), top.values.numpy()[0].tolist()))
        if end < len(pieces):
            product *= by_id[pieces[end]]
        else:
            starts = model.target.word_starts.numpy()
            product *= sum(p for i, p in by_id.items() if starts[i] or i == 3)
    assert predictions[0].probability >= product * (1 - 1e-4)
    assert predictions[0].probability <= product + sum(probabilities[1:]) + 1e-6


def test_predict_generate_and_export_agree_for_a_subword_language_model(spm_lm, tmp_path):
    texts = ["a man is riding a", "two dogs", "😀 日本 שלום", ""]
    model = LanguageModel.from_run(spm_lm)
    expected = model.predict(texts, 4)
    served = run_export(spm_lm, tmp_path, texts)
    assert served["words"] == [[p.token for p in row] for row in expected]
    np.testing.assert_allclose(served["probabilities"], [[p.probability for p in row] for row in expected],
                               rtol=1e-5, atol=1e-6)
    assert served["generated"] == [model.generate(text, 12) for text in texts]
    assert all(plain(text) for text in served["generated"]) and any(served["generated"])

    result = invoke("predict", spm_lm, texts[0], "--suggestions", "4", "--json")
    assert result.exit_code == 0, result.output
    assert [p["token"] for p in json.loads(result.stdout)["predictions"]] == served["words"][0]
    result = invoke("generate", spm_lm, "two dogs", "--max-tokens", "12")
    assert result.exit_code == 0 and result.stdout == model.append("two dogs", served["generated"][1]) + "\n"
    assert "  " not in result.stdout.strip() and plain(result.stdout)


def test_the_litert_step_of_a_subword_model_predicts_its_pieces_from_the_shipped_model(spm_lm, tmp_path):
    """The app tokenizes with the SentencePiece model beside the .tflite (its ids are the run's)
    and gets the next pieces that the library's model gives; completing words is the app's part."""
    import sentencepiece
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "litert"
    result = invoke("export", spm_lm, out, "--format", "litert")
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "textseq.json").read_text())
    assert meta["level"] == "sentencepiece" and meta["sentencepiece_model"] == "spm.model"
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(out / "spm.model"))
    model = LanguageModel.from_run(spm_lm)
    text = "two dogs play in the snow while a man is riding a"
    ids = pieces.encode(text)
    assert ids == model.target.encode(tf.constant([text])).to_list()[0]
    step = Interpreter(model_path=str(out / meta["model"]), num_threads=1).get_signature_runner()
    state = {name: np.zeros(spec["shape"], spec["dtype"]) for name, spec in meta["inputs"].items()
             if name != "token_id"}
    for token in [meta["start_id"], *ids]:
        got = step(token_id=np.array([token], np.int32), **state)
        state = {name: got[name] for name in meta["state"]}
    top = top_next_tokens(model.model, model.recipe.data, tf.ragged.constant([ids]), 10)
    assert got["top_ids"][0].tolist() == top.indices.numpy()[0].tolist()
    np.testing.assert_allclose(got["top_probabilities"][0], top.values.numpy()[0], atol=1e-4)


def test_a_damaged_or_missing_sentencepiece_model_is_named(spm_translation, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(spm_translation, run)
    (run / "target.spm.model").write_bytes(b"not a model")
    for args in (("translate", run, "Ein Hund"), ("evaluate", run), ("export", run, tmp_path / "out"),
                 ("train", run / "recipe.yaml", "--out", run)):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "target.spm.model: not a SentencePiece model; the run directory is damaged" in result.stderr
        assert "Traceback" not in result.output
    (run / "target.spm.model").unlink()
    result = invoke("train", run / "recipe.yaml", "--out", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "target.spm.model: vocabulary file missing" in result.stderr
    assert not (run / "target.spm.model").exists()  # not rebuilt behind the weights' back


def test_vocabulary_errors_are_one_message_and_leave_no_model_behind(spm_translation, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    raw = translation_recipe(tmp_path)
    raw["vocab"]["size"] = 90_000
    recipe.write_text(json.dumps(raw))
    result = invoke("train", recipe, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "vocab.size: 90000 pieces are more than the training text (source) supports (at most" in result.stderr
    assert not list((tmp_path / "run").glob("*.model")) and not (tmp_path / "run" / "checkpoints").exists()
    raw["vocab"]["size"] = 500
    recipe.write_text(json.dumps(raw))
    (tmp_path / "train.de").write_bytes((tmp_path / "train.de").read_bytes() + b"ein \xff Hund\n")
    (tmp_path / "train.en").write_bytes((tmp_path / "train.en").read_bytes() + b"a dog\n")
    result = invoke("vocab", recipe)
    assert result.exit_code == 2 and f"{tmp_path / 'train.de'}, line 1501: byte 0xff" in result.stderr, result.stderr
    result = invoke("vocab", recipe, "--set", "data.encoding_errors=skip")
    assert result.exit_code == 0, result.output


def test_vocab_shows_the_statistics_and_saves_the_models(spm_translation, tmp_path):
    recipe = spm_translation / "recipe.yaml"
    result = invoke("vocab", recipe, "--out", tmp_path / "vocab", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["sides"]) == {"source", "target"}
    for side in ("source", "target"):
        stats = report["sides"][side]
        assert stats["vocabulary"] == 500 and stats["lines"] == 64
        assert 1 <= stats["pieces_per_word"]["mean"] <= stats["pieces_per_word"]["p99"] <= stats["pieces_per_word"]["max"]
        assert stats["pieces_per_line"]["mean"] > stats["pieces_per_word"]["mean"]
        assert 0.9 < stats["covered"] <= 1.0
        # The same text learns the same pieces the run learned.
        assert (tmp_path / "vocab" / f"{side}.spm.model").read_bytes() == (spm_translation / f"{side}.spm.model").read_bytes()
    table = invoke("vocab", recipe)
    assert table.exit_code == 0 and "sentencepiece unigram vocabulary" in table.stdout
    assert "per word mean/p99/max" in table.stdout and "source" in table.stdout
    refused = invoke("vocab", recipe, "--out", spm_translation)
    assert refused.exit_code == 2 and "is a run directory" in refused.stderr
    before = (tmp_path / "vocab" / "source.spm.model").read_bytes()
    refused = invoke("vocab", recipe, "--out", tmp_path / "vocab", "--set", "vocab.size=400")
    assert refused.exit_code == 2 and "target.spm.model exist; textseq vocab does not replace files" in refused.stderr
    assert (tmp_path / "vocab" / "source.spm.model").read_bytes() == before


def test_subword_regularization_samples_new_segmentations_for_training_only(spm_translation):
    from textseq.data.tasks import TaskData
    from textseq.runs import Run

    recipe = recipe_from_dict(Run.open(spm_translation).recipe().to_dict(),  # long enough for any sample
                              ["vocab.subword_alpha=0.1", "data.max_source_length=400", "data.max_target_length=400"])
    data = TaskData.load(recipe, Run.open(spm_translation).vocabulary_files(recipe.vocab).load())
    first, again = (next(iter(data.dataset("train", 32, shuffle_seed=0)))[1].numpy() for _ in range(2))
    assert not np.array_equal(first, again)  # the same rows, segmented anew
    decode = data.target.decode
    assert decode(first).numpy().tolist() == decode(again).numpy().tolist()  # the same text
    validation = [next(iter(data.dataset("validation", 32)))[1].numpy() for _ in range(2)]
    np.testing.assert_array_equal(*validation)


def test_a_run_with_subword_regularization_trains_and_translates(tmp_path):
    if not RAW.exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    raw = translation_recipe(tmp_path)
    raw["vocab"]["subword_alpha"] = 0.2
    raw["train"]["epochs"] = 1
    summary = train(recipe_from_dict(raw), tmp_path / "run", verbose=0)
    assert summary["epochs_done"] == 1 and np.isfinite(summary["best_val_loss"])
    (text,) = Translator.from_run(tmp_path / "run").translate(["Ein Hund rennt."])
    assert plain(text)


@pytest.fixture(scope="module")
def spm_litert(spm_translation, tmp_path_factory) -> Path:
    """The float LiteRT translator of `spm_translation` (`textseq export RUN OUT --format litert`)."""
    from test_litert_translator import export_litert

    return export_litert(spm_translation, tmp_path_factory.mktemp("spm-litert") / "litert")


def test_the_litert_translator_tokenizes_with_the_shipped_models_and_translates_as_the_library(spm_translation,
                                                                                              spm_litert, tmp_path):
    from test_litert_translator import assert_same_as_the_library, on_device

    export = spm_litert
    meta = json.loads((export / "textseq.json").read_text())
    for side in ("source", "target"):
        shipped = meta[side]["sentencepiece_model"]
        assert (export / shipped).read_bytes() == (spm_translation / shipped).read_bytes()
    answers = on_device(export, ARBITRARY, [1, 3], tmp_path)
    assert_same_as_the_library(spm_translation, answers, ARBITRARY)
    assert all(plain(text) for beam in answers.values() for text, _ in beam)


def test_the_guides_phone_loop_runs_as_written_and_translates_as_the_library(spm_translation, spm_litert, tmp_path):
    guide = (ROOT / "docs" / "translation.md").read_text(encoding="utf-8").split("## On a phone")[1]
    code = guide.split("```python\n")[1].split("```")[0]
    app = tmp_path / "app"
    shutil.copytree(spm_litert, app / "exports" / "de-en-phone")  # where the guide exports to
    # The guide's code as it is, then its translate() on more texts, greedy and beam 5.
    (app / "guide.py").write_text(code + textwrap.dedent(f"""
        import sys
        assert "tensorflow" not in sys.modules and "textseq" not in sys.modules
        texts, length = {ARBITRARY!r}, meta["decoding"]["max_length"]
        print(json.dumps({{str(beam): [translate(text, beam, length) for text in texts] for beam in (1, 5)}}))
    """))
    answers = run_script_without_textseq(app / "guide.py")
    translator = Translator.from_run(spm_translation)
    for beam, got in answers.items():
        expected = translator.n_best(ARBITRARY, translator.options(beam_size=int(beam), alpha=0.0))
        assert got == [best.text for best, *_ in expected], beam


KEYBOARD = textwrap.dedent("""
    import json, sys
    from on_device import DeviceNextWords

    keyboard = DeviceNextWords(sys.argv[1])
    answers = []
    for text in json.loads(sys.argv[2]):
        keyboard.read(text)
        answers.append(keyboard.suggestions(5))
    assert "tensorflow" not in sys.modules and "textseq" not in sys.modules
    print(json.dumps(answers))
""")


def test_the_litert_step_of_a_subword_model_suggests_the_whole_words_the_library_suggests(spm_lm, tmp_path):
    from conftest import ROOT

    out = tmp_path / "litert"
    assert invoke("export", spm_lm, out, "--format", "litert").exit_code == 0
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "textseq" / "on_device.py", app / "on_device.py")
    (app / "keyboard.py").write_text(KEYBOARD)
    texts = ["two dogs play in the snow while a man is riding a", "A", "", "ein Mann 😀"]
    answers = run_script_without_textseq(app / "keyboard.py", str(out), json.dumps(texts))
    for text, got, want in zip(texts, answers, LanguageModel.from_run(spm_lm).predict(texts, 5)):
        assert [word for word, _ in got] == [p.token for p in want], text
        np.testing.assert_allclose([p for _, p in got], [p.probability for p in want], atol=1e-4, err_msg=text)
        assert all(word and WORD_START not in word for word, _ in got)
