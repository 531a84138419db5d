"""The app loops of textseq's LiteRT exports (`textseq export RUN OUT --format litert`), with numpy
and LiteRT's interpreter only: a translator (tokenize, encode, search, detokenize) and a keyboard's
next whole words (`DeviceNextWords`).

This file imports nothing from textseq or TensorFlow, so an app (or a phone's Python, or a port to
Kotlin or Swift) can take it as it is: it is the reference the export's tests and
`benchmarks/translate_on_device.py` run. The `.tflite` file has an `encode_N` signature per source
length N (source ids `[1, N]` -> the attention memory and the decoder's start states; the shortest
that holds the source is the fastest) and `step` (the last
token of every live hypothesis, their states and the memory -> their new states, their `top_k`
most probable next tokens with log-probabilities, and their attention weights). Beam search keeps
`beam_size` hypotheses, ranks them by log-probability over GNMT's length penalty
`((5 + length) / 6) ** alpha`, and stops when no open hypothesis can overtake the ended ones: what
`textseq translate` does, so both give the same translations.
A SentencePiece run tokenizes with its `.model` files and the `sentencepiece` package (the library
Android and iOS apps link); word and character runs with their `*.vocab.json`.

>>> translator = DeviceTranslator("exports/dates-litert")  # doctest: +SKIP
>>> translator.translate("3rd of March 1998", beam_size=5)  # doctest: +SKIP
('1998-03-03', -0.0012)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

NEG = -1e9  # a log-probability no hypothesis reaches (finite: no inf - inf)


class DeviceTokenizer:
    """Text to ids and back for one side, as the run's tokenizer does it in the graph."""

    def __init__(self, folder: Path, side: dict):
        self.pieces_model = side["level"] == "sentencepiece"  # else characters or words
        self.characters, self.lowercase = side["level"] == "char", side["lowercase"]
        self.control_ids = set(side["control_ids"])
        self.unknown_id, self.end_id = side["unknown_id"], side["end_id"]
        if self.pieces_model:
            import sentencepiece

            self.pieces = sentencepiece.SentencePieceProcessor(model_file=str(folder / side["sentencepiece_model"]))
        else:
            self.tokens = json.loads((folder / side["vocabulary"]).read_text(encoding="utf-8"))
            self.index = {token: i for i, token in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        if self.pieces_model:
            return [int(i) for i in self.pieces.encode(text)]
        text = text.lower() if self.lowercase else text
        tokens = list(text) if self.characters else text.split()
        ids = [self.index.get(token, self.unknown_id) for token in tokens]
        return [self.unknown_id if i in self.control_ids else i for i in ids]  # typed "<s>" is text

    def spellings(self) -> list[str]:
        """Every token as the vocabulary spells it, by id (SentencePiece: its pieces, with their marks)."""
        if self.pieces_model:
            return [self.pieces.id_to_piece(i) for i in range(self.pieces.get_piece_size())]
        return self.tokens

    def decode(self, ids: list[int]) -> str:
        ids = ids[:ids.index(self.end_id)] if self.end_id in ids else ids
        if self.pieces_model:  # control pieces, <unk> too, are not text
            return self.pieces.decode([i for i in ids if i not in self.control_ids])
        ids = [i for i in ids if i not in self.control_ids or i == self.unknown_id]
        return ("" if self.characters else " ").join(self.tokens[i] for i in ids)


class DeviceHypothesis(NamedTuple):
    """One translation found by `DeviceTranslator.hypotheses`."""

    ids: list[int]  # target ids, ending with end_id when the model ended it
    score: float  # total log-probability over the length penalty
    attention: np.ndarray | None  # [len(ids), source tokens], each row sums to 1; None from exports without it


class DeviceTranslator:
    """A LiteRT translator export, loaded: `translate(text)` gives (translation, score).

    Args:
        folder: the export (its `textseq.json` names the files).
        num_threads: the interpreter's threads (a phone app usually gives one).
    """

    def __init__(self, folder: str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "textseq.json").read_text(encoding="utf-8"))
        options = {}
        if self.meta["quantize"] == "int8":  # XNNPACK fails to prepare this int8 graph; LiteRT's own kernels run it
            options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter = Interpreter(model_path=str(self.folder / self.meta["model"]), num_threads=num_threads, **options)
        self.encoders = {n: interpreter.get_signature_runner(f"encode_{n}") for n in self.meta["source_lengths"]}
        self.step_runner = interpreter.get_signature_runner("step")
        signatures = interpreter.get_signature_list()
        self.forced_step = interpreter.get_signature_runner("forced_step") if "forced_step" in signatures else None
        self.gives_attention = "attention" in self.step_runner.get_output_details()  # older exports give none
        self.source = DeviceTokenizer(self.folder, self.meta["source"])
        self.target = DeviceTokenizer(self.folder, self.meta["target"])

    def translate(self, text: str, beam_size: int | None = None, alpha: float | None = None,
                  max_length: int | None = None, prefix: str | None = None) -> tuple[str, float]:
        """The best translation of `text` and its score, decoded as the run's `decode:` section says
        unless given here (`beam_size` 1 is greedy decoding), starting with `prefix` when given."""
        decoding = self.meta["decoding"]
        max_length = max_length or decoding["max_length"]
        forced = self.prefix_ids(prefix, max_length) if prefix is not None else None
        best = self.hypotheses(self.source_ids(text), beam_size or decoding["beam_size"],
                               decoding["alpha"] if alpha is None else alpha, max_length, prefix_ids=forced)[0]
        return self.text(best.ids, prefix, forced), best.score

    def prefix_ids(self, prefix: str, max_length: int) -> list[int]:
        """The target ids an output must start with, leaving it room to end."""
        return self.target.encode(prefix)[:max(max_length - 1, 0)]

    def text(self, ids: list[int], prefix: str | None = None, prefix_ids: list[int] | None = None) -> str:
        """Output ids as text, starting with `prefix` as given when it was forced (`prefix_ids`)."""
        decoded = self.target.decode(ids)
        return starting_with(decoded, prefix, self.target.decode(prefix_ids)) if prefix_ids else decoded

    def source_ids(self, text: str) -> list[int]:
        """The ids of `text`, cut to the longest source the export encodes."""
        return self.source.encode(text)[:self.meta["source_lengths"][-1]]

    def hypotheses(self, source_ids: list[int], beam_size: int, alpha: float, max_length: int,
                   n_best: int = 1, prefix_ids: list[int] | None = None) -> list[DeviceHypothesis]:
        """Beam search over the `step` signature: the `n_best` best hypotheses, best first, with the
        attention weights of each of their tokens when the export's step gives them. With
        `prefix_ids`, every hypothesis first produces those (`forced_step`), which count in its score."""
        prefix_ids = prefix_ids or []
        if prefix_ids and self.forced_step is None:
            raise ValueError("this export has no forced_step signature (it was made before textseq gave one); "
                             "export the run again to decode with a prefix")
        if beam_size > self.meta["top_k"]:
            raise ValueError(f"beam_size {beam_size}: this export's step gives {self.meta['top_k']} candidates per "
                             f"hypothesis; search with at most {self.meta['top_k']}")
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best {n_best}: ask for 1 to beam_size ({beam_size}) hypotheses")
        memory = {name: np.repeat(value, beam_size, axis=0) for name, value in self.encoded(source_ids).items()}
        states = memory.pop("states")
        beams = Beams(beam_size, alpha, max_length, n_best, self.meta["pad_id"], self.meta["target"]["end_id"])
        previous = np.full(beam_size, self.meta["start_id"], np.int32)
        for i in range(max_length):
            if beams.done():
                break
            if i < len(prefix_ids):  # each hypothesis' one continuation is the prefix's token
                forced = np.full(beam_size, prefix_ids[i], np.int32)
                out = self.forced_step(token_id=previous, states=states, forced_id=forced, **memory)
                ids = np.broadcast_to(forced, (beam_size, beam_size))
                log_probs = np.where(np.arange(beam_size) == 0, out["log_prob"][:, None], NEG)
            else:
                out = self.step_runner(token_id=previous, states=states, **memory)
                ids, log_probs = out["top_ids"][:, :beam_size], out["top_log_probs"][:, :beam_size]
            attention = out["attention"][:, :len(source_ids)] if self.gives_attention else None
            parents, previous = beams.advance(ids, log_probs, attention)
            states = out["states"][parents]
        return beams.best()

    def encoded(self, source_ids: list[int]) -> dict[str, np.ndarray]:
        """The outputs of the shortest `encode_N` that holds the source (0-padded to N)."""
        length = next(n for n in self.meta["source_lengths"] if n >= len(source_ids))
        padded = np.zeros((1, length), np.int32)
        padded[0, :len(source_ids)] = source_ids
        return dict(self.encoders[length](source_ids=padded))


