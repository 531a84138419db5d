import tensorflow as tf

from textseq.constants import EOS, PAD, UNK
from textseq.data.tokenizer import Tokenizer, iter_tokens
from textseq.data.vocab import Vocabulary


def char_tokenizer(texts):
    return Tokenizer(Vocabulary.build(iter_tokens(texts, "char", False), "char"))


def test_char_round_trip_keeps_non_ascii():
    texts = ["3rd of März 1998", "中文 ok", ""]
    tokenizer = char_tokenizer(texts)
    ids = tokenizer.encode(tf.constant(texts)).to_tensor()
    assert [t.decode() for t in tokenizer.decode(ids).numpy()] == texts


def test_word_level_splits_on_whitespace_and_lowercases():
    vocab = Vocabulary.build(iter_tokens(["A man  rides", "a dog"], "word", True), "word", lowercase=True)
    tokenizer = Tokenizer(vocab)
    ids = tokenizer.encode(tf.constant(["A MAN walks"])).to_list()[0]
    assert ids[:2] == [vocab.tokens.index("a"), vocab.tokens.index("man")] and ids[2] == UNK
    assert tokenizer.decode(tf.constant([ids])).numpy()[0].decode() == "a man <unk>"


def test_unknown_and_reserved_names_map_to_unk():
    tokenizer = char_tokenizer(["ab"])
    assert tokenizer.encode(tf.constant(["a?b"])).to_list() == [[4, UNK, 5]]
    word = Tokenizer(Vocabulary.build([["x"]], "word"))
    assert word.encode(tf.constant(["<s> </s> <pad> x"])).to_list()[0][:3] == [UNK, UNK, UNK]


def test_decode_stops_at_eos_and_drops_padding():
    tokenizer = char_tokenizer(["ab"])
    a, b = tokenizer.encode(tf.constant(["a", "b"])).flat_values.numpy()
    decoded = tokenizer.decode(tf.constant([[a, b, EOS, a], [b, PAD, PAD, PAD]])).numpy()
    assert [d.decode() for d in decoded] == ["ab", "b"]
