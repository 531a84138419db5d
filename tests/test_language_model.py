"""The language-model task: windows, perplexity by hand, predict / generate / demo, and their errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from click.testing import CliRunner

from textseq.cli import cli
from textseq.data.pipeline import encode_stream, language_model_examples
from textseq.data.tasks import TaskData
from textseq.data.vocab import BOS, EOS
from textseq.evaluation import evaluate
from textseq.inference import LanguageModel

from conftest import CAPTIONS, SHARED, tiny_lm

pytestmark = pytest.mark.skipif(not CAPTIONS.exists(), reason=f"no Multi30k mirror at {SHARED}")


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def test_windows_cover_every_token_once_with_the_context_before_it():
    stream = tf.range(10, 33, dtype=tf.int32)
    sources, inputs, targets = (part.to_list() for part in language_model_examples(stream, context=4, continuation=5))
    ids = list(range(10, 33))
    assert sum(targets, []) == ids  # every token once, in order
    position = 0
    for source, decoder_in, target in zip(sources, inputs, targets):
        assert source == ids[max(0, position - 4):position]
        assert decoder_in == ([BOS] + ids)[position:position + len(target)]  # the token before each target
        position += len(target)


def test_word_streams_end_lines_with_eos_and_count_every_token(lm_run):
    model = LanguageModel.from_run(lm_run)
    stream = encode_stream("a man .\n\n  \ntwo dogs\n", model.source).numpy().tolist()
    assert stream[3] == EOS and stream[-1] == EOS and len(stream) == 7  # blank lines add nothing
    data = TaskData.load(model.recipe, (model.source.vocab, model.target.vocab), splits=("test",))
    words = sum(len(line.split()) + 1 for line in (Path(model.recipe.data.dir) / "test.txt").read_text().splitlines()
                if line.strip())
    assert int(data.examples["test"][2].flat_values.shape[0]) == words == 40 + sum(
        len(line.split()) for line in (Path(model.recipe.data.dir) / "test.txt").read_text().splitlines())


def test_perplexity_is_exp_of_the_mean_token_loss_by_hand(lm_run):
    metrics = evaluate(lm_run, "test")
    model = LanguageModel.from_run(lm_run)
    data = TaskData.load(model.recipe, (model.source.vocab, model.target.vocab), splits=("test",))
    total, count, top1 = 0.0, 0, 0
    for source, decoder_in, target in zip(*(part.to_list() for part in data.examples["test"])):
        logits = model.model({"source": tf.constant([source or [0]], tf.int32),
                              "target_in": tf.constant([decoder_in], tf.int32)})
        log_probs = tf.nn.log_softmax(logits)[0].numpy()
        total -= sum(log_probs[i, t] for i, t in enumerate(target))
        top1 += sum(int(log_probs[i].argmax() == t) for i, t in enumerate(target))
        count += len(target)
    assert metrics["tokens"] == count
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert metrics["top1_accuracy"] == pytest.approx(top1 / count)
    assert metrics["top1_accuracy"] <= metrics["top5_accuracy"] <= 1


def test_predict_matches_a_step_of_the_model_and_marks_unknown_words(lm_run):
    result = invoke("predict", lm_run, "a man in a zzyzx", "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["text"] == "a man in a zzyzx" and payload["unknown"] == ["zzyzx"]
    model = LanguageModel.from_run(lm_run)
    ids = model.source.encode(tf.constant(["a man in a zzyzx"])).flat_values.numpy().tolist()
    window = ids[-model.recipe.data.context:]
    logits = model.model({"source": tf.constant([window], tf.int32), "target_in": tf.constant([[ids[-1]]], tf.int32)})
    probabilities = tf.nn.softmax(logits[0, 0]).numpy()
    best = probabilities.argsort()[::-1][:3]
    assert [p["token"] for p in payload["predictions"]] == [model.vocab_tokens[i] for i in best]
    np.testing.assert_allclose([p["probability"] for p in payload["predictions"]], probabilities[best], rtol=1e-5)
    assert invoke("predict", lm_run, "a man in a zzyzx", "--json", "--top-k", "3").stdout == result.stdout
    for text in ["", "   ", "中文 と émigré", "a " * 500]:  # never an error
        assert len(model.predict([text], 2)[0]) == 2


def test_generate_is_greedy_or_seeded(lm_run):
    model = LanguageModel.from_run(lm_run)
    greedy = model.generate("a man", 12)
    assert model.generate("a man", 12) == greedy
    assert len(greedy.replace("\n", " ").split()) == 12  # line ends count as tokens
    sampled = [model.generate("a man", 12, temperature=1.2, seed=seed) for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    result = invoke("generate", lm_run, "a man", "--max-tokens", "12", "--json")
    assert json.loads(result.stdout) == {"text": "a man", "continuation": greedy}


def test_demo_reads_piped_lines_until_an_empty_one(lm_run):
    process = subprocess.run([sys.executable, "-m", "textseq", "demo", str(lm_run), "--top-k", "2"],
                             input="a man\nzzyzx is\n\nnever read\n", capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    model = LanguageModel.from_run(lm_run)
    first, second = model.predict(["a man"], 2)[0], model.predict(["a man zzyzx is"], 2)[0]
    shown = [line.split()[0] for line in process.stdout.splitlines() if "%" in line]
    assert shown == [p.token for p in first + second]
    assert "unknown (read as <unk>): zzyzx" in process.stdout
    assert process.stdout.count("after:") == 2 and process.stderr.strip().endswith("bye")


def test_missing_corpus_and_task_mistakes_exit_2(tmp_path):
    recipe = tiny_lm(tmp_path)
    recipe["data"].update(dir=str(tmp_path / "empty"), train="tinyshakespeare/input.txt", validation=None,
                          test=None, split=0.9)
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("train", tmp_path / "lm.yaml", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: data.train: {tmp_path}/empty/tinyshakespeare/input.txt: no such file; run `textseq data fetch "
        "tinyshakespeare` (downloads it), or `textseq data fetch tinyshakespeare --from DIR` with a local copy, "
        "or set data.dir to a directory that holds it")
    result = invoke("check", tmp_path / "lm.yaml", "--set", "task=translate")
    assert result.exit_code == 2
    assert "data.source: text does not suit task: translate; use data.source: dates or parallel" in result.stderr
    result = invoke("check", tmp_path / "lm.yaml", "--set", "vocab.shared=false")
    assert result.exit_code == 2 and "vocab.shared must be true for a language_model" in result.stderr
