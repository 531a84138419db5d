import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from textseq.constants import BOS, EOS
from textseq.decoding import DecodingOptions, beam_search, greedy_search, sample
from textseq.errors import UserError
from textseq.inference import Translator

SOURCES = ["3rd of March 1998", "1998/3/3", "", "Tue, 03.03.98", "march 3 1998", "12 Jan 2001", "31.12.1999",
           "Saturday, 1 May 1976", "05/06/07", "the 9th of october, 2015"]


@pytest.fixture(scope="module")
def translator(trained_run):
    return Translator.from_run(trained_run)


def teacher_forced_log_probs(model, source, tokens):
    """log p(tokens | source) per row, from the training-time (teacher-forced) model, up to EOS."""
    target_in = np.concatenate([np.full((len(tokens), 1), BOS), tokens[:, :-1]], axis=1)
    logits = model({"source": source, "target_in": tf.constant(target_in, tf.int32)})
    log_probs = tf.nn.log_softmax(logits).numpy()
    picked = np.take_along_axis(log_probs, tokens[:, :, None], axis=-1)[:, :, 0]
    return (picked * (tokens != 0)).sum(axis=1)


def lengths(tokens):
    return (np.asarray(tokens) != 0).sum(axis=-1)


def test_greedy_tokens_are_the_argmax_of_the_teacher_forced_model(translator):
    source = translator.encode(["3rd of March 1998", "1998/3/3", ""])
    tokens, scores, weights = (np.asarray(x)[:, 0] for x in greedy_search(translator.model, source, max_length=12))
    target_in = np.concatenate([np.full((3, 1), BOS), tokens[:, :-1]], axis=1)
    logits = np.asarray(translator.model({"source": source, "target_in": tf.constant(target_in, tf.int32)}))
    for row in range(3):
        steps = list(tokens[row]).index(EOS) + 1 if EOS in tokens[row] else 12
        np.testing.assert_array_equal(logits[row, :steps].argmax(-1), tokens[row, :steps])
        assert (tokens[row, steps:] == 0).all()
    np.testing.assert_allclose(scores, teacher_forced_log_probs(translator.model, source, tokens), atol=1e-4)
    assert weights[2].sum() == 0  # an empty source has nothing to attend to


def test_graph_and_eager_decoding_agree(translator):
    source = translator.encode(["Tue, 03.03.98", "march 3 1998"])
    options = DecodingOptions(max_length=12, beam_size=3)
    eager, _, _ = beam_search(translator.model, source, 12, beam_size=3)
    graph, _, _ = translator.search(source, options)
    np.testing.assert_array_equal(np.asarray(eager), graph.numpy())


def test_one_texts_beam_search_on_xla_finds_what_the_graph_finds_in_a_batch(trained_run):
    # A server's one text is searched as one XLA computation over ids padded to a multiple of 16
    # steps; in a batch, by TensorFlow's graph. Padding is masked, so both find the same.
    translator = Translator.from_run(trained_run)
    translator.texts.xla_for_one_text = True
    options = DecodingOptions(max_length=12, beam_size=3, n_best=2)
    for text, prefix in [("Saturday, 1 May 1976", None), ("05/06/07", None), ("3rd of March 1998", "19")]:
        alone_ids = translator.encode([text])
        batch_ids = translator.encode([text, "the 9th of october, 2015 and more"])  # a longer row pads this one
        forced = [translator.texts.prefix([prefix] * n, options) for n in (1, 2)] if prefix else [None, None]
        alone = translator.search(alone_ids, options, forced[0])
        batch = translator.search(batch_ids, options, forced[1])
        np.testing.assert_array_equal(alone[0].numpy()[0], batch[0].numpy()[0])
        np.testing.assert_allclose(alone[1].numpy()[0], batch[1].numpy()[0], atol=1e-5)
        steps = alone_ids.shape[1]
        assert alone[2].shape[-1] == steps  # the weights cover the text's own steps, not the padding
        np.testing.assert_allclose(alone[2].numpy()[0], batch[2].numpy()[0, ..., :steps], atol=1e-5)
        assert (batch[2].numpy()[0, ..., steps:] == 0).all()


