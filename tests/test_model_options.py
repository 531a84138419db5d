"""The model options (model.tie_embeddings, decoder_units with bridge, input_feeding, attention):
each trains as it decodes, keeps its weights where it says, and runs through training, the export
and the phone's step."""

import json

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from keras import ops

from conftest import ROOT, TINY, run_script_without_textseq, tiny_lm, trained
from textseq.cli import cli
from textseq.distribute import precision
from textseq.errors import UserError
from textseq.inference import LanguageModel, Translator
from textseq.layers import LuongAttention
from textseq.models import Seq2Seq, build_seq2seq
from textseq.recipe import ModelConfig, recipe_from_dict
from textseq.training import train

SOURCE = ops.array([[4, 5, 6, 7], [8, 9, 0, 0]])  # the second row padded
TARGET = ops.array([[2, 6, 7, 8], [2, 9, 5, 0]])
OPTIONS = {
    "tied": {"tie_embeddings": True},
    "tied, projected": {"tie_embeddings": True, "embedding_dim": 6},
    "dense bridge": {"decoder_units": 10, "bridge": "dense"},
    "zero bridge": {"bridge": "zero"},
    "input feeding": {"input_feeding": True},
    "input feeding, 2 layers": {"input_feeding": True, "layers": 2, "cell": "gru"},
    "general": {"attention": "general", "decoder_units": 12, "bridge": "dense"},
    "dot": {"attention": "dot"},
    "all": {"tie_embeddings": True, "input_feeding": True, "decoder_units": 10, "bridge": "dense",
            "attention": "general"},
}


def small(**options) -> Seq2Seq:
    keras.utils.set_random_seed(1)
    config = ModelConfig(**{"units": 8, "embedding_dim": 4, "attention_units": 4, **options})
    model = build_seq2seq(config, 12, 12, one_vocabulary=True)
    model({"source": SOURCE, "target_in": TARGET})
    return model


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_decoding_step_by_step_gives_the_training_logits_and_states(options):
    model = small(**options)
    logits, weights, final = model.logits_and_attention(SOURCE, TARGET, return_states=True)
    memory, states = model.encode(SOURCE)
    stepped, last_real = [], None
    for t in range(TARGET.shape[1]):
        step_logits, states, step_weights = model.step(TARGET[:, t], states, memory)
        stepped.append(step_logits)
        np.testing.assert_allclose(step_weights, weights[:, t], atol=1e-4)  # unscaled dot scores: float noise
        if t == 2:
            last_real = states  # the second row's last real token
    np.testing.assert_allclose(np.stack(stepped, 1)[0], logits[0], atol=1e-5)
    np.testing.assert_allclose(np.stack(stepped, 1)[1, :3], logits[1, :3], atol=1e-5)
    # Padding leaves every state (the attentional vector too) where the last real token put it.
    for got, row0, row1 in zip(keras.tree.flatten(final), keras.tree.flatten(states), keras.tree.flatten(last_real)):
        np.testing.assert_allclose(got[0], row0[0], atol=1e-6)
        np.testing.assert_allclose(got[1], row1[1], atol=1e-6)
    # Padded source positions get no attention, whatever the scores.
    assert float(ops.max(ops.abs(weights[1, :, 2:]))) == 0.0

    again = Seq2Seq.from_config(model.get_config())
    again({"source": SOURCE, "target_in": TARGET})
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again({"source": SOURCE, "target_in": TARGET}), logits, atol=1e-6)


def test_tied_logits_score_tokens_with_the_one_embedding_matrix():
    model = small(tie_embeddings=True)
    assert model.encoder.embedding is model.decoder.embedding
    assert [w.path for w in model.weights].count("seq2seq/encoder/embedding/embeddings") == 1
    assert not any("logits/kernel" in w.path for w in model.weights)
    before = model({"source": SOURCE, "target_in": TARGET})
    table = model.decoder.embedding.embeddings
    table.assign(ops.where(ops.arange(12)[:, None] == 11, 0.0, table))  # token 11 embedded as zeros
    after = model({"source": SOURCE, "target_in": TARGET})
    # Its logit is the bias alone now: the output layer reads the same matrix.
    np.testing.assert_allclose(after[..., 11], ops.broadcast_to(model.decoder.logits.bias[11], after.shape[:2]))
    assert not np.allclose(before[..., 11], after[..., 11])


