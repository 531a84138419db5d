"""How probable a run's model finds given text: each pair's target given its source (translation), or
each line of a text read as the model reads a stream (language model), in nats, total and per
token. These are the numbers behind `evaluate`'s loss: over a split, minus their sum over the tokens
is that loss.

>>> translator = Translator.from_run("runs/dates")  # doctest: +SKIP
>>> score_pairs(translator, [("3rd of March 1998", "1998-03-03")])  # doctest: +SKIP
[{'source': '3rd of March 1998', 'target': '1998-03-03', 'log_probability': -0.0123, 'tokens': 11, ...}]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textseq.constants import EOS, PAD
from textseq.data.pipeline import encode_pairs, encode_text, examples_dataset, language_model_examples, window_dataset
from textseq.models import CarriedStates


def token_log_probabilities(model):
    """`(inputs, target_out) -> log P(target_out[t] | ...)` `[rows, steps]`, 0 at padding."""
    @tf.function(reduce_retracing=True)  # batches of many lengths: one trace for all, not one each
    def score(inputs, target_out):
        logits = tf.cast(model(inputs, training=False), tf.float32)
        picked = tf.gather(tf.nn.log_softmax(logits), target_out, batch_dims=2)
        return tf.where(tf.equal(target_out, PAD), 0.0, picked)

    return score


def record(log_probability: float, tokens: int, **text) -> dict:
    return {**text, "log_probability": round(log_probability, 6), "tokens": tokens,
            "per_token": round(log_probability / max(tokens, 1), 6)}


def score_pairs(loaded, pairs: list[tuple[str, str]], batch_size: int = 64) -> list[dict]:
    """One record per (source, target) pair, in order: the target's tokens and end mark given the
    source, both cut to the recipe's maximum lengths as training cuts them."""
    data = loaded.recipe.data
    examples = encode_pairs(pairs, loaded.source, loaded.target, data.max_source_length, data.max_target_length)
    score = token_log_probabilities(loaded.model)
    totals, counts = [], []
    for inputs, target_out in examples_dataset(examples, batch_size, data.max_source_length, data.max_target_length):
        log_probs = score(inputs, target_out).numpy()
        totals += log_probs.sum(axis=1).tolist()
        counts += np.count_nonzero(target_out.numpy(), axis=1).tolist()
    return [record(total, count, source=source, target=target)
            for (source, target), total, count in zip(pairs, totals, counts)]


def score_text(loaded, text: str, batch_size: int | None = None) -> list[dict]:
    """One record per line of `text` that the model reads (words and SentencePiece: non-blank lines,
    each ending with its end mark; characters: every line with its newline), each scored after the
    lines before it, window by window in `batch_size` rows, as `evaluate` reads a split."""
    recipe, tokenizer = loaded.recipe, loaded.target
    data, batch_size = recipe.data, batch_size or recipe.train.batch_size
    stream = encode_text(text, tokenizer).numpy()
    positions = np.zeros(len(stream), np.float64)
    if data.carry_state:
        score = token_log_probabilities(CarriedStates(loaded.model, batch_size))
        row_length = -(-len(stream) // batch_size)
        batches = window_dataset(stream, data.context, data.continuation, batch_size)
        for k, (inputs, target_out) in enumerate(batches):
            log_probs, real = score(inputs, target_out).numpy(), target_out.numpy() != PAD
            starts = np.arange(batch_size)[:, None] * row_length + k * data.continuation
            where = starts + np.arange(target_out.shape[1])[None, :]
            positions[where[real]] = log_probs[real]
    else:
        score = token_log_probabilities(loaded.model)
        examples = language_model_examples(stream, data.context, data.continuation)
        found = [score(inputs, target_out).numpy()[target_out.numpy() != PAD] for inputs, target_out in
                 examples_dataset(examples, batch_size, data.context, data.continuation)]
        positions[:] = np.concatenate(found)
    return [record(float(positions[start:end].sum()), end - start, text=line)
            for line, (start, end) in zip(scored_lines(text, tokenizer), line_spans(stream, tokenizer))]


def scored_lines(text: str, tokenizer) -> list[str]:
    """The lines of `text` that have tokens in its stream (`encode_text`)."""
    if tokenizer.unit == "character":
        lines = text.split("\n")
        return lines if lines[-1] else lines[:-1]
    return [line for line in text.split("\n") if line.strip()]


def line_spans(stream: np.ndarray, tokenizer) -> list[tuple[int, int]]:
    """`(start, end)` of each line's tokens in the stream: up to and with its end mark (or newline)."""
    end_mark = EOS
    if tokenizer.unit == "character":
        end_mark = int(tokenizer.encode(tf.constant(["\n"])).flat_values.numpy()[0])
    ends = (np.flatnonzero(stream == end_mark) + 1).tolist()
    if not ends or ends[-1] != len(stream):
        ends.append(len(stream))  # a last line without a line end
    return list(zip([0, *ends[:-1]], ends))
