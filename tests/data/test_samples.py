"""data/: each corpus' README gives the sha256 that `textseq data fetch` checks, the samples are the
first lines of the real files, and the sample recipe runs on them without a download."""

import re

import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.data.corpora import CORPORA

from conftest import ROOT, SHARED


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_each_corpus_readme_lists_the_checksums_fetch_checks(name):
    readme = (ROOT / "data" / name / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme, re.M))
    assert listed == CORPORA[name].files


def test_the_samples_are_the_first_lines_of_the_corpora():
    if not (SHARED / "multi30k").is_dir():
        pytest.skip(f"no corpus mirror at {SHARED}")
    samples = sorted((ROOT / "data").glob("*/sample/*"))
    assert len(samples) == 7
    for sample in samples:
        corpus = sample.parts[-3]
        real = SHARED / corpus / ("tok" if corpus == "multi30k" else "") / sample.name
        head = real.read_text(encoding="utf-8")[:len(sample.read_text(encoding="utf-8"))]
        assert sample.read_text(encoding="utf-8") == head, sample


def test_the_sample_recipe_checks_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["check", "recipes/multi30k-de-en-sample.yaml"])
    assert result.exit_code == 0, result.output
    assert "train_examples" in result.output and "500" in result.output
