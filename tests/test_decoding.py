import numpy as np
import tensorflow as tf

from textseq.data.vocab import EOS
from textseq.decoding import greedy_search
from textseq.inference import Translator


def test_greedy_tokens_are_the_argmax_of_the_teacher_forced_model(trained_run):
    translator = Translator.from_run(trained_run)
    source = translator.encode(["3rd of March 1998", "1998/3/3", ""])
    tokens, weights = greedy_search(translator.model, source, max_length=12)
    tokens = np.asarray(tokens)
    target_in = np.concatenate([np.full((3, 1), 2), tokens[:, :-1]], axis=1)
    logits = np.asarray(translator.model({"source": source, "target_in": tf.constant(target_in, tf.int32)}))
    for row in range(3):
        steps = list(tokens[row]).index(EOS) + 1 if EOS in tokens[row] else 12
        np.testing.assert_array_equal(logits[row, :steps].argmax(-1), tokens[row, :steps])
        assert (tokens[row, steps:] == 0).all()
    assert np.asarray(weights)[2].sum() == 0  # an empty source has nothing to attend to


def test_graph_and_eager_decoding_agree(trained_run):
    translator = Translator.from_run(trained_run)
    source = translator.encode(["Tue, 03.03.98", "march 3 1998"])
    eager, _ = greedy_search(translator.model, source, max_length=12)
    graph, _ = translator._search(source)
    np.testing.assert_array_equal(np.asarray(eager), graph.numpy())
