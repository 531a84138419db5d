"""SentencePiece vocabularies: learned from a bounded, seeded sample of the training text.

The reserved ids of `textseq.constants` are the model's own control pieces (0 `<pad>`, 1 `<unk>`,
2 `<s>`, 3 `</s>`), so a piece's id in the model is its id everywhere in textseq. With byte
fallback, characters without a piece of their own are spelled as UTF-8 bytes (`<0xF0>`...), so
no text is ever read as `<unk>`.

>>> config = VocabConfig(level="sentencepiece", size=300)
>>> model = train_sentencepiece(["a man rides a bike", "two dogs play"] * 50, config)  # doctest: +SKIP
>>> sentencepiece_pieces(model)[:5]  # doctest: +SKIP
['<pad>', '<unk>', '<s>', '</s>', '<0x00>']
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterable

from textseq.constants import RESERVED
from textseq.data.sampling import reservoir
from textseq.errors import UserError
from textseq.recipe import VocabConfig

WORD_START = "\u2581"  # "▁": SentencePiece's mark of a piece that begins a word
BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")


def sample_lines(lines: Iterable[str], count: int, seed: int) -> list[str]:
    """At most `count` non-blank lines drawn uniformly from `lines` in one pass (`reservoir`), in the
    order they came; the same `seed` and lines give the same sample.

    >>> sample_lines(["a", "", "b", "c"], 2, seed=0)
    ['a', 'c']
    """
    return reservoir((line for line in lines if line and line.strip()), count, seed)[0]


def train_sentencepiece(lines: list[str], config: VocabConfig, what: str = "the training text") -> bytes:
    """A SentencePiece model (serialized proto) of `config.size` pieces learned from `lines`."""
    import sentencepiece

    if not any(line.strip() for line in lines):
        raise UserError(f"vocab: {what} has no text to learn a SentencePiece vocabulary from; check data.train")
    out = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=out, vocab_size=config.size, model_type=config.model_type,
            character_coverage=config.character_coverage, byte_fallback=config.byte_fallback,
            normalization_rule_name="nmt_nfkc_cf" if config.lowercase else "nmt_nfkc",
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=RESERVED[0], unk_piece=RESERVED[1],
            bos_piece=RESERVED[2], eos_piece=RESERVED[3], input_sentence_size=0, max_sentence_length=1 << 16,
            num_threads=os.cpu_count() or 1, minloglevel=2)
    except (RuntimeError, OSError) as error:
        message = str(error)
        too_many = re.search(r"value <= (\d+)", message)
        if too_many:
            raise UserError(f"vocab.size: {config.size} pieces are more than {what} supports "
                            f"(at most {too_many.group(1)} with these settings); lower vocab.size, or learn from "
                            "more text (vocab.sample_lines)") from None
        raise UserError(f"vocab: SentencePiece could not learn a vocabulary from {what}: {message}") from None
    return out.getvalue()


def sentencepiece_pieces(model: bytes) -> list[str]:
    """The pieces of a SentencePiece model, by id; a damaged model raises ValueError."""
    import sentencepiece

    try:
        processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, OSError, TypeError) as error:
        raise ValueError(f"not a SentencePiece model ({error})") from None
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def display_piece(piece: str) -> str:
    """How one piece shows on its own (attention plots, token lists): plain text, never a marker.

    A word-start mark becomes a leading space; a byte of a multi-byte character, which is not text
    on its own, shows as U+FFFD (what a UTF-8 decoder shows for it).

    >>> [display_piece(p) for p in ["\u2581dog", "s", "<0x3C>", "<0xF0>"]]
    [' dog', 's', '<', '\ufffd']
    """
    byte = BYTE_PIECE.match(piece)
    if byte:
        value = int(byte.group(1), 16)
        return chr(value) if value < 0x80 else "\ufffd"
    return piece.replace(WORD_START, " ")
