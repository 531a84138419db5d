"""The README's quick tour and the guide's getting-started page, run command by command as written,
so that a command that cannot work fails CI.

Commands run in order in a fresh directory holding `recipes/` and `data/`, as a user runs them from
a checkout. Only sizes change: a training gets tiny settings through `--set` (and the corpora a
tiny local mirror, through `data.dir`, the option a user has for a mirror); `data fetch` copies
from the shared mirror (`--from`) instead of downloading; `serve` binds a free port and answers one
request. A command shown failing on the page must fail with the message shown.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, SHARED
from textseq.cli import cli

pytestmark = pytest.mark.slow

MODEL = ["model.units=16", "model.embedding_dim=8", "model.attention_units=8", "train.epochs=2", "train.batch_size=32"]
# Each recipe's tiny settings, added to every command that builds its run or vocabulary.
TINY = {
    "recipes/dates.yaml": MODEL + ["data.train_examples=256", "data.validation_examples=32", "data.test_examples=32"],
    "recipes/multi30k-de-en-sample.yaml": MODEL + ["decode.max_length=16"],
    "recipes/multi30k-de-en.yaml": MODEL + ["decode.max_length=16"],
    "recipes/multi30k-de-en-spm.yaml": MODEL + ["vocab.size=500", "decode.max_length=16"],
    "recipes/multi30k-en-lm.yaml": MODEL + ["data.context=8", "data.continuation=8"],
    "recipes/keyboard-en.yaml": MODEL + ["data.context=8", "data.continuation=8"],
    "my-recipe.yaml": MODEL,
}
MIRRORED = {"recipes/multi30k-de-en.yaml", "recipes/multi30k-de-en-spm.yaml", "recipes/multi30k-en-lm.yaml",
            "recipes/keyboard-en.yaml"}
LINES = 200  # of each Multi30k file in the tiny mirror


def commands(page: Path, section: str | None = None) -> list[str]:
    """The `textseq ...` commands of a page's bash blocks (of one section, when given), comments
    dropped; `pip install ... && textseq ...` gives its textseq part."""
    text = page.read_text(encoding="utf-8")
    if section:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = re.sub(r"\s+#.*$", "", part).strip()
                if part.startswith("textseq "):
                    found.append(part)
    return found


def tiny_mirror(root: Path) -> Path:
    """The first LINES lines of every Multi30k file the recipes read, laid out as the real mirror."""
    for folder in ("raw", "tok"):
        for source in (SHARED / "multi30k" / folder).iterdir():
            target = root / "multi30k" / folder / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            opener = gzip.open if source.suffix == ".gz" else open
            with opener(source, "rt", encoding="utf-8") as lines:
                kept = "".join(line for _, line in zip(range(LINES), lines))
            with opener(target, "wt", encoding="utf-8") as out:
                out.write(kept)
    return root


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A directory that looks like the checkout to a user's commands, with the corpus cache in it."""
    if not (SHARED / "multi30k").exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "data"):
        (work / name).symlink_to(ROOT / name)
    monkeypatch.chdir(work)
    monkeypatch.setenv("TEXTSEQ_DATA", str(tmp_path / "cache"))
    (work / "dates.txt").write_text("3rd of March 1998\nTue, 03.03.98\n")
    tiny_mirror(tmp_path / "mirror")
    return work


def as_run(command: str, mirror: Path) -> list[str]:
    """The command's arguments with the test's sizes and paths."""
    args = shlex.split(command)[1:]
    recipe = next((a for a in args if a.endswith(".yaml")), None)
    if args[:2] == ["data", "fetch"]:
        args = [a if a != "DIR" else str(SHARED / args[2]) for a in args]
        if "--from" not in args:
            args += ["--from", str(SHARED / args[2])]
    args = [f"data.dir={mirror}" if a == "data.dir=/data/mirror" else a for a in args]
    if args[0] in ("train", "vocab", "check") and recipe in TINY:
        sets = TINY[recipe] + ([f"data.dir={mirror}"] if recipe in MIRRORED else [])
        args += [item for setting in sets if f"{setting.split('=')[0]}=" not in " ".join(args)
                 for item in ("--set", setting)]
    return args


def run_as_written(command: str, mirror: Path) -> None:
    args = as_run(command, mirror)
    if args[0] == "serve":
        from test_serve import Server

        server = Server(Path(args[1]), *args[2:])
        try:
            status, info = server.request("api/info")  # the URL ends with /
            assert status == 200 and info, info
        finally:
            server.stop()
        return
    result = CliRunner().invoke(cli, args)
    if "model.cell=lstn" in command:  # the page shows this one failing
        assert result.exit_code == 2 and "model.cell must be one of lstm, gru; got 'lstn'" in result.stderr
        return
    assert result.exit_code == 0, f"{command}\n{result.output}"
    if "--json" in args:
        json.loads(result.stdout)


def test_every_command_of_the_readme_tour_runs_as_written(checkout, tmp_path):
    tour = commands(ROOT / "README.md", "## A quick tour")
    assert len(tour) >= 15 and any("average" in c for c in tour) and any("serve" in c for c in tour)
    for command in tour:
        run_as_written(command, tmp_path / "mirror")
    assert (checkout / "runs" / "multi30k-de-en" / "averaged" / "model.weights.h5").exists()
    assert (checkout / "exports" / "keyboard-en" / "textseq.json").exists()


def test_every_command_of_getting_started_runs_as_written(checkout, tmp_path):
    page = commands(ROOT / "docs" / "getting-started.md")
    assert len(page) >= 10 and any("--json" in c for c in page)
    for command in page:
        run_as_written(command, tmp_path / "mirror")
    assert (checkout / "iso.txt").read_text().count("\n") == 2


def test_the_first_run_page_trains_dates_and_a_six_line_recipe_on_your_own_data(checkout, tmp_path):
    page = ROOT / "docs" / "first-run.md"
    recipes = re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    own = next(recipe for recipe in recipes if "source: tsv" in recipe)
    assert len([line for line in own.splitlines() if line.strip()]) <= 6
    (checkout / "my-recipe.yaml").write_text(own)
    (checkout / "my-corpus").mkdir()
    pairs = [f"{n} Äpfel und {n + 1} Birnen\t{n} apples and {n + 1} pears\n" for n in range(70)]
    for name, lines in (("train", pairs[:50]), ("valid", pairs[50:60]), ("test", pairs[60:])):
        (checkout / "my-corpus" / f"{name}.tsv").write_text("".join(lines))
    run_as_written("textseq train recipes/dates.yaml", tmp_path / "mirror")
    shown = commands(page)
    assert any(c.startswith("textseq check my-recipe.yaml") for c in shown)
    for command in shown:
        run_as_written(command, tmp_path / "mirror")
    assert (checkout / "runs" / "my-recipe" / "model.weights.h5").exists()