class Beams:
    """The hypotheses of one beam search, as `DeviceTranslator.hypotheses` grows them a step at a
    time: their scores and lengths, and per step each one's parent and token (and the attention that
    chose it), from which `best` spells out the ended ones. Backpointers rather than copied token
    lists, and no masks for ended hypotheses until one has ended: at one sentence per call, the
    loop's own numpy work is a fair share of a sentence's time.

    >>> beams = Beams(beam_size=2, alpha=0.0, max_length=3, n_best=1, pad_id=0, end_id=3)
    >>> beams.advance(np.array([[5, 6], [7, 8]]), np.array([[-0.1, -2.0], [-1.0, -3.0]], np.float32))[1].tolist()
    [5, 6]
    >>> beams.advance(np.array([[3, 9], [3, 9]]), np.array([[-0.2, -1.0], [-0.5, -2.0]], np.float32))[1].tolist()
    [3, 9]
    >>> beams.done(), beams.best()[0].ids
    (True, [5, 3])
    """

    def __init__(self, beam_size: int, alpha: float, max_length: int, n_best: int, pad_id: int, end_id: int):
        self.size, self.n_best, self.pad_id, self.end_id = beam_size, n_best, pad_id, end_id
        self.penalties = length_penalty(np.arange(max_length + 1), alpha)  # of every length, computed once
        self.scores = np.where(np.arange(beam_size) == 0, 0.0, NEG).astype(np.float32)  # one start, not beam_size
        self.pad_only = self.scores.copy()  # an ended hypothesis' one continuation, PAD, costs nothing
        self.lengths = np.zeros(beam_size, np.int64)
        self.finished, self.any_finished = np.zeros(beam_size, bool), False
        self.history: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []  # parents, tokens, attention

    def done(self) -> bool:
        """Whether no open hypothesis can still rank above the n_best-th ended one (its
        log-probability only falls; its length penalty grows at most to max_length's), as the
        library's search stops."""
        if not self.any_finished:
            return False
        ended = np.sort(np.where(self.finished, self.scores / self.penalties[self.lengths], -np.inf))[-self.n_best]
        return bool(ended > np.where(self.finished, -np.inf, self.scores / self.penalties[-1]).max())

    def advance(self, ids: np.ndarray, log_probs: np.ndarray,
                attention: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keeps the best `beam_size` of every hypothesis' candidates (`ids`, `log_probs`: [beam, beam],
        likeliest first); returns each kept one's parent row and its token."""
        length = len(self.history) + 1
        if self.any_finished:
            ids = np.where(self.finished[:, None], self.pad_id, ids)
            log_probs = np.where(self.finished[:, None], self.pad_only, log_probs)
            penalties = self.penalties[np.where(self.finished, self.lengths, length)][:, None]
        else:
            penalties = self.penalties[length]
        candidates = self.scores[:, None] + log_probs
        # The best beam_size of all; ties go to the earlier hypothesis, then the likelier token.
        best = np.argsort(-(candidates / penalties).reshape(-1), kind="stable")[:self.size]
        parents, ranks = np.divmod(best, self.size)
        tokens, self.scores = ids[parents, ranks].astype(np.int32), candidates[parents, ranks]
        was_finished = self.finished[parents]
        self.lengths = np.where(was_finished, self.lengths[parents], length)
        self.finished = was_finished | (tokens == self.end_id)
        self.any_finished = bool(self.finished.any())
        self.history.append((parents, tokens, attention))
        return parents, tokens

    def best(self) -> list[DeviceHypothesis]:
        """The n_best hypotheses, best first."""
        final = self.scores / self.penalties[self.lengths]
        found = []
        for k in np.argsort(-final, kind="stable")[:self.n_best]:
            tokens, rows, row = [], [], k
            for parents, step_tokens, attention in reversed(self.history):
                tokens.append(int(step_tokens[row]))
                if attention is not None:
                    rows.append(attention[parents[row]])
                row = parents[row]
            length = int(self.lengths[k])
            weights = np.stack(rows[::-1])[:length] if rows else None
            found.append(DeviceHypothesis(tokens[::-1][:length], float(final[k]), weights))
        return found


