import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.evaluation import evaluate
from textseq.data.sources import load_pairs
from textseq.inference import Translator
from textseq.metrics import exact_match


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_recipe_errors_exit_2_with_one_message_and_no_traceback(tiny_recipe_file):
    result = invoke("train", tiny_recipe_file, "--set", "model.cell=lstn")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --set model.cell=lstn: model.cell must be one of lstm, gru; got 'lstn'"
    assert "Traceback" not in result.output

    tiny_recipe_file.write_text(tiny_recipe_file.read_text().replace("units: 16", "unit: 16"))
    result = invoke("check", tiny_recipe_file)
    assert result.exit_code == 2
    assert f"{tiny_recipe_file}:" in result.stderr and "unknown key model.unit; did you mean model.units?" in result.stderr


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: 0\n")
    process = subprocess.run([sys.executable, "-m", "textseq", "train", str(bad)], capture_output=True, text=True)
    assert process.returncode == 2
    assert process.stderr.strip() == f"Error: {bad}:2: train.batch_size must be at least 1; got 0"
    assert process.stdout == ""


def test_translate_and_evaluate_json(trained_run):
    translator = Translator.from_run(trained_run)
    result = invoke("translate", trained_run, "3rd of March 1998", "--json", "--beam-size", "3", "--n-best", "2")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = translator.n_best(["3rd of March 1998"], translator.options(beam_size=3, n_best=2))[0]
    assert payload == {"source": "3rd of March 1998", "translation": expected[0].text,
                       "hypotheses": [{"text": h.text, "score": h.score} for h in expected]}

    result = invoke("evaluate", trained_run, "--split", "test", "--json", "--beam-size", "2")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"loss", "token_accuracy", "exact_match", "examples", "bleu", "chrf"} <= metrics.keys()
    assert metrics["examples"] == 64 and metrics["tokens"] == 64 * 11
    assert metrics["decoding"] == {"method": "beam", "max_length": 12, "beam_size": 2, "alpha": 0.0, "n_best": 1}
    assert metrics["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert json.loads((trained_run / "eval-test.json").read_text()) == metrics
    assert metrics == evaluate(trained_run, "test", translator.options(beam_size=2))
    hypotheses = (trained_run / "hyp-test.txt").read_text().splitlines()
    assert len(hypotheses) == 64
    assert metrics["exact_match"] == exact_match(hypotheses, [t for _, t in load_pairs(translator.recipe.data, "test")])


def test_translate_files_keeps_order_and_matches_the_library(trained_run, tmp_path):
    sources = ["3rd of March 1998", "", "12 Jan 2001", "Tue, 03.03.98", "ünïcödé 1999", "x" * 200]
    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    result = invoke("translate", trained_run, "--input", tmp_path / "src.txt", "--output", tmp_path / "hyp.txt",
                    "--beam-size", "3", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "wrote 6 translations" in result.stderr and "translating" in result.stderr  # the progress bar
    translator = Translator.from_run(trained_run)
    expected = translator.translate(sources, translator.options(beam_size=3))
    assert (tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines() == expected

    result = invoke("translate", trained_run, "3rd of March 1998", "--temperature", "0.9", "--seed", "4",
                    "--n-best", "3")
    assert result.exit_code == 0, result.output
    block = result.stdout.splitlines()
    assert len(block) == 4 and block[3] == ""  # three "SCORE<TAB>TEXT" lines, then a blank one
    assert invoke("translate", trained_run, "3rd of March 1998", "--temperature", "0.9", "--seed", "4",
                  "--n-best", "3").stdout == result.stdout


def test_translate_input_mistakes_are_user_errors(trained_run, tmp_path):
    result = invoke("translate", trained_run)
    assert result.exit_code == 2 and "give either TEXT or --input FILE" in result.stderr
    result = invoke("translate", trained_run, "--input", tmp_path / "missing.txt")
    assert result.exit_code == 2 and "missing.txt: no such file" in result.stderr
    result = invoke("translate", trained_run, "3rd of March 1998", "--beam-size", "2", "--n-best", "3")
    assert result.exit_code == 2 and "decode.n_best: 3 is more than decode.beam_size 2" in result.stderr
    result = invoke("translate", trained_run, "x", "--beam-size", "2", "--temperature", "0.5")
    assert result.exit_code == 2 and "exclude each other" in result.stderr


def test_using_a_missing_run_is_a_user_error(tmp_path):
    result = invoke("translate", tmp_path / "nothing", "x")
    assert result.exit_code == 2 and "no such run directory" in result.stderr


def test_train_then_rerun_resumes(tiny_recipe_file, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", tiny_recipe_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert "best_val_loss" in result.stderr
    # Where the start went: the setup and the first step add up to the time before training ran on.
    start = re.search(r"first_step +after ([\d.]+) s \(data, vocabularies and model ([\d.]+) s; the step itself, "
                      r"traced and compiled, ([\d.]+) s\)", result.stderr)
    wall = float(re.search(r"wall_seconds +([\d.]+)", result.stderr).group(1))
    assert start, result.stderr
    after, setup, step = map(float, start.groups())
    assert abs(after - setup - step) <= 0.11 and 0 < setup and 0 < step and after < wall
    result = invoke("train", tiny_recipe_file, "--out", out, "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert "resumed_from_epoch 1" in result.stderr and "epochs_run         1" in result.stderr


def test_check_summarises_without_training(tiny_recipe_file):
    result = invoke("check", tiny_recipe_file, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train_examples"] == 400 and summary["parameters"] > 0 and summary["longest_target_tokens"] == 10
    assert (summary["strategy"], summary["precision"]) == ("auto", "float32")


def test_every_verb_has_help_with_an_example():
    for verb in ("train", "check", "translate", "evaluate"):
        result = invoke(verb, "--help")
        assert result.exit_code == 0 and "textseq " + verb in result.output


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, code, said", [("SIGINT", 130, "interrupted"),  # what Ctrl-C sends
                                                     ("SIGTERM", 143, "stopped by SIGTERM")])  # kill, a scheduler
def test_ctrl_c_or_sigterm_says_how_to_resume_and_the_rerun_resumes(tiny_recipe_file, tmp_path, signal_name, code,
                                                                     said):
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "textseq", "train", str(tiny_recipe_file), "--out", str(out),
               "--set", "train.epochs=200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert process.poll() is None, "training ended before it could be interrupted"
        process.send_signal(getattr(signal, signal_name))
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert f"{said}: {out} keeps its last finished epoch ({state['epoch']}); run the same command" in stderr
    assert "Traceback" not in stderr
    resumed = invoke("train", tiny_recipe_file, "--out", out, "--set", f"train.epochs={state['epoch'] + 1}")
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed_from_epoch {state['epoch']}" in resumed.stderr
