"""The one tokenizer: TensorFlow string ops that run in tf.data, in-process decoding and the export.

`Tokenizer` splits words or characters and looks them up in a table; `SubwordTokenizer` applies a
SentencePiece model with tensorflow-text's ops. Both encode strings to ids and decode ids to plain
text, and own every other difference between vocabulary levels (`TextTokenizer`): what a token is,
how a continuation is spaced, which file a client tokenizes with, how to describe it. Code outside
`textseq.data` asks the tokenizer, never the level. `tokenizer_for(vocab)` picks the one a
vocabulary needs.

>>> tokenizer = Tokenizer(Vocabulary(list(RESERVED) + ["a", "b"], level="char"))
>>> tokenizer.encode(tf.constant(["ab", "ba?"])).to_list()
[[4, 5], [5, 4, 1]]
>>> tokenizer.decode(tf.constant([[4, 5, 3, 4]])).numpy()
array([b'ab'], dtype=object)
"""

from __future__ import annotations

import itertools
from typing import Iterable, Protocol

import numpy as np
import tensorflow as tf

from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.subwords import BYTE_PIECE, WORD_START, display_piece
from textseq.data.vocab import Vocabulary


def split_tokens(texts: tf.Tensor, level: str, lowercase: bool) -> tf.RaggedTensor:
    """Strings [batch] -> tokens [batch, (tokens)]: Unicode characters, or whitespace-separated words."""
    texts = tf.convert_to_tensor(texts, tf.string)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if level == "char":
        return tf.strings.unicode_split(texts, "UTF-8", errors="replace")
    return tf.strings.split(texts)


class TextTokenizer(Protocol):
    """What every tokenizer offers (`Tokenizer`, `SubwordTokenizer`)."""

    vocab: Vocabulary
    vocab_size: int
    tokens: tf.Tensor  # each id's token as shown to people
    unit: str  # what one token is: "word", "character" or "piece" (of a word)
    requires: tuple[str, ...]  # Python packages whose ops the graph needs where it is loaded
    model_file: str | None  # the file a client tokenizes with outside the graph (None: the token list)

    def encode(self, texts: tf.Tensor) -> tf.RaggedTensor: ...
    def decode(self, ids: tf.Tensor) -> tf.Tensor: ...
    def split(self, texts: tf.Tensor) -> tf.RaggedTensor: ...
    def join_lines(self, ids: tf.Tensor) -> tf.Tensor: ...
    def append(self, text: str, continuation: str) -> str: ...
    def add_line(self, text: str, line: str) -> str: ...
    def describe(self) -> dict: ...
    def coverage(self, ids, lines: list[str]) -> dict: ...


