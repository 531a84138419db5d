import math

import pytest

from textseq.baselines import ngram_perplexities


def test_add_one_ngrams_by_hand():
    # train 4 5 4 5 </s>; V = 6 ids - <pad> - <s> = 4 events.
    # unigram: p(4) = p(5) = (2 + 1) / (5 + 4), p(</s>) = (1 + 1) / 9
    # bigram: p(4 | </s>) = (1 + 1) / (1 + 4), p(5 | 4) = (2 + 1) / (2 + 4), p(</s> | 5) = (1 + 1) / (2 + 4)
    result = ngram_perplexities([4, 5, 4, 5, 3], [4, 5, 3], vocab_size=6)
    assert result["unigram"] == pytest.approx((9 / 3 * 9 / 3 * 9 / 2) ** (1 / 3))
    assert result["bigram"] == pytest.approx((5 / 2 * 6 / 3 * 6 / 2) ** (1 / 3))


def test_unseen_tokens_and_pairs_get_the_add_one_share():
    # The training stream starts after a line end too: c(</s> as context) = 1, c(5 as context) = 0.
    result = ngram_perplexities([4, 4, 4], [5, 5], vocab_size=6)
    assert result["unigram"] == pytest.approx((3 + 4) / 1)
    assert result["bigram"] == pytest.approx(math.sqrt((1 + 4) / 1 * (0 + 4) / 1))


def test_the_guide_baselines_for_multi30k_en_lm():
    """The unigram and bigram perplexities the guide (docs/next-word.md) prints next to the model's, recomputed."""
    from conftest import ROOT, SHARED
    from textseq.data.tasks import TaskData
    from textseq.recipe import load_recipe

    if not (SHARED / "multi30k").is_dir():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    recipe = load_recipe(ROOT / "recipes" / "multi30k-en-lm.yaml", [f"data.dir={SHARED}"])
    data = TaskData.load(recipe, splits=("train", "test"))
    train_ids, test_ids = (data.examples[split][2].flat_values.numpy() for split in ("train", "test"))
    result = ngram_perplexities(train_ids, test_ids, data.target.vocab_size)
    guide = (ROOT / "docs" / "next-word.md").read_text(encoding="utf-8")
    assert f"| add-one unigram | {result['unigram']:.1f} |" in guide
    assert f"| add-one bigram | {result['bigram']:.1f} |" in guide
