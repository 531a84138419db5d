"""Whole next words from a subword language model, as a phone keyboard suggests them.

A SentencePiece model predicts pieces, and one word may be several of them (`▁bi` `ke`). For the
k most probable next *words*, each candidate starts with a piece that begins a word and is
completed piece by piece up to the next word boundary, in a small beam: a word's probability is
the product of its pieces' probabilities and of the probability that a new word (or the line's
end) follows it, so "bi" is not counted as a word where "bike" is meant. Candidates that spell
the same word through different pieces add up.

`LanguageModel.predict`, the JSON API, the web page and the export's `next_words` all call
`top_next_words`, so they answer the same.

>>> probabilities, words = top_next_words(model, recipe.data, tokenizer, tokenizer.encode(texts), k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from textseq.constants import EOS, PAD, RESERVED
from textseq.windows import read_texts

WORD_BEAM = 8  # hypotheses kept per text while completing words (at least k)


def without_controls(probabilities: tf.Tensor) -> tf.Tensor:
    """Next-token probabilities `[batch, vocab]` with the reserved tokens' set to -1, so that a top-k
    never suggests `<unk>` or a control token (the others keep the model's own probabilities)."""
    reserved = tf.range(tf.shape(probabilities)[-1]) < len(RESERVED)
    return tf.where(reserved[None, :], tf.constant(-1.0, probabilities.dtype), probabilities)


def top_suggestions(logits: tf.Tensor, k) -> tf.Tensor:
    """`tf.math.top_k` of the next-token probabilities `[batch, vocab]` from `logits`, never
    `<unk>` or a control token: `(values, indices)`, most probable first."""
    return tf.math.top_k(without_controls(tf.nn.softmax(logits)), k)


MAX_WORD_PIECES = 4  # pieces a suggested word may have; longer words are rare and cost one more pass each


def top_next_words(model, data, tokenizer, ids: tf.RaggedTensor, k: tf.Tensor,
                    max_pieces: int = MAX_WORD_PIECES) -> tuple[tf.Tensor, tf.Tensor]:
    """The `k` most probable next words after each text: `(probabilities [batch, k], words [batch, k])`,
    most probable first; rows with fewer than `k` distinct candidates end with "" and 0.

    `data` is the recipe's data section (how the text is read, window by window); `tokenizer` a
    `SubwordTokenizer`.
    """
    k = tf.convert_to_tensor(k, tf.int32)
    beam = tf.maximum(k, WORD_BEAM)
    batch = tf.cast(ids.nrows(), tf.int32)
    starts = tokenizer.word_starts
    ends_word = tf.logical_or(starts, tf.equal(tf.range(tokenizer.vocab_size), EOS))
    continues = tf.logical_not(tf.logical_or(starts, tokenizer.controls))
    neg_inf = tf.constant(-float("inf"))

    def log_probs_after(rows: tf.RaggedTensor) -> tf.Tensor:
        logits = read_texts(model, rows.to_tensor(PAD), tf.cast(rows.row_lengths(), tf.int32), data.context,
                            data.continuation, data.carry_state)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32))

    first = tf.where(starts[None, :], log_probs_after(ids), neg_inf)
    scores, pieces = tf.math.top_k(first, beam)  # [batch, beam]
    words = pieces[:, :, None]  # [batch, beam, pieces so far]
    texts = tf.gather(ids, tf.repeat(tf.range(batch), beam))  # each text once per hypothesis
    found_scores, found_words = [], []
    for step in range(1, max_pieces + 1):
        log_probs = tf.reshape(log_probs_after(tf.concat([texts, tf.reshape(words, [batch * beam, step])], axis=1)),
                               [batch, beam, -1])
        boundary = tf.reduce_logsumexp(tf.where(ends_word[None, None, :], log_probs, neg_inf), axis=-1)
        found_scores.append(scores + boundary)
        found_words.append(tf.pad(words, [[0, 0], [0, 0], [0, max_pieces - step]]))
        if step == max_pieces:
            break
        extended = tf.reshape(scores[:, :, None] + tf.where(continues[None, None, :], log_probs, neg_inf),
                              [batch, -1])
        scores, best = tf.math.top_k(extended, beam)
        parents, next_pieces = best // tokenizer.vocab_size, best % tokenizer.vocab_size
        words = tf.concat([tf.gather(words, parents, batch_dims=1), next_pieces[:, :, None]], axis=2)
    candidates = tf.concat(found_words, axis=1)  # [batch, beam * max_pieces, max_pieces]
    probabilities = tf.exp(tf.concat(found_scores, axis=1))
    flat = tf.reshape(candidates, [-1, max_pieces])
    spelled = tokenizer.detokenize(tf.ragged.boolean_mask(flat, tf.not_equal(flat, PAD)))
    spelled = tf.reshape(spelled, tf.shape(candidates)[:2])
    probabilities = tf.where(tf.equal(spelled, ""), 0.0, probabilities)
    return tf.map_fn(lambda row: _top_distinct(row[0], row[1], k), (probabilities, spelled),
                     fn_output_signature=(tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.string)))


def _top_distinct(probabilities: tf.Tensor, words: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The `k` most probable distinct words of one row, the probabilities of equal words added."""
    unique, index = tf.unique(words)
    totals = tf.math.unsorted_segment_sum(probabilities, index, tf.size(unique))
    top = tf.math.top_k(totals, tf.minimum(k, tf.size(unique)))
    missing = k - tf.size(top.values)
    return (tf.pad(top.values, [[0, missing]]),
            tf.pad(tf.gather(unique, top.indices), [[0, missing]], constant_values=""))