class Tokenizer(tf.Module):
    """Encodes strings to ids and decodes ids to strings with one vocabulary, inside the graph."""

    requires: tuple[str, ...] = ()
    model_file = None

    def __init__(self, vocab: Vocabulary, name: str | None = None):
        super().__init__(name=name)
        self.vocab = vocab
        self.level = vocab.level
        self.unit = "character" if vocab.level == "char" else "word"
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

    def split(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [batch] -> the tokens as written [batch, (tokens)], one per id of `encode`."""
        return split_tokens(texts, self.level, self.lowercase)

    def join_lines(self, ids: tf.Tensor) -> tf.Tensor:
        """Generated ids `[batch, steps]` -> text `[batch]`; for words, line ends (EOS) become newlines."""
        pieces = tf.gather(self.tokens, ids)
        if self.level == "char":
            return tf.strings.reduce_join(pieces, axis=-1)
        pieces = tf.where(tf.equal(ids, EOS), "\n", pieces)
        return tf.strings.regex_replace(tf.strings.reduce_join(pieces, axis=-1, separator=" "), " ?\n ?", "\n")

    def append(self, text: str, continuation: str) -> str:
        """`text` followed by a generated `continuation`: words joined by a space, characters as they are."""
        if self.unit == "word" and text and continuation:
            return f"{text} {continuation}"
        return text + continuation

    def add_line(self, text: str, line: str) -> str:
        """`text` followed by a typed `line`: characters keep the line end, words a space."""
        return text + line + "\n" if self.unit == "character" else f"{text} {line.strip()}".strip()

    def describe(self) -> dict:
        how = ("look each character up in the vocabulary" if self.unit == "character" else
               "split on whitespace, look each word up in the vocabulary")
        return {"level": self.level, "lowercase": self.lowercase,
                "tokenize": f"lower-case, {how}" if self.lowercase else how}

    def coverage(self, ids: np.ndarray, lines: list[str]) -> dict:
        """The share of `lines` (encoded as the flat `ids`) read without `<unk>`, and the `<unk>` count."""
        return {"covered": 1.0 - float((ids == UNK).mean()) if ids.size else 1.0, "unknown_tokens": int((ids == UNK).sum())}


class SubwordTokenizer(tf.Module):
    """A SentencePiece model as TensorFlow ops (tensorflow-text), with `Tokenizer`'s interface.

    Decoding detokenizes (pieces joined, word-start marks as spaces, bytes as their characters), so
    what comes out is plain text. `tokens` shows each piece on its own, for attention plots.
    """

    level = "sentencepiece"
    unit = "piece"
    requires = ("tensorflow_text",)
    model_file = "spm.model"
    lowercase = False  # a SentencePiece model lower-cases itself when trained to (its normalization)

    def __init__(self, vocab: Vocabulary, name: str | None = None):
        super().__init__(name=name)
        self.vocab = vocab
        self.vocab_size = vocab.size
        self.model = sentencepiece_ops(vocab.model)
        self.tokens = tf.constant([display_piece(piece) for piece in vocab.tokens])
        # Pieces that begin a word; control pieces neither begin nor continue one.
        self.word_starts = tf.constant([piece.startswith(WORD_START) for piece in vocab.tokens])
        self.controls = tf.constant([i < len(RESERVED) for i in range(vocab.size)])

    def encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [batch] -> piece ids [batch, (pieces)], int32, no BOS/EOS."""
        return self.model.tokenize(tf.convert_to_tensor(texts, tf.string))

    def decode(self, ids: tf.Tensor) -> tf.Tensor:
        """Ids [batch, time] -> plain strings [batch]: stops at the first EOS, drops control pieces."""
        ids = tf.convert_to_tensor(ids)
        before_eos = tf.cumsum(tf.cast(tf.equal(ids, EOS), tf.int32), axis=-1) == 0
        return self.detokenize(tf.ragged.boolean_mask(ids, before_eos & (ids >= len(RESERVED))))

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Ragged piece ids (no control pieces) -> strings."""
        return self.model.detokenize(ids)

    def split(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [batch] -> each piece shown on its own [batch, (pieces)], one per id of `encode`."""
        return tf.gather(self.tokens, self.encode(texts))

    def join_lines(self, ids: tf.Tensor) -> tf.Tensor:
        """Generated ids `[batch, steps]` -> plain text `[batch]`, line ends (EOS) as newlines.

        A text that begins with a new word begins with a space, so it can be appended to the text
        it continues as it is.
        """
        ids = tf.convert_to_tensor(ids, tf.int32)
        is_eos = tf.equal(ids, EOS)
        line_of = tf.cumsum(tf.cast(is_eos, tf.int64), axis=1, exclusive=True)  # each step's line in its row
        lines_per_row = tf.reduce_sum(tf.cast(is_eos, tf.int64), axis=1) + 1
        first_line = tf.cumsum(lines_per_row, exclusive=True)
        keep = ids >= len(RESERVED)
        pieces = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(ids, keep), tf.boolean_mask(first_line[:, None] + line_of, keep),
            nrows=tf.reduce_sum(lines_per_row))
        lines = tf.RaggedTensor.from_row_lengths(self.detokenize(pieces), lines_per_row)
        text = tf.strings.reduce_join(lines, axis=-1, separator="\n")
        opens_word = tf.gather(self.word_starts, tf.pad(ids, [[0, 0], [0, 1]])[:, 0])  # PAD when no steps
        return tf.where(opens_word, tf.strings.join([" ", text]), text)

    def append(self, text: str, continuation: str) -> str:
        """`text` followed by a generated `continuation`, which carries its own spaces."""
        return text + continuation.lstrip(" ") if not text or text[-1].isspace() else text + continuation

    def add_line(self, text: str, line: str) -> str:
        return f"{text} {line.strip()}".strip()

    def describe(self) -> dict:
        return {"level": self.level, "lowercase": False,
                "tokenize": "encode with the SentencePiece model; its ids are the model's ids"}

    def coverage(self, ids: np.ndarray, lines: list[str]) -> dict:
        """The share of the characters of `lines` (encoded as the flat `ids`) that have a piece of their own,
        and how many byte pieces spell the others."""
        tokens = self.vocab.tokens
        byte_ids = np.array([bool(BYTE_PIECE.match(p)) for p in tokens])
        # Bytes that start a character (not 10xxxxxx continuation bytes): characters spelled in bytes.
        starts = np.array([bool(m) and not 0x80 <= int(m.group(1), 16) < 0xC0 for m in map(BYTE_PIECE.match, tokens)])
        characters = sum(len("".join(line.split())) for line in lines)
        spelled = int(starts[ids].sum())
        return {"covered": 1.0 - spelled / max(characters, 1), "byte_pieces": int(byte_ids[ids].sum()),
                "characters_in_bytes": spelled}


