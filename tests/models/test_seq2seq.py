import json

import keras
import numpy as np
import pytest

from textseq.layers.attention import BahdanauAttention
from textseq.models import Decoder, Encoder, Seq2Seq, build_seq2seq
from textseq.models.recurrent import fast_path_warnings
from textseq.recipe import ModelConfig

SOURCE = np.array([[4, 5, 6, 7, 0], [8, 9, 0, 0, 0]], dtype="int32")
TARGET_IN = np.array([[2, 6, 7, 8], [2, 5, 0, 0]], dtype="int32")
CONFIGS = [
    ModelConfig(cell="lstm", units=8, embedding_dim=4, attention_units=4, layers=2, bidirectional=True),
    ModelConfig(cell="gru", units=8, embedding_dim=4, attention_units=4, layers=1, bidirectional=False),
    ModelConfig(cell="gru", units=6, embedding_dim=4, attention_units=4, layers=2, bidirectional=True),
]


def tiny(config):
    keras.utils.set_random_seed(0)
    model = build_seq2seq(config, 12, 10)
    model({"source": SOURCE, "target_in": TARGET_IN})
    return model


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cell}-{c.layers}-{c.bidirectional}")
def test_output_does_not_change_when_more_padding_is_added(config):
    model = tiny(config)
    logits = np.asarray(model({"source": SOURCE, "target_in": TARGET_IN}))
    more = np.asarray(model({"source": np.pad(SOURCE, [(0, 0), (0, 6)]), "target_in": np.pad(TARGET_IN, [(0, 0), (0, 3)])}))
    real = TARGET_IN != 0
    np.testing.assert_allclose(more[:, :4][real], logits[real], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cell}-{c.layers}-{c.bidirectional}")
def test_step_reproduces_teacher_forced_logits(config):
    model = tiny(config)
    logits = np.asarray(model({"source": SOURCE, "target_in": TARGET_IN}))
    memory, states = model.encode(SOURCE)
    stepped = []
    for t in range(TARGET_IN.shape[1]):
        step_logits, states, weights = model.step(TARGET_IN[:, t], states, memory)
        stepped.append(np.asarray(step_logits))
        assert (np.asarray(weights)[SOURCE == 0] == 0).all()
    np.testing.assert_allclose(np.stack(stepped, 1)[:, :2], logits[:, :2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack(stepped, 1)[0], logits[0], rtol=1e-5, atol=1e-5)


def test_attention_weights_are_zero_on_source_padding():
    model = tiny(CONFIGS[0])
    _, weights = model.logits_and_attention(SOURCE, TARGET_IN)
    weights = np.asarray(weights)
    assert (weights[1, :, 2:] == 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: c.cell)
def test_save_and_load_round_trip(tmp_path, config):
    model = tiny(config)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(restored, Seq2Seq)
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config(), default=list)
    np.testing.assert_array_equal(np.asarray(restored({"source": SOURCE, "target_in": TARGET_IN})),
                                  np.asarray(model({"source": SOURCE, "target_in": TARGET_IN})))


def test_layers_get_config_round_trip():
    for layer in (Encoder(12, 4, 6, cell="gru", num_layers=2, bidirectional=True, dropout=0.1),
                  Decoder(10, 4, 6, attention=BahdanauAttention(3), cell="gru", num_layers=2, dropout=0.2)):
        restored = type(layer).from_config(layer.get_config())
        assert restored.get_config() == layer.get_config()


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="Received: units=7"):
        Encoder(12, 4, 7, bidirectional=True)
    with pytest.raises(ValueError, match="Received: cell='rnn'"):
        Encoder(12, 4, 6, cell="rnn")
    with pytest.raises(ValueError, match="Received: dropout=1.0"):
        Decoder(10, 4, 6, attention=BahdanauAttention(3), dropout=1.0)
    with pytest.raises(ValueError, match="a copy bridge needs decoder units equal to the encoder's"):
        Seq2Seq(Encoder(12, 4, 6), Decoder(10, 4, 8, attention=BahdanauAttention(3)))
    with pytest.raises(ValueError, match="must agree on num_layers and cell"):
        Seq2Seq(Encoder(12, 4, 6, num_layers=2), Decoder(10, 4, 8, attention=BahdanauAttention(3)), bridge="dense")


def recurrent_layers(model):
    found = []
    for layer in model._flatten_layers():
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            found.append(layer)
    return found


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_layers_meet_the_fused_kernel_conditions(cell):
    # The conditions Keras checks before it runs cuDNN (keras.src.backend.tensorflow.rnn.cudnn_ok).
    model = build_seq2seq(ModelConfig(cell=cell, units=8, embedding_dim=4, attention_units=4, layers=2), 12, 12)
    layers = recurrent_layers(model)
    assert len(layers) == 2 * 2 + 2  # bidirectional encoder: two per layer
    for layer in layers:
        assert layer.cell.activation is keras.activations.tanh
        assert layer.cell.recurrent_activation is keras.activations.sigmoid
        assert layer.cell.use_bias and not layer.unroll and layer.recurrent_dropout == 0
        assert layer.use_cudnn == "auto" and (cell == "lstm" or layer.cell.reset_after)
    assert fast_path_warnings(ModelConfig(cell=cell)) == []


def test_recurrent_dropout_reaches_every_layer_and_is_warned_about():
    config = ModelConfig(units=8, embedding_dim=4, attention_units=4, recurrent_dropout=0.25)
    model = build_seq2seq(config, 12, 12)
    assert [layer.recurrent_dropout for layer in recurrent_layers(model)] == [0.25] * 3
    (warning,) = fast_path_warnings(config)
    assert warning.startswith("model.recurrent_dropout: 0.25 takes every LSTM layer off the fused (cuDNN) kernel")
    clone = Seq2Seq.from_config(model.get_config())
    assert clone.encoder.recurrent_dropout == clone.decoder.recurrent_dropout == 0.25
