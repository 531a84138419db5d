"""The one tokenizer: TensorFlow string ops that run in tf.data, in-process decoding and the export.

>>> tokenizer = Tokenizer(Vocabulary(list(RESERVED) + ["a", "b"], level="char"))
>>> tokenizer.encode(tf.constant(["ab", "ba?"])).to_list()
[[4, 5], [5, 4, 1]]
>>> tokenizer.decode(tf.constant([[4, 5, 3, 4]])).numpy()
array([b'ab'], dtype=object)
"""

from __future__ import annotations

import tensorflow as tf

from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.vocab import Vocabulary


def split_tokens(texts: tf.Tensor, level: str, lowercase: bool) -> tf.RaggedTensor:
    """Strings [batch] -> tokens [batch, (tokens)]: Unicode characters, or whitespace-separated words."""
    texts = tf.convert_to_tensor(texts, tf.string)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if level == "char":
        return tf.strings.unicode_split(texts, "UTF-8", errors="replace")
    return tf.strings.split(texts)


class Tokenizer(tf.Module):
    """Encodes strings to ids and decodes ids to strings with one vocabulary, inside the graph."""

    def __init__(self, vocab: Vocabulary, name: str | None = None):
        super().__init__(name=name)
        self.vocab = vocab
        self.level = vocab.level
        self.lowercase = vocab.lowercase
        self.vocab_size = vocab.size
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab.tokens), tf.range(vocab.size, dtype=tf.int32)),
            default_value=UNK)
        self.tokens = tf.constant(vocab.tokens)

    def encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [batch] -> ids [batch, (tokens)], int32, unknown tokens as UNK, no BOS/EOS."""
        tokens = split_tokens(texts, self.level, self.lowercase)
        # A reserved name typed by a user ("<s>") is text, not a control token.
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        return tf.ragged.map_flat_values(
            lambda i: tf.where((i < len(RESERVED)) & (i != UNK), UNK, i), ids)

    def decode(self, ids: tf.Tensor) -> tf.Tensor:
        """Ids [batch, time] -> strings [batch]: stops at the first EOS, drops PAD and BOS."""
        ids = tf.convert_to_tensor(ids)
        before_eos = tf.cumsum(tf.cast(tf.equal(ids, EOS), tf.int32), axis=-1) == 0
        keep = before_eos & tf.not_equal(ids, PAD) & tf.not_equal(ids, BOS)
        tokens = tf.gather(self.tokens, tf.ragged.boolean_mask(ids, keep))
        return tf.strings.reduce_join(tokens, axis=-1, separator="" if self.level == "char" else " ")


def iter_tokens(texts: list[str], level: str, lowercase: bool, batch_size: int = 4096):
    """Yields the token list of every text, split by `split_tokens` (for building a vocabulary)."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(batch_size)
    for batch in dataset.map(lambda t: split_tokens(t, level, lowercase)):
        for row in batch.to_list():
            yield [token.decode("utf-8") for token in row]