def starting_with(decoded: str, prefix: str, shown: str) -> str:
    """`decoded`, with the forced prefix as the vocabulary reads it back (`shown`: lower-cased,
    `<unk>` for unknown words, ...) replaced by `prefix` as given, as the library's translations are.

    >>> starting_with("<unk> dog runs .", "A dog", "<unk> dog")
    'A dog runs .'
    """
    if not shown or not decoded.startswith(shown):
        return decoded
    rest = decoded[len(shown):]
    if prefix[-1:].isspace() and rest[:1].isspace():
        rest = rest[1:]  # one space between them
    return prefix + rest


def length_penalty(lengths: np.ndarray, alpha: float) -> np.ndarray:
    """GNMT's length penalty (Wu et al., 2016): ((5 + length) / 6) ** alpha; 1 when alpha is 0."""
    return np.power((5.0 + lengths.astype(np.float32)) / 6.0, alpha).astype(np.float32)


WORD_START = "\u2581"  # SentencePiece's mark of a piece that begins a word
WORD_BEAM = 8  # word hypotheses kept while completing pieces (textseq.next_words' beam)
MAX_WORD_PIECES = 4  # pieces a suggested word may have


class DeviceNextWords:
    """A LiteRT next-word export (`next_word.tflite` of a language model) as a keyboard uses it:
    `read(text)` once, then `typed(word)` per word, and `suggestions(k)` for the next whole words.

    A word-level model suggests its most probable next words; a SentencePiece model's pieces are
    completed into whole words in a small beam (a word's probability is its pieces' times that of a
    word boundary after them, equal spellings added), as `LanguageModel.predict` does.

    >>> keyboard = DeviceNextWords("exports/keyboard-en")  # doctest: +SKIP
    >>> keyboard.read("a man is riding a")  # doctest: +SKIP
    >>> keyboard.suggestions(3)  # doctest: +SKIP
    [('bicycle', 0.21), ('bike', 0.12), ('horse', 0.09)]
    """

    def __init__(self, folder: str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "textseq.json").read_text(encoding="utf-8"))
        self.step = Interpreter(model_path=str(self.folder / self.meta["model"]),
                                num_threads=num_threads).get_signature_runner()
        self.tokenizer = DeviceTokenizer(self.folder, self.meta)
        if self.tokenizer.pieces_model:
            pieces = self.tokenizer.spellings()
            controls = np.isin(np.arange(len(pieces)), self.meta["control_ids"])
            self.starts = np.array([p.startswith(WORD_START) for p in pieces]) & ~controls
            self.ends_word = self.starts | (np.arange(len(pieces)) == self.meta["end_id"])
            self.continues = ~self.starts & ~controls
        self.state, self.out = None, None

    def read(self, text: str) -> None:
        """Starts a new text (`<s>`) and reads `text`."""
        self.state = {name: np.zeros(spec["shape"], spec["dtype"]) for name, spec in self.meta["inputs"].items()
                      if name != "token_id"}
        self.state, self.out = self._fed(self.state, self.meta["start_id"])
        self.typed(text)

    def typed(self, text: str) -> None:
        """Reads more text after what was read."""
        for token in self.tokenizer.encode(text):
            self.state, self.out = self._fed(self.state, token)

    def suggestions(self, k: int = 3) -> list[tuple[str, float]]:
        """The `k` most probable next words and their probabilities, most probable first."""
        if not self.tokenizer.pieces_model:
            return [(self.tokenizer.tokens[i], float(p))
                    for i, p in zip(self.out["top_ids"][0][:k], self.out["top_probabilities"][0][:k])]
        return self._whole_words(k)

    def _fed(self, state: dict, token: int) -> tuple[dict, dict]:
        out = self.step(token_id=np.array([token], np.int32), **state)
        return {name: out[name] for name in self.meta["state"]}, out

    def _whole_words(self, k: int) -> list[tuple[str, float]]:
        beam = max(k, WORD_BEAM)
        log_probs = self.out["log_probs"][0]
        first = np.where(self.starts, log_probs, -np.inf)
        order = np.argsort(-first, kind="stable")[:beam]
        scores, words = first[order], [[int(i)] for i in order]
        states = [self.state] * beam
        found: dict[str, float] = {}
        for step in range(1, MAX_WORD_PIECES + 1):
            after = [self._fed(state, word[-1]) for state, word in zip(states, words)]
            log_probs = np.stack([out["log_probs"][0] for _, out in after])
            boundary = np.logaddexp.reduce(np.where(self.ends_word[None, :], log_probs, -np.inf), axis=-1)
            for word, score in zip(words, scores + boundary):
                spelled = self.tokenizer.pieces.decode(word)
                if spelled and np.isfinite(score):
                    found[spelled] = found.get(spelled, 0.0) + float(np.exp(score))
            if step == MAX_WORD_PIECES:
                break
            extended = (scores[:, None] + np.where(self.continues[None, :], log_probs, -np.inf)).reshape(-1)
            best = np.argsort(-extended, kind="stable")[:beam]
            parents, pieces = best // log_probs.shape[1], best % log_probs.shape[1]
            scores = extended[best]
            words = [[*words[p], int(piece)] for p, piece in zip(parents, pieces)]
            states = [after[p][0] for p in parents]
        ranked = sorted(found.items(), key=lambda item: -item[1])  # stable: equal totals keep first-found order
        return ranked[:k]
