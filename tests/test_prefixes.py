"""Forced prefixes: a translation that starts with given target text (interactive translation)."""

import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.inference import Translator

SOURCES = ["3rd of March 1998", "Tue, 03.03.98", "the 1st of july, 2031"]


@pytest.fixture(scope="module")
def translator(trained_run):
    return Translator.from_run(trained_run)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_forcing_the_models_own_first_tokens_changes_nothing(translator, beam_size):
    options = translator.options(beam_size=beam_size)
    free = translator.n_best(SOURCES, options)
    forced = translator.n_best(SOURCES, options, prefixes=[h[0].text[:4] for h in free])
    assert [h[0].text for h in forced] == [h[0].text for h in free]
    assert [h[0].score for h in forced] == pytest.approx([h[0].score for h in free], abs=1e-4)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_an_output_starts_with_its_prefix_as_given_and_the_search_goes_on_from_there(translator, beam_size):
    options = translator.options(beam_size=beam_size)
    free = translator.n_best(SOURCES, options)
    prefixes = ["2077-", "X19", "2031-07-02"]  # X is no target character: it decodes as <unk>, shown as given
    forced = translator.n_best(SOURCES, options, prefixes=prefixes)
    for prefix, hypotheses, unforced in zip(prefixes, forced, free):
        assert hypotheses[0].text.startswith(prefix) and len(hypotheses[0].text) > len(prefix)
        assert hypotheses[0].score < unforced[0].score  # the forced tokens' log-probabilities count
    assert forced[0][0].text[:5] == "2077-" and forced[0][0].text[5:] == free[0][0].text[5:]  # month, day as before


def test_the_command_and_the_api_take_a_prefix(trained_run, translator):
    result = CliRunner().invoke(cli, ["translate", str(trained_run), SOURCES[0], "--prefix", "2077-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == translator.translate([SOURCES[0]], prefixes=["2077-"])[0]

    from textseq.serve.app import Api
    from textseq.serve.requests import TRANSLATE, parse_body

    answer = Api(translator, "dates").translate(parse_body(b'{"text": "3rd of March 1998", "prefix": "2077-"}', TRANSLATE))
    assert answer["translation"] == result.stdout.strip()
    assert answer["attention"]["output_tokens"][:5] == list("2077-")


def test_a_hypothesis_that_is_its_prefix_or_shorter_than_it_is_shown_without_error(translator):
    import tensorflow as tf

    from textseq.translating import with_prefix

    prefixes = ["19", "1998-03-03", "19 "]
    forced = translator.texts.prefix(prefixes, translator.options())
    decoded = tf.constant(["19", "19", "19 5"])  # all of the prefix, less than it, more
    shown = with_prefix(decoded, tf.constant(prefixes), forced, translator.target).numpy()
    assert [text.decode() for text in shown] == ["19", "19", "19 5"]
