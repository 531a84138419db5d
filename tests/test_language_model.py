"""The language-model task: windows, perplexity by hand, predict / generate / demo, and their errors."""

import dataclasses
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
from textseq.constants import BOS, EOS, RESERVED
from textseq.data.pipeline import encode_text, language_model_examples, window_dataset
from textseq.data.tasks import TaskData
from textseq.evaluation import evaluate
from textseq.inference import LanguageModel
from textseq.windows import read_texts, walk_windows

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
    stream = encode_text("a man .\n\n  \ntwo dogs\n", model.source).numpy().tolist()
    assert stream[3] == EOS and stream[-1] == EOS and len(stream) == 7  # blank lines add nothing
    data = TaskData.load(model.recipe, (model.source.vocab, model.target.vocab), splits=("test",))
    words = sum(len(line.split()) + 1 for line in (Path(model.recipe.data.dir) / "test.txt").read_text().splitlines()
                if line.strip())
    assert int(data.examples["test"][2].flat_values.shape[0]) == words == 40 + sum(
        len(line.split()) for line in (Path(model.recipe.data.dir) / "test.txt").read_text().splitlines())


def log_probs_by_hand(model, stream: list[int], start: int, end: int, context: int, continuation: int,
                      carry: bool) -> np.ndarray:
    """Log-probabilities `[end - start, vocab]` of positions start..end-1 of `stream` (a position may
    be len(stream): the token after it), read one window at a time from `start`: the encoder reads
    the context before the window; the decoder starts from the encoder's states in the first window
    (and in every window without `carry`), else from where it stopped."""
    shifted = [BOS] + stream
    states, rows = None, []
    for begin in range(start, end, continuation):
        stop = min(begin + continuation, end)
        source = stream[max(0, begin - context):begin] or [0]
        outputs, encoder_states = model.model.encoder(tf.constant([source], tf.int32))
        logits, _, final = model.model.decoder(tf.constant([shifted[begin:stop]], tf.int32),
                                               states if carry and states else encoder_states, outputs,
                                               tf.constant([[i != 0 for i in source]]), return_states=True)
        states = final
        rows.append(tf.nn.log_softmax(tf.cast(logits[0], tf.float32)).numpy())
    return np.concatenate(rows)


