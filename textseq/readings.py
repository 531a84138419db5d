"""What a language model keeps of the texts it read, so that a text typed on reads only what was added.

A keyboard asks for the next word after every word: each text is the one before plus a word.
`Readings` keeps where the reading of the last `TYPING_CACHE` texts ended (the decoder states, the
window's encoder memory and the logits: `textseq.windows.read_to_the_end`); a text that starts
with one of them and ends in the same window reads on from there (`textseq.windows.read_on`), and a
text read before is only ranked again. What it answers is what reading the text whole answers.

>>> readings = Readings(model, recipe.data, tokenizer.tokens)  # doctest: +SKIP
>>> probabilities, tokens = readings.next_tokens(ids, k=3)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import threading
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from textseq.next_words import top_suggestions
from textseq.windows import read_on, read_to_the_end

TYPING_CACHE = 64  # texts whose reading is kept: a text typed on from one of them reads only what was added


class Reading(NamedTuple):
    """Where reading a text ended (`read_to_the_end`): what reading on needs."""
    logits: tf.Tensor
    states: list
    outputs: tf.Tensor
    source_mask: tf.Tensor


class Readings:
    """The kept readings of one model (thread-safe: a server predicts from several threads).

    Args:
        model: the run's `Seq2Seq`.
        data: the recipe's data section (how a text is read, window by window).
        tokens: the vocabulary's spellings by id (string tensor), which `next_tokens` returns.
    """

    def __init__(self, model, data, tokens: tf.Tensor):
        self.model, self.data, self.tokens = model, data, tokens
        self._kept: collections.OrderedDict = collections.OrderedDict()  # token ids -> Reading, oldest first
        self._lock = threading.Lock()
        self.functions = self._graph_functions()

    def __len__(self) -> int:
        return len(self._kept)

    def forget(self) -> None:
        """Drops every kept reading, so that the next text is read from its start."""
        with self._lock:
            self._kept.clear()

    def next_tokens(self, ids: np.ndarray, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        """The `k` most probable next tokens after the text `ids` (`(probabilities [1, k], tokens
        [1, k])`), never a control token, reading on from the longest kept text it starts with whose
        reading ended in the window it ends in (else reading it all). Reading and ranking are one
        graph call."""
        key = tuple(ids.tolist())
        window_start = len(key) // self.data.continuation * self.data.continuation
        with self._lock:
            known = next((n for n in range(len(key), window_start - 1, -1) if key[:n] in self._kept), None)
            earlier = self._kept[key[:known]] if known is not None else None
        k = tf.constant(k)
        if earlier is not None and known == len(key):
            return self.functions["rank"](earlier.logits, k)
        if earlier is None:
            padded = np.pad(ids, (0, 1 if len(key) == 0 else 0))[None].astype(np.int32)
            top, reading = self.functions["read"](tf.constant(padded), tf.constant([len(key)], tf.int32), k)
            reading = Reading(*reading)
        else:  # the decoder reads the token before each new position: ids[known] .. ids[-1]
            top, (logits, states) = self.functions["read_on"](tf.constant(ids[None, known:], tf.int32),
                                                              earlier.states, earlier.outputs, earlier.source_mask, k)
            reading = Reading(logits, states, earlier.outputs, earlier.source_mask)
        with self._lock:
            self._kept[key] = reading
            self._kept.move_to_end(key)
            while len(self._kept) > TYPING_CACHE:
                self._kept.popitem(last=False)
        return top

    def _graph_functions(self) -> dict:
        """read (a text whole), read_on (from a kept reading), rank (the next tokens of kept logits)."""
        model, data, decoder = self.model, self.data, self.model.decoder
        dtype = decoder.compute_dtype
        states = [[tf.TensorSpec([1, size], dtype) for size in layer] for layer in decoder.state_sizes()]
        memory = [tf.TensorSpec([1, None, model.encoder.units], dtype), tf.TensorSpec([1, None], tf.bool)]
        k = tf.TensorSpec([], tf.int32)

        def rank(logits, k):
            top = top_suggestions(logits, k)
            return top.values, tf.gather(self.tokens, top.indices)

        def read(ids, lengths, k):
            reading = read_to_the_end(model, ids, lengths, data.context, data.continuation, data.carry_state)
            return rank(reading[0], k), reading

        def read_on_and_rank(previous, states, outputs, mask, k):
            logits, states = read_on(model, previous, states, outputs, mask)
            return rank(logits, k), (logits, states)

        return {
            "read": tf.function(read, input_signature=[tf.TensorSpec([1, None], tf.int32),
                                                       tf.TensorSpec([1], tf.int32), k], autograph=False),
            "read_on": tf.function(read_on_and_rank,
                                   input_signature=[tf.TensorSpec([1, None], tf.int32), states, *memory, k],
                                   autograph=False),
            "rank": tf.function(rank, input_signature=[tf.TensorSpec([1, decoder.vocab_size], tf.float32), k],
                                autograph=False),
        }