@pytest.mark.parametrize("options", ["tied", "tied, projected"])
def test_tied_logits_multiply_in_bfloat16_under_mixed_bfloat16_and_return_float32(options):
    exact = small(**OPTIONS[options])
    with precision("mixed_bfloat16"):
        mixed = small(**OPTIONS[options])
    inputs = {"source": SOURCE, "target_in": TARGET}
    expected = exact(inputs)
    mixed.set_weights(exact.get_weights())
    logits = mixed(inputs)
    assert logits.dtype == "float32" and mixed.decoder.logits.compute_dtype == "bfloat16"
    assert 0 < float(ops.max(ops.abs(logits - expected))) < 0.1  # bfloat16 products, not float32 ones


def test_tying_the_keyboard_models_embeddings_cuts_it_to_about_a_third():
    recipe = yaml.safe_load((ROOT / "recipes" / "keyboard-en.yaml").read_text())["model"]
    sizes = {}
    for tied in (False, True):
        model = build_seq2seq(ModelConfig(**{**recipe, "tie_embeddings": tied}), 5000, 5000, one_vocabulary=True)
        model({"source": ops.ones((1, 3), "int32"), "target_in": ops.ones((1, 2), "int32")})
        sizes[tied] = model.count_params()
    assert 1.45e6 < sizes[False] < 1.55e6 and 0.5e6 < sizes[True] < 0.6e6, sizes


@pytest.mark.parametrize("tied", [False, True])
def test_normal_embeddings_start_with_vectors_of_about_unit_length(tied):
    spreads = {}
    for init in ("uniform", "normal"):
        keras.utils.set_random_seed(0)
        model = build_seq2seq(ModelConfig(embedding_dim=64, units=32, attention_units=8, embedding_init=init,
                                          tie_embeddings=tied), 3000, 3000, one_vocabulary=True)
        model({"source": ops.ones((1, 3), "int32"), "target_in": ops.ones((1, 2), "int32")})
        tables = [model.encoder.embedding.embeddings, model.decoder.embedding.embeddings]
        assert (tables[0] is tables[1]) == tied  # one vocabulary, tied: the encoder reads the decoder's table
        spreads[init] = [float(np.std(table.numpy())) for table in tables]
        restored = type(model.decoder).from_config(model.decoder.get_config())
        assert restored.embedding_init == model.encoder.embedding_init == init
    assert all(abs(std * 64 ** 0.5 - 1) < 0.02 for std in spreads["normal"]), spreads
    assert all(abs(std - 0.1 / 12 ** 0.5) < 0.001 for std in spreads["uniform"]), spreads  # Keras' U(-0.05, 0.05)


def test_a_zero_bridge_starts_the_decoder_from_zeros_and_a_dense_one_resizes_the_states():
    _, states = small(bridge="zero").encode(SOURCE)
    assert all(float(ops.max(ops.abs(s))) == 0.0 for s in keras.tree.flatten(states))
    _, states = small(decoder_units=10, bridge="dense", input_feeding=True).encode(SOURCE)
    assert [[tuple(s.shape) for s in layer] for layer in states] == [[(2, 10), (2, 10)], [(2, 10)]]


