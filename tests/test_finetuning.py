"""Fine-tuning (train.init_from) and reused vocabularies (vocab.from): real runs, real files."""

import csv
import json

import pytest

from conftest import TINY
from textseq.errors import UserError
from textseq.evaluation import evaluate
from textseq.recipe import recipe_from_dict
from textseq.training import train


def first_validation_loss(run) -> float:
    with open(run / "metrics.csv", encoding="utf-8") as f:
        return float(next(csv.DictReader(f))["val_loss"])


def test_a_fine_tuned_run_starts_from_the_weights_and_vocabulary_of_the_run_it_names(trained_run, tmp_path):
    # The same data, and a learning rate too small to move a weight: the first validation is the
    # origin's own model scored on the same examples (dropout and how new weights would start may
    # differ: no weight's shape depends on them).
    tuned = tmp_path / "tuned"
    summary = train(recipe_from_dict(TINY, [f"train.init_from={trained_run}", "train.learning_rate=1e-12",
                                            "model.dropout=0.1", "model.embedding_init=normal"]), tuned, verbose=0)
    origin_loss = evaluate(trained_run, "validation")["loss"]
    assert first_validation_loss(tuned) == pytest.approx(origin_loss, rel=1e-5)
    assert (tuned / "vocab.txt").read_bytes() == (trained_run / "vocab.txt").read_bytes()
    record = json.loads((tuned / "run.json").read_text())["init_from"]
    assert record["run"] == str(trained_run) and record["weights"] == str(trained_run / "model.weights.h5")
    assert summary["epochs_done"] == 1

    # From scratch, the same recipe starts far worse: the weights really came from the origin.
    scratch = tmp_path / "scratch"
    train(recipe_from_dict(TINY, ["train.learning_rate=1e-12"]), scratch, verbose=0)
    assert first_validation_loss(scratch) > origin_loss + 0.5

    # A resumed fine-tuned run goes on from its own checkpoint, even with the origin gone elsewhere.
    more = recipe_from_dict(TINY, [f"train.init_from={trained_run}", "train.learning_rate=1e-12",
                                   "model.dropout=0.1", "model.embedding_init=normal", "train.epochs=2"])
    assert train(more, tuned, verbose=0)["resumed_from_epoch"] == 1


def test_a_checkpoint_file_can_be_the_origin_too(trained_run, tmp_path):
    checkpoint = sorted((trained_run / "checkpoints").glob("epoch-*.weights.h5"))[0]  # with Adam's moments
    tuned = tmp_path / "tuned"
    train(recipe_from_dict(TINY, [f"train.init_from={checkpoint}", "train.learning_rate=1e-12"]), tuned, verbose=0)
    assert json.loads((tuned / "run.json").read_text())["init_from"]["weights"] == str(checkpoint)


@pytest.mark.parametrize("override, message", [
    ("model.units=32", "model.units: 32, but train.init_from's run {run} has 16: its weights would not fit. "
                       "Set model.units: 16"),
    ("model.cell=gru", "model.cell: 'gru', but train.init_from's run {run} has 'lstm'"),
    ("vocab.level=word", "vocab.level: 'word', but train.init_from's run {run} has vocab.level: 'char'"),
    ("vocab.from=elsewhere", "vocab.from: elsewhere, but train.init_from's weights were trained with the vocabulary"),
])
def test_a_recipe_that_changes_the_models_shape_is_refused_naming_the_key(trained_run, tmp_path, override, message):
    with pytest.raises(UserError) as error:
        train(recipe_from_dict(TINY, [f"train.init_from={trained_run}", override]), tmp_path / "tuned", verbose=0)
    assert message.format(run=trained_run) in str(error.value)
    assert not (tmp_path / "tuned" / "vocab.txt").exists()  # refused before any data was read


def test_an_origin_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(UserError, match="train.init_from: .*nowhere: no such file or directory; give a trained run"):
        train(recipe_from_dict(TINY, [f"train.init_from={tmp_path / 'nowhere'}"]), tmp_path / "tuned", verbose=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train.init_from: .*empty: not a textseq run directory"):
        train(recipe_from_dict(TINY, [f"train.init_from={tmp_path / 'empty'}"]), tmp_path / "tuned", verbose=0)


def test_vocab_from_reuses_a_sentencepiece_model_byte_for_byte(tmp_path):
    from textseq.data.subwords import train_sentencepiece
    from textseq.data.synthetic import dates_examples
    from textseq.recipe import VocabConfig

    texts = [text for pair in dates_examples("train", 400, seed=7) for text in pair]
    model = train_sentencepiece(texts, VocabConfig(level="sentencepiece", size=400))  # 256 bytes, 57 characters
    (tmp_path / "spm.model").write_bytes(model)
    recipe = recipe_from_dict(TINY, ["vocab.level=sentencepiece", f"vocab.from={tmp_path / 'spm.model'}"])
    train(recipe, tmp_path / "run", verbose=0)
    assert (tmp_path / "run" / "spm.model").read_bytes() == model

    with pytest.raises(UserError, match="vocab.level: 'char', but the file .*spm.model has vocab.level: "
                                        "'sentencepiece'.*Set vocab.level: 'sentencepiece'"):
        train(recipe_from_dict(TINY, [f"vocab.from={tmp_path / 'spm.model'}"]), tmp_path / "char", verbose=0)
    with pytest.raises(UserError, match="vocab.from: .*spm.model is one vocabulary, for both sides; set vocab.shared"):
        train(recipe_from_dict(TINY, ["vocab.level=sentencepiece", "vocab.shared=false",
                                      f"vocab.from={tmp_path / 'spm.model'}"]), tmp_path / "two", verbose=0)


def test_vocab_from_a_run_takes_its_vocabulary_without_its_weights(trained_run, tmp_path):
    train(recipe_from_dict(TINY, [f"vocab.from={trained_run}", "model.units=32"]), tmp_path / "run", verbose=0)
    assert (tmp_path / "run" / "vocab.txt").read_bytes() == (trained_run / "vocab.txt").read_bytes()
    assert "init_from" not in json.loads((tmp_path / "run" / "run.json").read_text())
