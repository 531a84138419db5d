"""The user's guide: `mkdocs build --strict` passes (no broken link or reference), the recipe,
command-line and API references are generated from the code, and the README's links resolve."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_recipe_reference_lists_every_key_with_its_default(site):
    from textseq.recipe import Recipe

    page = (site / "recipes" / "index.html").read_text(encoding="utf-8")
    keys = [f"{section.name}.{field.metadata.get('key', field.name)}" for section in dataclasses.fields(Recipe)
            if dataclasses.is_dataclass(value := getattr(Recipe(), section.name)) for field in dataclasses.fields(value)]
    assert len(keys) > 50 and "train.kernels" in keys
    for key in keys:
        assert f"<code>{key}</code>" in page, key
    # Each row says what its key takes, as the recipe's checks have it.
    rows = dict(re.findall(r"<td><code>([^<]+)</code></td>\s*<td>.*?</td>\s*<td>(.*?)</td>", page, re.S))
    assert rows["model.cell"] == "lstm, gru" and rows["model.attention"] == "additive, general, dot"
    assert rows["train.epochs"].startswith("an integer, at least 1")
    assert rows["train.warmup_steps"].startswith("an integer, at least 0")
    assert rows["data.split"] == "a number, greater than 0.0, less than 1.0; or null"


def test_the_cli_and_api_references_come_from_the_code(site):
    from textseq.cli import cli as command_group

    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for command in [*command_group.commands, "fetch"]:
        assert re.search(rf"textseq[^<]*\b{command}\b", cli), command
    assert "--beam-size" in cli and "--allowed-host" in cli
    assert "Sentinel" not in cli  # Click's marker of an option without a default
    summaries = re.findall(r"<li><em>\w+</em>: ([^<]*)</li>", cli)
    assert len(summaries) >= len(command_group.commands)
    for summary in re.findall(r"<li><em>\w+</em>: ([^<]*)</li>", cli):
        assert summary.rstrip().endswith("."), summary  # whole first sentences, not a line cut short
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", api)))
    for name in ("load_recipe", "train", "evaluate", "vocab_stats", "export", "score_pairs", "weights_origin"):
        assert f"{name}(" in text, name  # a heading with the signature
    for name in ("SubwordTokenizer", "Translator", "LanguageModel", "CarriedStates"):
        assert 'id="textseq.' in api and f">{name}<" in api.replace(" ", ""), name
    assert "load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe" in text
    assert "<blockquote>" not in api and "language-pycon" in api  # examples are code, not nested quotes


def test_the_readme_is_a_short_guide_whose_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) <= 15_000
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), links
    assert "../shared" not in readme


def load_figures_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_figure_a_page_marks_comes_from_one_file_with_its_machine_and_date():
    tool = load_figures_tool()
    assert tool.disagreements() == []
    known = tool.figures()
    used = {name for page in tool.pages() for name, _ in tool.marked(page.read_text(encoding="utf-8"))}
    assert used == set(known), set(known) ^ used  # no figure kept that no page states
    for name, figure in known.items():
        assert figure["cpu"] and figure["date"] and figure["command"], name


def test_figures_that_pages_once_contradicted_are_gone_and_only_the_development_page_is_about_development():
    text = {page.name: page.read_text(encoding="utf-8") for page in load_figures_tool().pages()}
    everything = "\n".join(text.values())
    for stale in ("1.94 ms", "0.94-1.26x", "median 1.01x", "The margin we ask for"):
        assert stale not in everything, stale
    assert "40,000 generated pairs" in (ROOT / "data" / "dates" / "README.md").read_text(encoding="utf-8")
    for name, page in text.items():
        if name != "development.md":
            assert not re.search(r"lent to development|the CI machine|this session", page), name
