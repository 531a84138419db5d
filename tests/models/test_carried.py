"""CarriedStates: the decoder goes on from each row's final states of the previous call (or starts
from the encoder's where `reset`), over the layers and weights of a stateless Seq2Seq."""

import keras
import numpy as np
import pytest

from textseq.models import CarriedStates, build_seq2seq
from textseq.recipe import ModelConfig

SOURCES = [np.array([[4, 5, 6, 7], [8, 9, 4, 0]], "int32"), np.array([[6, 7, 8, 9], [5, 5, 6, 7]], "int32")]
TARGETS = [np.array([[2, 6, 7], [2, 5, 5]], "int32"), np.array([[8, 9, 4], [6, 7, 0]], "int32")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_each_row_goes_on_from_its_last_state_unless_reset(cell):
    keras.utils.set_random_seed(0)
    model = build_seq2seq(ModelConfig(cell=cell, units=8, embedding_dim=4, attention_units=4, layers=2), 12, 10)
    carried = CarriedStates(model, rows=2)
    first = carried({"source": SOURCES[0], "target_in": TARGETS[0], "reset": np.array([1, 1], "int32")})
    second = carried({"source": SOURCES[1], "target_in": TARGETS[1], "reset": np.array([0, 1], "int32")})

    # The same through the stateless model, with the states passed in and out by hand.
    logits, _, states = model.logits_and_attention(SOURCES[0], TARGETS[0], return_states=True)
    np.testing.assert_allclose(first, logits, rtol=1e-5, atol=1e-6)
    expected, _ = model.logits_and_attention(SOURCES[1], TARGETS[1], initial_states=states,
                                             reset=np.array([0, 1], "int32"))
    np.testing.assert_allclose(second, expected, rtol=1e-5, atol=1e-6)
    # Row 1 was reset: it starts from its encoder's states, as the stateless model does on its own.
    np.testing.assert_allclose(second[1], model({"source": SOURCES[1], "target_in": TARGETS[1]})[1], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(second[0], model({"source": SOURCES[1], "target_in": TARGETS[1]})[0], atol=1e-4)


def test_the_carried_states_are_no_weights_of_the_model(tmp_path):
    model = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 12, 10)
    carried = CarriedStates(model, rows=2)
    carried({"source": SOURCES[0], "target_in": TARGETS[0], "reset": np.array([1, 1], "int32")})
    assert [v.path for v in carried.weights] == [v.path for v in model.weights]
    carried.save_weights(tmp_path / "carried.weights.h5")  # what a checkpoint holds loads into the plain model
    plain = build_seq2seq(ModelConfig(units=8, embedding_dim=4, attention_units=4), 12, 10)
    plain({"source": SOURCES[0], "target_in": TARGETS[0]})
    plain.load_weights(tmp_path / "carried.weights.h5")
    np.testing.assert_allclose(plain({"source": SOURCES[1], "target_in": TARGETS[1]}),
                               model({"source": SOURCES[1], "target_in": TARGETS[1]}), rtol=1e-6)
    assert not hasattr(model, "carry_states")