@pytest.mark.parametrize("carry", [True, False])
def test_perplexity_is_exp_of_the_mean_token_loss_by_hand(lm_run, carry):
    """evaluate's rows of consecutive windows (carry) or independent windows, recomputed window by window."""
    model = LanguageModel.from_run(lm_run)
    data_config = dataclasses.replace(model.recipe.data, carry_state=carry)
    model.recipe = dataclasses.replace(model.recipe, data=data_config)
    rows = 8
    metrics = evaluate(model, "test", batch_size=rows)
    data = TaskData.load(model.recipe, (model.source.vocab, model.target.vocab), splits=("test",))
    stream = data.token_ids["test"].tolist()
    row_length = -(-len(stream) // rows) if carry else len(stream)  # without carry: one row, windows reset
    total, count, top1 = 0.0, 0, 0
    for row_start in range(0, len(stream), row_length):
        row_end = min(row_start + row_length, len(stream))
        log_probs = log_probs_by_hand(model, stream, row_start, row_end, data_config.context,
                                      data_config.continuation, carry)
        targets = stream[row_start:row_end]
        total -= sum(log_probs[i, t] for i, t in enumerate(targets))
        top1 += sum(int(log_probs[i].argmax() == t) for i, t in enumerate(targets))
        count += len(targets)
    assert metrics["tokens"] == count == len(stream)
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert metrics["top1_accuracy"] == pytest.approx(top1 / count)
    assert metrics["top1_accuracy"] <= metrics["top3_accuracy"] <= metrics["top5_accuracy"] <= 1


def test_evaluate_reads_the_split_in_the_rows_the_run_validated_with(lm_run):
    """Rows start cold (from the encoder's states), so their number changes the loss a little: by
    default the CLI uses the run's train.batch_size, as the validation loss in metrics.csv does."""
    model = LanguageModel.from_run(lm_run)
    by_default = json.loads(invoke("evaluate", lm_run, "--split", "test", "--json").stdout)
    assert by_default == evaluate(model, "test", batch_size=model.recipe.train.batch_size)
    two_rows = json.loads(invoke("evaluate", lm_run, "--split", "test", "--json", "--batch-size", "2").stdout)
    assert two_rows == evaluate(model, "test", batch_size=2)


def test_consecutive_windows_split_the_stream_into_rows_and_carry_on():
    stream = np.arange(10, 33)
    batches = list(window_dataset(stream, context=3, continuation=4, batch_size=3))
    rows = [sum((b[1].numpy()[r][b[1].numpy()[r] != 0].tolist() for b in batches), []) for r in range(3)]
    assert rows == [list(range(10, 18)), list(range(18, 26)), list(range(26, 33))]  # every token once, in order
    assert [b[0]["reset"].numpy().tolist() for b in batches] == [[1] * 3, [0] * 3]
    assert batches[1][0]["source"].numpy().tolist()[1] == [19, 20, 21]  # the context before 22
    # Training moves the rows' start by an offset that depends on (seed, epoch) only, and keeps full windows.
    epoch = tf.Variable(0, dtype=tf.int64)
    firsts = []
    for e in (0, 1, 0):
        epoch.assign(e)
        batches = list(window_dataset(stream, 3, 4, 2, shuffle_seed=5, epoch=epoch))
        assert all(int((b[1].numpy() != 0).sum()) == 8 for b in batches)
        firsts.append(int(batches[0][1].numpy()[0, 0]))
    assert firsts[0] == firsts[2]


def test_predict_reads_the_text_as_evaluation_does_and_marks_unknown_words(lm_run):
    result = invoke("predict", lm_run, "a man in a zzyzx", "--json", "--suggestions", "3")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["text"] == "a man in a zzyzx" and payload["unknown"] == ["zzyzx"]
    model = LanguageModel.from_run(lm_run)
    data = model.recipe.data
    text = "two young guys with shaggy hair look at their hands while hanging out in the yard a man in a zzyzx"
    ids = model.source.encode(tf.constant([text])).flat_values.numpy().tolist()
    assert len(ids) > 2 * data.continuation  # the state is carried over two window borders
    for prefix in (ids, ids[:3], []):
        log_probs = log_probs_by_hand(model, prefix, 0, len(prefix) + 1, data.context, data.continuation,
                                      data.carry_state)[-1]
        shown = model.predict([" ".join(model.vocab_tokens[i] for i in prefix)], 3)[0]
        best = [i for i in log_probs.argsort()[::-1] if i >= len(RESERVED)][:3]  # never <unk> or </s>
        assert [p.token for p in shown] == [model.vocab_tokens[i] for i in best]
        np.testing.assert_allclose([p.probability for p in shown], np.exp(log_probs[best]), rtol=1e-4)
    old_name = invoke("predict", lm_run, "a man in a zzyzx", "--json", "--top-k", "3")  # the old name still works
    assert old_name.stdout == result.stdout and "--top-k is now --suggestions" in old_name.stderr
    batch = ["", "   ", "中文 と émigré", "a " * 500, text]  # never an error; a batch answers as one text at a time
    together = model.predict(batch, 2)
    for one, text in zip(together, batch):
        assert [p.token for p in one] == [p.token for p in model.predict([text], 2)[0]]


@pytest.mark.parametrize("carry", [True, False])
def test_reading_a_window_at_a_time_gives_the_logits_of_walking_each_position(lm_run, carry):
    """`read_texts` (predict's reader) against `walk_windows` (generate's): a batch whose texts end
    before, on and after window borders, and an empty one."""
    model = LanguageModel.from_run(lm_run)
    data = model.recipe.data
    t = data.continuation
    lengths = np.array([0, 1, t - 1, t, t + 1, 3 * t + 2], np.int32)
    ids = np.random.default_rng(0).integers(len(RESERVED), model.target.vocab_size, (len(lengths), lengths.max()))
    ids = np.where(np.arange(lengths.max())[None, :] < lengths[:, None], ids, 0).astype(np.int32)
    read = read_texts(model.model, ids, lengths, data.context, t, carry).numpy()
    walked, _ = walk_windows(model.model, ids, lengths, data.context, t, carry)
    np.testing.assert_allclose(read, walked.numpy(), atol=1e-5)
    alone = [read_texts(model.model, ids[i:i + 1, :max(n, 1)], lengths[i:i + 1], data.context, t, carry).numpy()[0]
             for i, n in enumerate(lengths)]
    np.testing.assert_allclose(read, np.stack(alone), atol=1e-5)  # a text's row does not depend on the others


@pytest.mark.parametrize("carry", [True, False])
def test_typing_reads_on_from_the_text_before_and_predicts_what_reading_it_all_does(lm_run, carry):
    """predict on one text keeps where its reading ended; a text typed on from it, across window
    borders, after a backspace and with a word the vocabulary lacks, gets the predictions of a
    model that reads every text from its start (a batch is read whole)."""
    typing = LanguageModel.from_run(lm_run)
    typing.recipe = dataclasses.replace(typing.recipe, data=dataclasses.replace(typing.recipe.data, carry_state=carry))
    whole = LanguageModel(typing.recipe, typing.model, typing.source, typing.target)
    words = "two young guys with shaggy hair look at their hands while hanging out in the zzyzx yard".split()
    texts = [" ".join(words[:n]) for n in range(len(words) + 1)] + ["two young guys", "two young men", ""]
    t = typing.recipe.data.continuation
    assert len(words) > 3 * t
    functions, whole_reads = typing.readings.functions, []
    read_whole = functions["read"]
    functions["read"] = lambda *args: whole_reads.append(args) or read_whole(*args)
    for text in texts:
        typed = typing.predict([text], 3)[0]
        batch = whole.predict([text, "a"], 3)[0]
        assert [p.token for p in typed] == [p.token for p in batch], text
        np.testing.assert_allclose([p.probability for p in typed], [p.probability for p in batch], rtol=1e-4)
    assert len(typing.readings) == len(set(texts))  # one reading kept per text
    assert len(whole_reads) == 1 + len(words) // t  # the empty text, then each window's first text only


def test_generate_is_greedy_or_seeded(lm_run):
    model = LanguageModel.from_run(lm_run)
    greedy = model.generate("a man", 12)
    assert model.generate("a man", 12) == greedy
    assert len(greedy.split()) + greedy.count("\n") == 12  # a line end (</s>) is a token, written as a newline
    ids = model.source.encode(tf.constant(["a man"])).flat_values.numpy().tolist()
    data = model.recipe.data
    log_probs = log_probs_by_hand(model, ids, 0, len(ids) + 1, data.context, data.continuation, data.carry_state)[-1]
    assert greedy.split()[0] == model.vocab_tokens[int(log_probs.argmax())]  # the first token is the most probable
    sampled = [model.generate("a man", 12, temperature=1.2, seed=seed) for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    result = invoke("generate", lm_run, "a man", "--max-tokens", "12", "--json")
    assert json.loads(result.stdout) == {"text": "a man", "continuation": greedy}


def test_demo_reads_piped_lines_until_an_empty_one(lm_run):
    process = subprocess.run([sys.executable, "-m", "textseq", "demo", str(lm_run), "-k", "2"],
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


def test_library_errors_name_the_arguments_not_cli_flags(lm_run):
    from textseq.errors import UserError

    model = LanguageModel.from_run(lm_run)
    with pytest.raises(UserError, match=r"^k \(the number of next tokens\) must be at least 1, not 0$"):
        model.predict(["a man"], 0)
    with pytest.raises(UserError, match=r"^max_tokens must be 0 or more, not -1$"):
        model.generate("a man", -1)


def test_a_small_language_model_learns_more_than_word_frequencies(lm_run):
    """Its output bias starts at the training words' log frequencies (`baselines.add_one_unigram`).
    From zero, this 32-unit model learned only those frequencies in its epoch: validation accuracy
    0.114, the share of "a", the most frequent word. Now 0.33."""
    with open(lm_run / "metrics.csv") as f:
        last = f.read().splitlines()[-1].split(",")
    assert float(last[-1]) > 0.25  # val_token_accuracy


def test_no_suggestion_is_unk_or_a_control_token(lm_run):
    """The model often finds <unk> or the line's end most probable; a keyboard must not offer them."""
    model = LanguageModel.from_run(lm_run)
    texts = ["a man in a zzyzx", "", "two dogs", "a woman is", "qqq qqq qqq", "the"]
    suggested = {p.token for row in model.predict(texts, model.target.vocab_size) for p in row}
    assert suggested and not suggested & set(RESERVED)
    assert len(model.predict(["a"], 10_000)[0]) == model.target.vocab_size - len(RESERVED)
