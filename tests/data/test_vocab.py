import pytest

from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError


def test_reserved_ids_come_first():
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    vocab = Vocabulary.build([["b", "a", "b"]], level="word")
    assert vocab.tokens[:4] == list(RESERVED)
    assert vocab.tokens[4:] == ["b", "a"]  # most frequent first


def test_min_count_and_max_size():
    lists = [["a"] * 5 + ["b"] * 3 + ["c"] * 1]
    assert Vocabulary.build(lists, "word", min_count=2).tokens[4:] == ["a", "b"]
    assert Vocabulary.build(lists, "word", max_size=5).tokens[4:] == ["a"]


def test_save_load_round_trips_awkward_tokens(tmp_path):
    vocab = Vocabulary(list(RESERVED) + [" ", "\n", "\\", "\\n", "\t", "é", "中"], level="char", lowercase=True)
    vocab.save(tmp_path / "vocab.txt")
    assert Vocabulary.load(tmp_path / "vocab.txt") == vocab


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="vocabulary file missing"):
        Vocabulary.load(tmp_path / "vocab.txt")
    (tmp_path / "other.txt").write_text("hello\n")
    with pytest.raises(UserError, match="not a textseq vocabulary file"):
        Vocabulary.load(tmp_path / "other.txt")
