"""TensorFlow Datasets as a source, offline: tfds.testing.mock_data serves known examples."""

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from textseq.data import sources
from textseq.data.sources import load_pairs, load_text
from textseq.errors import UserError
from textseq.evaluation import evaluate
from textseq.recipe import recipe_from_dict
from textseq.training import train

SHAKESPEARE = {
    "train": "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 30,
    "validation": "MENENIUS:\nEither you must confess yourselves wondrous malicious.\n",
    "test": "CORIOLANUS:\nThey said they were an-hungry.\n",
}
TED = {"train": [("olá mundo", "hello world"), ("obrigado", "thank you")] * 40,
       "validation": [("bom dia", "good morning")], "test": [("boa noite", "good night")]}


def serve(self, split, **kwargs):
    if self.name == "tiny_shakespeare":
        return tf.data.Dataset.from_tensor_slices({"text": [SHAKESPEARE[split]]})
    pt, en = zip(*TED[split])
    return tf.data.Dataset.from_tensor_slices({"pt": list(pt), "en": list(en)})


@pytest.fixture
def mocked():
    with tfds.testing.mock_data(as_dataset_fn=serve, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_language_model_from_tiny_shakespeare(mocked, tmp_path):
    recipe = recipe_from_dict({
        "task": "language_model",
        "data": {"source": "tfds", "dataset": "tiny_shakespeare", "context": 8, "continuation": 8},
        "vocab": {"level": "char"},
        "model": {"embedding_dim": 8, "units": 16, "attention_units": 8},
        "train": {"epochs": 1, "batch_size": 16},
    })
    assert load_text(recipe.data, "validation") == SHAKESPEARE["validation"]
    train(recipe, tmp_path / "run", verbose=0)
    metrics = evaluate(tmp_path / "run", "test")
    assert metrics["tokens"] == len(SHAKESPEARE["test"])  # every character once, newlines too


def test_translation_pairs_from_named_features(mocked):
    recipe = recipe_from_dict({"data": {"source": "tfds", "dataset": "ted_hrlr_translate/pt_to_en",
                                        "source_language": "pt", "target_language": "en"}})
    assert load_pairs(recipe.data, "train") == TED["train"]
    wrong = recipe_from_dict({"data": {"source": "tfds", "dataset": "ted_hrlr_translate/pt_to_en",
                                       "source_language": "de", "target_language": "en"}})
    with pytest.raises(UserError, match="no feature 'de'; it has en, pt"):
        load_pairs(wrong.data, "test")


def test_unknown_or_unreachable_datasets_are_user_errors(tmp_path, monkeypatch):
    recipe = recipe_from_dict({"task": "language_model", "data": {"source": "tfds", "dataset": "tiny_shakespear"}})
    with pytest.raises(UserError, match="no TensorFlow Datasets dataset named 'tiny_shakespear'"):
        load_text(recipe.data, "train")
    offline = recipe_from_dict({"task": "language_model",
                                "data": {"source": "tfds", "dataset": "tiny_shakespeare", "dir": str(tmp_path)}})
    monkeypatch.setattr(sources, "network_reachable", lambda: False)  # offline, whatever this machine has
    with pytest.raises(UserError, match=rf"not prepared in {tmp_path}, and no network to download it; prepare it "
                                        r"where there is one \(`tfds build tiny_shakespeare --data_dir DIR`\)"):
        load_text(offline.data, "train")
    with pytest.raises(UserError, match="data.dataset is needed with data.source: tfds"):
        recipe_from_dict({"task": "language_model", "data": {"source": "tfds"}})