def test_beam_of_one_is_exactly_greedy(translator):
    source = translator.encode(SOURCES)
    greedy = greedy_search(translator.model, source, max_length=12)
    for alpha in (0.0, 1.0):
        beam = beam_search(translator.model, source, 12, beam_size=1, alpha=alpha)
        np.testing.assert_array_equal(np.asarray(beam[0]), np.asarray(greedy[0]))
        np.testing.assert_array_equal(np.asarray(beam[2]), np.asarray(greedy[2]))
    np.testing.assert_allclose(np.asarray(beam_search(translator.model, source, 12, 1)[1]), np.asarray(greedy[1]),
                               atol=1e-5)


def test_beam_finds_hypotheses_at_least_as_probable_as_greedy(translator):
    source = translator.encode(SOURCES)
    _, greedy_scores, _ = greedy_search(translator.model, source, max_length=12)
    tokens, scores, _ = beam_search(translator.model, source, 12, beam_size=5, alpha=0.0, n_best=5)
    tokens, scores = np.asarray(tokens), np.asarray(scores)
    assert (scores[:, 0] >= np.asarray(greedy_scores)[:, 0] - 1e-5).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    # The scores are the model's own log-probabilities of the returned tokens.
    for k in range(5):
        np.testing.assert_allclose(scores[:, k], teacher_forced_log_probs(translator.model, source, tokens[:, k]),
                                   atol=1e-3)
    for row in tokens:  # n-best lists hold distinct hypotheses
        assert len({tuple(h) for h in row}) == 5


class ScriptedModel:
    """A stand-in model whose next-token probabilities depend only on the step: `table[step]`."""

    def __init__(self, table):
        self.log_probs = np.log(np.asarray(table, np.float32) + 1e-12)

    def encode(self, source):
        batch = ops.shape(source)[0]
        return {"outputs": ops.zeros((batch, 1, 1))}, [[ops.zeros((batch,), "int32")]]

    def step(self, token_ids, states, memory):
        (steps,), last = states[0], len(self.log_probs) - 1
        logits = ops.take(ops.convert_to_tensor(self.log_probs), ops.minimum(steps, last), axis=0)
        return logits, [[steps + 1]], ops.ones((ops.shape(token_ids)[0], 1))


class CountedSteps(ScriptedModel):
    steps = 0

    def step(self, token_ids, states, memory):
        self.steps += 1
        return super().step(token_ids, states, memory)


def test_the_search_stops_once_later_steps_cannot_change_its_n_best():
    # "</s>" first (0.6), or "a" (0.4) and then "a" for ever: nothing open can beat -0.51 once it ended.
    model = CountedSteps([[0, 0, 0, 0.6, 0.4], [0, 0, 0, 1e-6, 1.0]])
    tokens, scores, _ = beam_search(model, ops.ones((1, 1), "int32"), 50, beam_size=2)
    assert np.asarray(tokens)[0, 0, 0] == EOS and model.steps == 1
    # Two best wanted: the open "a a ..." can still end, so the search goes on to max_length.
    model.steps = 0
    tokens, scores, _ = beam_search(model, ops.ones((1, 1), "int32"), 50, beam_size=2, n_best=2)
    assert model.steps == 50
    # A length penalty may still lift a longer hypothesis over the ended one: no early end either.
    model.steps = 0
    beam_search(model, ops.ones((1, 1), "int32"), 50, beam_size=2, alpha=1.0)
    assert model.steps == 50


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("prefix", [None, "1"])
def test_stopping_early_finds_the_best_that_searching_until_every_hypothesis_ends_finds(translator, alpha, prefix):
    # With n_best = beam_size the search can only stop when every hypothesis has ended.
    source = translator.encode(SOURCES)
    forced = None if prefix is None else translator.texts.prefix([prefix] * len(SOURCES), DecodingOptions())
    early = beam_search(translator.model, source, 12, beam_size=4, alpha=alpha, prefix=forced)
    full = beam_search(translator.model, source, 12, beam_size=4, alpha=alpha, n_best=4, prefix=forced)
    np.testing.assert_array_equal(np.asarray(early[0])[:, 0], np.asarray(full[0])[:, 0])
    np.testing.assert_array_equal(np.asarray(early[1])[:, 0], np.asarray(full[1])[:, 0])
    np.testing.assert_array_equal(np.asarray(early[2])[:, 0], np.asarray(full[2])[:, 0])


