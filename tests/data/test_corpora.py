"""`textseq data fetch`: from a local mirror (never the network), with checksums."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.data.corpora import CORPORA, fetch, sha256
from textseq.errors import UserError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "tinyshakespeare").is_dir(), reason=f"no corpus mirror at {SHARED}")


def test_fetch_from_a_mirror_checks_and_keeps_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSEQ_DATA", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["data", "fetch", "multi30k", "--from", str(SHARED / "multi30k")])
    assert result.exit_code == 0, result.output
    assert f"multi30k: {len(CORPORA['multi30k'].files)} files checked in {tmp_path}/cache/multi30k" in result.stderr
    for relative, expected in CORPORA["multi30k"].files.items():
        assert sha256(tmp_path / "cache/multi30k" / relative) == expected
    assert not list((tmp_path / "cache").rglob(".part-*"))
    # A second fetch finds every file in place and copies nothing.
    again = CliRunner().invoke(cli, ["data", "fetch", "multi30k", "--from", str(SHARED / "multi30k")])
    assert again.exit_code == 0 and "  raw/" not in again.stderr


def test_a_corrupt_mirror_keeps_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "input.txt").write_text("First Citizen:\nnot the real file\n")
    with pytest.raises(UserError, match=r"input.txt: sha256 is [0-9a-f]{64}, expected 86c4e6aa.*nothing was kept"):
        fetch("tinyshakespeare", mirror, root=tmp_path / "cache")
    assert not (tmp_path / "cache/tinyshakespeare/input.txt").exists()
    assert not list((tmp_path / "cache").rglob(".part-*"))


def test_fetch_mistakes_are_user_errors(tmp_path):
    result = CliRunner().invoke(cli, ["data", "fetch", "wikitext"])
    assert result.exit_code == 2 and "no corpus named 'wikitext'; known: multi30k, tinyshakespeare" in result.stderr
    with pytest.raises(UserError, match="is missing; the mirror needs the layout of"):
        fetch("tinyshakespeare", tmp_path, root=tmp_path / "cache")
    with pytest.raises(UserError, match="not a directory"):
        fetch("tinyshakespeare", tmp_path / "nowhere", root=tmp_path / "cache")
