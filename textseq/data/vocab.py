"""Vocabulary: tokens <-> ids, built from a corpus, saved in the run directory.

Ids 0-3 are reserved: padding, unknown, begin and end of sequence. Word and character tokens are
split by the in-graph `textseq.data.tokenizer.split_tokens`, so the vocabulary sees exactly what
training, prediction and the export see, and are saved one per line (`vocab.txt`). A SentencePiece
vocabulary is its model (`spm.model`, see `textseq.data.subwords`), whose pieces are the tokens.

>>> vocab = Vocabulary.build([["a", "b", "a"]], level="char")
>>> vocab.tokens
['<pad>', '<unk>', '<s>', '</s>', 'a', 'b']
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from textseq.constants import RESERVED
from textseq.data.subwords import sentencepiece_pieces
from textseq.errors import UserError
from textseq.files import write_atomically
from textseq.recipe import VocabConfig

# Tokens may be any character (a space, a newline for character-level text), so the file escapes
# the few that would break "one token per line".
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    level: str = "word"
    lowercase: bool = False
    model: bytes | None = None  # level sentencepiece: the SentencePiece model (serialized proto)

    def __post_init__(self):
        if tuple(self.tokens[:4]) != RESERVED:
            raise ValueError(f"a vocabulary starts with {RESERVED}; got {self.tokens[:4]}")

    @property
    def size(self) -> int:
        return len(self.tokens)

    def tokenization(self) -> dict:
        """The vocab keys this vocabulary was made with that decide how text becomes ids."""
        return {"level": self.level, "lowercase": self.lowercase}

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], level: str, lowercase: bool = False,
              max_size: int | None = None, min_count: int = 1) -> "Vocabulary":
        """Most frequent tokens first (ties alphabetical), after the reserved ones."""
        counts = collections.Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for token in RESERVED:
            counts.pop(token, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - len(RESERVED)]
        return cls(list(RESERVED) + ranked, level, lowercase)

    @classmethod
    def sentencepiece(cls, model: bytes) -> "Vocabulary":
        """The vocabulary of a SentencePiece model (lower-casing, if any, is the model's own normalization)."""
        return cls(sentencepiece_pieces(model), "sentencepiece", False, model)

    def save(self, path: str | Path) -> None:
        if self.model is not None:
            write_atomically(Path(path), self.model)
            return
        header = f"# textseq vocabulary: level={self.level} lowercase={str(self.lowercase).lower()}\n"
        write_atomically(Path(path), header + "".join(_escape(t) + "\n" for t in self.tokens))

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        # The weights are tied to this very file: a vocabulary built again would number tokens otherwise.
        damaged = (f"the run directory is damaged: copy the file back from a backup, or train the run anew "
                   f"(textseq train {path.parent / 'recipe.yaml'} --out {path.parent} --overwrite)")
        if not path.exists():
            raise UserError(f"{path}: vocabulary file missing; {damaged}")
        if path.suffix == ".model":
            try:
                return cls.sentencepiece(path.read_bytes())
            except ValueError:
                raise UserError(f"{path}: not a SentencePiece model; {damaged}") from None
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: byte {error.start} is not UTF-8; {damaged}") from None
        try:
            if not lines[0].startswith("# textseq vocabulary:") or lines[-1] != "":
                raise ValueError
            fields = dict(item.split("=", 1) for item in lines[0].split(":", 1)[1].split())
            return cls([_unescape(t) for t in lines[1:-1]], fields["level"], fields["lowercase"] == "true")
        except (ValueError, KeyError):
            raise UserError(f"{path}:1: not a textseq vocabulary file (expected a '# textseq vocabulary:' header); "
                            f"{damaged}") from None


def vocabulary_file_names(config: VocabConfig) -> tuple[str, str]:
    """The source and target vocabulary files of a run (the same name twice with `vocab.shared`).

    >>> vocabulary_file_names(VocabConfig(level="sentencepiece", shared=False))
    ('source.spm.model', 'target.spm.model')
    """
    name = "spm.model" if config.level == "sentencepiece" else "vocab.txt"
    return (name, name) if config.shared else (f"source.{name}", f"target.{name}")


def _escape(token: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in token)


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        pair = text[i:i + 2]
        if pair in _UNESCAPES:
            out.append(_UNESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