def test_length_penalty_favours_longer_outputs():
    # ids: 0 PAD, 1 UNK, 2 BOS, 3 EOS, 4 "a". First step: EOS 0.4, "a" 0.6; then EOS 0.5, "a" 0.5.
    # log p: "</s>" -0.92, "a </s>" -1.20, "a a </s>" -1.90. Divided by ((5 + length) / 6) ** 2:
    # -0.92, -0.88, -1.07, so alpha 2 prefers "a </s>" where alpha 0 prefers the shortest.
    model = ScriptedModel([[0, 0, 0, 0.4, 0.6], [0, 0, 0, 0.5, 0.5]])
    source = ops.ones((2, 1), "int32")
    shortest, plain_scores, _ = beam_search(model, source, 6, beam_size=3, alpha=0.0)
    longer, scores, _ = beam_search(model, source, 6, beam_size=3, alpha=2.0)
    np.testing.assert_array_equal(np.asarray(shortest)[:, 0], [[3, 0, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(np.asarray(longer)[:, 0], [[4, 3, 0, 0, 0, 0]] * 2)
    np.testing.assert_allclose(np.asarray(plain_scores)[:, 0], np.log(0.4), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(scores)[:, 0], np.log(0.3) / (7 / 6) ** 2, rtol=1e-5)
    greedy, _, _ = greedy_search(model, source, 6)  # greedy takes "a" while it is the most probable
    np.testing.assert_array_equal(np.asarray(greedy)[:, 0], [[4, 3, 0, 0, 0, 0]] * 2)


def test_beam_ties_go_to_the_earlier_hypothesis_then_the_lower_token():
    # ids 4, 5, 6 are words. Step 0: 4, 5, 6 equally likely; step 1: 5 and 6 tie, 4 is less likely;
    # then EOS. A beam of 3 keeps, among equal candidates, the earlier hypothesis' and the lower
    # token's, as one top-k over all (hypothesis, token) candidates does.
    model = ScriptedModel([[0, 0, 0, 0, 0.3, 0.3, 0.3], [0, 0, 0, 0, 0.2, 0.4, 0.4], [0, 0, 0, 1, 0, 0, 0]])
    tokens, scores, _ = beam_search(model, ops.ones((1, 1), "int32"), 4, beam_size=3, n_best=3)
    np.testing.assert_array_equal(np.asarray(tokens)[0, :, :3], [[4, 5, 3], [4, 6, 3], [5, 5, 3]])
    np.testing.assert_allclose(np.asarray(scores)[0], np.log([0.4 / 3] * 3), rtol=1e-5)  # the table, normalised


def test_sampling_is_seeded_and_its_limits_hold(translator):
    source = translator.encode(SOURCES)
    first = sample(translator.model, source, 12, temperature=1.5, seed=7)[0]
    again = sample(translator.model, source, 12, temperature=1.5, seed=7)[0]
    other = sample(translator.model, source, 12, temperature=1.5, seed=8)[0]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    greedy = np.asarray(greedy_search(translator.model, source, max_length=12)[0])
    np.testing.assert_array_equal(np.asarray(sample(translator.model, source, 12, top_k=1, seed=3)[0]), greedy)
    np.testing.assert_array_equal(np.asarray(sample(translator.model, source, 12, top_p=1e-6, seed=3)[0]), greedy)
    samples, scores, _ = sample(translator.model, source, 12, temperature=2.0, seed=1, num_samples=4)
    assert samples.shape[:2] == (len(SOURCES), 4)
    assert (np.diff(np.asarray(scores), axis=1) <= 1e-6).all()


def test_translator_options_and_n_best_keep_input_order(translator):
    options = translator.options(beam_size=4, n_best=3)
    assert options.method == "beam" and options.max_length == 12
    results = translator.n_best(SOURCES, options, batch_size=3)
    assert [len(r) for r in results] == [3] * len(SOURCES)
    alone = [translator.n_best([text], options)[0] for text in SOURCES[:3]]
    assert [r[0].text for r in results[:3]] == [a[0].text for a in alone]
    assert translator.options(temperature=0.7).method == "sample"  # sampling turns the recipe's beam off
    with pytest.raises(UserError, match="decode.n_best: 6 is more than decode.beam_size 4"):
        translator.options(beam_size=4, n_best=6)


def test_attention_rows_belong_to_the_produced_tokens(translator):
    attention = translator.attention("3rd of March 1998")
    assert attention.source_tokens == list("3rd of March 1998")
    assert attention.weights.shape == (len(attention.output_tokens), len(attention.source_tokens))
    np.testing.assert_allclose(attention.weights.sum(axis=1), 1.0, atol=1e-5)