def test_luong_dot_scores_are_query_key_products_over_unmasked_keys():
    query = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")
    keys = np.random.default_rng(2).normal(size=(2, 4, 5)).astype("float32")
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    context, weights = LuongAttention(5, score="dot")(query, keys, keys_mask=mask)
    scores = np.where(mask[:, None], np.einsum("bqd,bkd->bqk", query, keys), -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(context, expected @ keys, atol=1e-5)
    general = LuongAttention(5, score="general")
    assert LuongAttention.from_config(general.get_config()).get_config() == general.get_config()
    with pytest.raises(ValueError, match="dot scores need keys of the queries' size"):
        LuongAttention(6, score="dot")(np.ones((1, 1, 6)), keys)


@pytest.mark.parametrize("overrides, message", [
    (["model.decoder_units=32"], "model.decoder_units: 32 differs from model.units (16), so the decoder cannot copy "
                                 "the encoder's states. Set model.bridge: dense"),
    (["model.decoder_units=32", "model.bridge=dense", "model.attention=dot"],
     "model.attention: dot compares decoder states (32) with encoder outputs (16) of another size"),
    (["model.input_feeding=true", "model.recurrent_dropout=0.2"], "Set model.recurrent_dropout: 0"),
])
def test_a_recipe_whose_options_do_not_fit_together_is_refused_naming_the_key(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recipe_from_dict(TINY, overrides)


ALL_OPTIONS = ["model.tie_embeddings=true", "model.input_feeding=true", "model.decoder_units=24", "model.bridge=dense",
               "model.attention=general", "model.embedding_init=normal"]


@pytest.mark.slow
def test_a_translation_run_with_every_option_trains_resumes_and_exports(tmp_path):
    from test_export import LOAD_AND_TRANSLATE, served_by_export

    run = tmp_path / "run"
    first = recipe_from_dict({**TINY, "vocab": {"level": "char", "shared": False}}, ALL_OPTIONS)
    train(first, run, verbose=0)
    more = recipe_from_dict({**TINY, "vocab": {"level": "char", "shared": False}}, [*ALL_OPTIONS, "train.epochs=2"])
    assert train(more, run, verbose=0)["resumed_from_epoch"] == 1
    translator = Translator.from_run(run)
    assert translator.model.decoder.tie_embeddings and translator.model.encoder.embedding is not \
        translator.model.decoder.embedding  # two vocabularies: only the target side is tied
    texts = ["3rd of March 1998", "Saturday, the 31st of December 1999"]
    served = served_by_export(run, tmp_path / "export", LOAD_AND_TRANSLATE, texts)
    assert served["text"] == translator.translate(texts)


@pytest.mark.slow
def test_a_tied_input_fed_language_model_runs_on_the_phone_as_in_the_library(tmp_path):
    from test_litert import STEP_THROUGH, TEXTS

    raw = tiny_lm(tmp_path)
    raw["model"].update(tie_embeddings=True, input_feeding=True, decoder_units=24, bridge="dense")
    run = trained(raw, tmp_path / "run")
    model = LanguageModel.from_run(run)
    assert model.model.encoder.embedding is model.model.decoder.embedding
    export = tmp_path / "litert"
    result = CliRunner().invoke(cli, ["export", str(run), str(export), "--format", "litert", "--quantize", "none"])
    assert result.exit_code == 0, result.output
    script = tmp_path / "step.py"
    script.write_text(STEP_THROUGH)
    results = run_script_without_textseq(script, json.dumps({"none": str(export)}), json.dumps(TEXTS), json.dumps([3]))
    for text, want, got in zip(TEXTS, model.predict(TEXTS, 10), results["none"]["top"]):
        assert [model.vocab_tokens[i] for i in got["ids"]] == [p.token for p in want], text
        np.testing.assert_allclose(got["probabilities"], [p.probability for p in want], atol=1e-4, err_msg=text)

    # With int8 weights the one table is stored once: the rows the step gathers are the output layer's weights.
    from tensorflow.lite.tools import flatbuffer_utils

    dynamic = tmp_path / "litert-dynamic"
    result = CliRunner().invoke(cli, ["export", str(run), str(dynamic), "--format", "litert", "--quantize", "dynamic"])
    assert result.exit_code == 0, result.output
    parsed = flatbuffer_utils.read_model(str(dynamic / "next_word.tflite"))
    table_shape = [model.target.vocab_size, raw["model"]["embedding_dim"]]
    tables = {tensor.buffer for graph in parsed.subgraphs for tensor in graph.tensors
              if list(tensor.shape) == table_shape and parsed.buffers[tensor.buffer].data is not None}
    assert len(tables) == 1, tables
    results = run_script_without_textseq(script, json.dumps({"dynamic": str(dynamic)}), json.dumps(TEXTS),
                                         json.dumps([3]))
    for text, want, got in zip(TEXTS, model.predict(TEXTS, 10), results["dynamic"]["top"]):
        assert got["ids"][0] in [model.vocab_tokens.index(p.token) for p in want[:3]], text
