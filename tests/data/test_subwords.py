"""SentencePiece vocabularies: the sample they learn from, the in-graph tokenizer, plain text out."""

import gzip
import unicodedata

import pytest
import tensorflow as tf

from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.subwords import WORD_START, display_piece, sample_lines, train_sentencepiece
from textseq.data.tokenizer import SubwordTokenizer, tokenizer_for
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.recipe import VocabConfig

from conftest import SHARED

RAW = SHARED / "multi30k" / "raw" / "train.en.gz"
# Emoji, CJK, a combining accent, right-to-left scripts, a reserved name typed as text, a piece marker.
ARBITRARY = ["A man 😀 rides a 自転車.", "e\u0301te\u0301 — naïve café", "שלום عالم", "<s> </s> <unk> ▁ @@", "  ", ""]


@pytest.fixture(scope="module")
def captions():
    if not RAW.exists():
        pytest.skip(f"no Multi30k mirror at {SHARED}")
    with gzip.open(RAW, "rt", encoding="utf-8") as lines:
        return [line.strip() for _, line in zip(range(3000), lines)]


@pytest.fixture(scope="module")
def subwords(captions):
    return SubwordTokenizer(Vocabulary.sentencepiece(train_sentencepiece(
        captions, VocabConfig(level="sentencepiece", size=600))))


def test_the_sample_is_bounded_seeded_and_drawn_from_the_whole_stream():
    lines = (f"line {i}" for i in range(10_000))  # a generator: read once
    sample = sample_lines(lines, 100, seed=3)
    assert len(sample) == 100 and len(set(sample)) == 100
    numbers = [int(line.split()[1]) for line in sample]
    assert numbers == sorted(numbers)  # kept in the stream's order
    assert max(numbers) > 9000 and min(numbers) < 1000  # not just the first lines
    assert sample == sample_lines((f"line {i}" for i in range(10_000)), 100, seed=3)
    assert sample != sample_lines((f"line {i}" for i in range(10_000)), 100, seed=4)
    assert sample_lines(["", "  ", "a"], 5, seed=0) == ["a"]


def test_reserved_ids_are_the_models_control_pieces(subwords):
    assert subwords.vocab.tokens[:4] == list(RESERVED) and subwords.vocab_size == 600
    assert subwords.vocab.tokens[4] == "<0x00>"  # byte fallback


def test_any_utf8_text_round_trips_without_unk_or_markers(subwords):
    ids = subwords.encode(tf.constant(ARBITRARY))
    flat = ids.flat_values.numpy()
    assert UNK not in flat and all(i >= len(RESERVED) for i in flat)  # typed "<s>" is text, not a control id
    decoded = [text.decode("utf-8") for text in subwords.decode(ids.to_tensor(PAD)).numpy()]
    # What comes back is the text, NFKC-normalized with runs of spaces collapsed (SentencePiece's nmt_nfkc);
    # a typed U+2581 is SentencePiece's own space mark and reads as a space.
    assert decoded == [" ".join(unicodedata.normalize("NFKC", text.replace(WORD_START, " ")).split())
                       for text in ARBITRARY]
    assert not any(WORD_START in text or "\u2047" in text for text in decoded)  # U+2047: how SentencePiece writes <unk>


def test_decode_stops_at_eos_and_drops_control_ids(subwords):
    ids = subwords.encode(tf.constant(["a dog"])).to_list()[0]
    decoded = subwords.decode(tf.constant([[BOS, *ids, UNK, EOS, *ids], [PAD, *ids, PAD, PAD, PAD, PAD]]))
    assert [text.decode() for text in decoded.numpy()] == ["a dog", "a dog"]


def test_pieces_show_as_plain_text(subwords):
    shown = [token.decode("utf-8") for token in subwords.tokens.numpy()]
    assert not any(WORD_START in token or token.startswith("<0x") for token in shown)
    assert [display_piece(p) for p in ["\u2581dog", "s", "<0x3C>", "<0xF0>"]] == [" dog", "s", "<", "\ufffd"]
    assert [t.decode() for t in subwords.split(tf.constant(["a dog"])).flat_values.numpy()] == [" a", " dog"]


def test_generated_lines_join_with_newlines_and_keep_the_word_boundary(subwords):
    a_dog, runs = (subwords.encode(tf.constant([t])).to_list()[0] for t in ["a dog", "runs"])
    texts = subwords.join_lines(tf.constant([a_dog + [EOS] + runs, runs + [PAD] * (len(a_dog) + 1)], tf.int32))
    assert [t.decode() for t in texts.numpy()] == [" a dog\nruns", " runs"]
    assert subwords.join_lines(tf.zeros([2, 0], tf.int32)).numpy().tolist() == [b"", b""]


def test_the_model_file_round_trips_and_a_damaged_one_is_named(subwords, tmp_path):
    path = tmp_path / "spm.model"
    subwords.vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded.tokens == subwords.vocab.tokens and loaded.level == "sentencepiece"
    assert isinstance(tokenizer_for(loaded), SubwordTokenizer)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=r"spm.model: not a SentencePiece model; the run directory is damaged"):
        Vocabulary.load(path)


def test_a_size_the_text_cannot_support_and_a_sample_without_text_are_user_errors(captions):
    with pytest.raises(UserError, match=r"vocab.size: 200000 pieces are more than the training text supports "
                                        r"\(at most \d+"):
        train_sentencepiece(captions[:200], VocabConfig(level="sentencepiece", size=200_000))
    with pytest.raises(UserError, match="has no text to learn a SentencePiece vocabulary from"):
        train_sentencepiece(["", " "], VocabConfig(level="sentencepiece"))


def test_lowercase_is_the_models_own_normalization(captions):
    model = train_sentencepiece(captions, VocabConfig(level="sentencepiece", size=400, lowercase=True))
    tokenizer = SubwordTokenizer(Vocabulary.sentencepiece(model))
    ids = tokenizer.encode(tf.constant(["A DOG", "a dog"])).to_list()
    assert ids[0] == ids[1]