def sentencepiece_ops(model: bytes, **options):
    """tensorflow-text's `SentencepieceTokenizer` of a model (`options`: its sampling settings),
    with its model resource named after the model's content.

    tensorflow-text creates the resource without a name, private to the op's kernel: a SavedModel
    with two of them (a source and a target model) loads both as the first one, and one created
    eagerly is gone when the kernel is (a tf.data map then fails with "Resource ... does not
    exist"). A name per model fixes both.
    """
    import hashlib

    import tensorflow_text
    from tensorflow_text.python.ops import sentencepiece_tokenizer as ops

    tokenizer = tensorflow_text.SentencepieceTokenizer(model=model, out_type=tf.int32, **options)

    class NamedModelResource(ops._SentencepieceModelResource):
        def __init__(self, model: bytes, shared_name: str):
            self._shared_name = shared_name  # before the base class creates the resource
            super().__init__(model, None)

        def _create_resource(self):
            return ops.gen_sentencepiece_tokenizer.sentencepiece_op(model=self._model, shared_name=self._shared_name)

    name = "textseq_sentencepiece_" + hashlib.sha256(model).hexdigest()[:16]
    tokenizer._model_resource = NamedModelResource(model, name)
    return tokenizer


def tokenizer_for(vocab: Vocabulary) -> TextTokenizer:
    """The tokenizer of a vocabulary: SentencePiece ops for `level: sentencepiece`, else lookups."""
    return SubwordTokenizer(vocab) if vocab.level == "sentencepiece" else Tokenizer(vocab)


def iter_tokens(texts: Iterable[str], level: str, lowercase: bool, batch_size: int = 4096):
    """Yields the token list of every text, split by `split_tokens` (for building a vocabulary); the
    texts may be a generator, read `batch_size` at a time."""
    split = tf.function(lambda t: split_tokens(t, level, lowercase), input_signature=[tf.TensorSpec([None], tf.string)],
                        autograph=False)
    texts = iter(texts)
    while chunk := list(itertools.islice(texts, batch_size)):
        for row in split(tf.constant(chunk, tf.string)).to_list():
            yield [token.decode("utf-8") for token in row]
