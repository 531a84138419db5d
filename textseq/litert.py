"""LiteRT (TensorFlow Lite) export of a language-model run: the next-word step a phone keyboard runs.

A keyboard reads one word at a time, so the `.tflite` file holds one position of what
`textseq.windows.walk_windows` does: it takes the id of the token just typed (`<s>` to begin a text) and
the state the previous call returned, and gives back the new state, the `TOP_K` most probable
next tokens with their probabilities (never `<unk>` or a control token) and, for a SentencePiece
model, every token's log-probability, from which `textseq.on_device.DeviceNextWords` completes a SentencePiece model's
pieces into whole words as `LanguageModel.predict` does. The state holds the decoder's recurrent states, the
attention memory of the current window and the last `data.context` token ids, so the encoder runs
again only where a window begins (every `data.continuation` tokens), as in training, and a typed
word costs one decoder step, not a re-read of the text. A new text starts from zeros.

Beside the model: `vocab.json` (the tokens, by id), the SentencePiece model where the run has one,
and `textseq.json` (how to tokenize, the state's tensors, the ids of `<s>` and the other control
tokens). Quantization (`textseq.constants.QUANTIZATIONS`) shrinks the weights: float16, dynamic range (int8
weights), or int8 weights and activations calibrated on the run's training text.

>>> from textseq.export import export  # doctest: +SKIP
>>> export("runs/keyboard-en", "exports/keyboard-en", format="litert", quantize="dynamic")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sys
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla  # DYNAMIC_UPDATE_SLICE for LiteRT (no public op converts to it)
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from textseq import __version__
from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.sources import load_text
from textseq.checkpoints import new_model
from textseq.models.seq2seq import Seq2Seq
from textseq.layers.tied import TiedLogits
from textseq.next_words import top_suggestions

MODEL_FILE = "next_word.tflite"
TRANSLATOR_FILE = "translator.tflite"  # a translation run's export (textseq.litert_translator)
VOCAB_FILE = "vocab.json"
METADATA = "textseq.json"
SIGNATURE = "serving_default"  # the only one: `get_signature_runner()` needs no name
TOP_K = 10  # next tokens per step: a keyboard shows three after leaving out control tokens
CALIBRATION_LINES = 200  # training lines whose steps calibrate int8 activations
STATE = ("phase", "history", "memory_outputs", "memory_keys", "memory_length", "states")


class NextWordStep(tf.Module):
    """One position of `walk_windows` for a batch of texts, as a function of the state it returns.

    State (zeros for a new text):
        phase `[batch]` int32: position within the window (a window begins at 0);
        history `[batch, context]` int32: the last `context` token ids read, oldest first, 0 after;
        memory_outputs, memory_keys `[batch, context, units | attention_units]`: the window's
            encoder outputs and their attention projection;
        memory_length `[batch]` int32: how many of them are real (the attention mask);
        states `[batch, n, units]`: the decoder's LSTM (h, c) or GRU (h) states, layer by layer, then
            its attentional vector with model.input_feeding.

    >>> step = NextWordStep(model, context=8, continuation=8, carry=False)  # doctest: +SKIP
    >>> out = step(token_id=tf.constant([BOS]), **step.zeros(1))  # doctest: +SKIP
    """

    def __init__(self, model: Seq2Seq, context: int, continuation: int, carry: bool, k: int = TOP_K,
                 log_probs: bool = False, unrolled: bool = False):
        super().__init__(name="next_word_step")
        self.model, self.context, self.continuation, self.carry = model, context, continuation, carry
        self.unrolled = unrolled  # the encoder's steps written out (`looped_encoder`)
        self.log_probs = log_probs  # every token's log-probability too: what completes pieces into words
        self.k = min(k, model.decoder.vocab_size)
        decoder = model.decoder
        self.state_sizes = decoder.state_sizes()  # all of the decoder's units
        self.shapes = {"phase": ([], tf.int32), "history": ([context], tf.int32),
                       "memory_outputs": ([context, model.encoder.units], tf.float32),
                       "memory_keys": ([context, decoder.attention.units], tf.float32),
                       "memory_length": ([], tf.int32),
                       "states": ([sum(map(len, self.state_sizes)), decoder.units], tf.float32)}

    def zeros(self, batch: int) -> dict[str, tf.Tensor]:
        """The state a new text starts from."""
        return {name: tf.zeros([batch, *shape], dtype) for name, (shape, dtype) in self.shapes.items()}

    def signature(self, batch: int = 1) -> list[tf.TensorSpec]:
        return [tf.TensorSpec([batch], tf.int32, name="token_id")] + [
            tf.TensorSpec([batch, *shape], dtype, name=name) for name, (shape, dtype) in self.shapes.items()]

    def __call__(self, token_id, phase, history, memory_outputs, memory_keys, memory_length, states):
        context = self.context
        token_id = known_ids(token_id, self.model.decoder.vocab_size)
        # `<s>` begins a text and is not part of it; every other token joins the history.
        count = tf.reduce_sum(tf.cast(tf.not_equal(history, PAD), tf.int32), axis=1)
        slots = tf.range(context)[None, :]
        appended = tf.where((count >= context)[:, None], tf.concat([history[:, 1:], token_id[:, None]], axis=1),
                            tf.where(tf.equal(slots, count[:, None]), token_id[:, None], history))
        history = tf.where(tf.not_equal(token_id, BOS)[:, None], appended, history)

        # A new window: the encoder reads the `context` tokens before it (training's windows).
        border = tf.equal(phase, 0)
        decoder_states = [states[:, i] for i in range(states.shape[1])]

        def encode():
            outputs, encoder_states = looped_encoder(self.model.encoder, history, self.unrolled)
            flat = [state for layer in self.model.start_states(encoder_states) for state in layer]
            return (outputs, self.model.decoder.attention.project_keys(outputs),
                    tf.reduce_sum(tf.cast(tf.not_equal(history, PAD), tf.int32), axis=1), flat)

        def keep():
            return memory_outputs, memory_keys, memory_length, decoder_states

        new_outputs, new_keys, new_length, encoder_states = tf.cond(tf.reduce_any(border), encode, keep)
        memory_outputs = tf.where(border[:, None, None], new_outputs, memory_outputs)
        memory_keys = tf.where(border[:, None, None], new_keys, memory_keys)
        memory_length = tf.where(border, new_length, memory_length)
        # The decoder starts from the encoder's states where a text begins, and without carried states
        # at every border too (a bridge's start states are not zeros).
        restart = border if not self.carry else tf.logical_and(border, tf.equal(count, 0))
        decoder_states = [tf.where(restart[:, None], new, old) for new, old in zip(encoder_states, decoder_states)]

        layers = by_layer(decoder_states, self.state_sizes)
        memory = {"outputs": memory_outputs, "projected_keys": memory_keys,
                  "mask": tf.range(context)[None, :] < memory_length[:, None]}
        logits, layers, _ = self.model.step(token_id, layers, memory)
        logits = tf.cast(logits, tf.float32)
        top = top_suggestions(logits, self.k)
        out = {"top_ids": top.indices, "top_probabilities": top.values,
               "phase": (phase + 1) % self.continuation, "history": history,
               "memory_outputs": memory_outputs, "memory_keys": memory_keys, "memory_length": memory_length,
               "states": stacked_states(layers)}
        if self.log_probs:  # a word model's keyboard needs its top tokens only: no [vocab] output per step
            out["log_probs"] = tf.nn.log_softmax(logits)
        return out


def looped_encoder(encoder, ids: tf.Tensor, unrolled: bool = False) -> tuple[tf.Tensor, list[list[tf.Tensor]]]:
    """`encoder(ids)` with each recurrent layer (and direction) a WHILE loop over the fixed
    `ids.shape[1]` steps: what LiteRT's builtin ops run (Keras' loops hold TensorList ops that they
    lack). Masked steps keep the states and give zero outputs, as the layers do. `unrolled` writes
    the steps out instead: for full int8 quantization, whose calibrator crashes on these loops (and
    whose model runs on LiteRT's own kernels, which keep one copy of each weight however often used).

    >>> outputs, states = looped_encoder(model.encoder, tf.constant([[5, 6, 0, 0]]))  # doctest: +SKIP
    """
    mask = tf.not_equal(ids, PAD)
    x = encoder.embedding(ids)
    layer = _unrolled if unrolled else _loop
    states = []
    for rnn in encoder.rnns:
        if encoder.bidirectional:
            forward, forward_states = layer(rnn.forward_layer.cell, x, mask, backwards=False)
            backward, backward_states = layer(rnn.backward_layer.cell, x, mask, backwards=True)
            x = tf.concat([forward, backward], axis=-1)
            states.append([tf.concat([f, b], axis=-1) for f, b in zip(forward_states, backward_states)])
        else:
            x, layer_states = layer(rnn.cell, x, mask, backwards=False)
            states.append(layer_states)
    return x, states


def _loop(cell, x: tf.Tensor, mask: tf.Tensor, backwards: bool):
    """One direction of a recurrent layer over `x` `[B, T, D]`: its outputs `[B, T, H]` and last states.

    A loop, not the steps unrolled: XNNPACK packs the weights of every product node apart, so an
    unrolled loop holds its recurrent weights once per step (the multi30k-de-en-spm int8 translator,
    a 10 MB file, held 275 MB after its first sentence; 38 MB as loops). The outputs go into place
    with DYNAMIC_UPDATE_SLICE, the one builtin that writes a row without touching the others.
    """
    steps = x.shape[1]
    step, inputs = _cell_step(cell, x)
    mask = tf.transpose(mask)[:, :, None]  # [T, B, 1]
    start = _zero_states(cell, x)

    def body(i, outputs, *states):
        t = steps - 1 - i if backwards else i
        output, states = _masked_step(step, tf.gather(inputs, t), tf.gather(mask, t), list(states))
        outputs = xla.dynamic_update_slice(outputs, output[None], tf.stack([t, 0, 0]))
        return (i + 1, outputs, *states)

    outputs = tf.zeros([steps, tf.shape(x)[0], start[0].shape[-1]], x.dtype)  # an output is the state h
    _, outputs, *states = tf.while_loop(lambda i, *_: i < steps, body, [tf.constant(0), outputs, *start])
    return tf.transpose(outputs, [1, 0, 2]), states


def _unrolled(cell, x: tf.Tensor, mask: tf.Tensor, backwards: bool):
    """`_loop` with its steps written out, each reading its row of the input projection."""
    step, inputs = _cell_step(cell, x)
    inputs = tf.unstack(inputs)  # one UNPACK, not a slice per step
    states = _zero_states(cell, x)
    outputs = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if backwards else range(x.shape[1])):
        outputs[t], states = _masked_step(step, inputs[t], mask[:, t, None], states)
    return tf.stack(outputs, axis=1), states


def _masked_step(step, inputs_t: tf.Tensor, real: tf.Tensor, states: list[tf.Tensor]):
    """`step` where `real` `[B, 1]` is true; elsewhere the states stay and the output is zero, as the
    Keras layers give masked steps."""
    output, new_states = step(inputs_t, states)
    return (tf.where(real, output, tf.zeros_like(output)),
            [tf.where(real, new, old) for new, old in zip(new_states, states)])


def _zero_states(cell, x: tf.Tensor) -> list[tf.Tensor]:
    """The cell's states before the first step of `x` `[B, T, D]`: zeros, `[B, size]` each."""
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
    return [tf.zeros([tf.shape(x)[0], size], x.dtype) for size in sizes]


def _cell_step(cell, x: tf.Tensor):
    """`(step(inputs_t, states) -> (output, states), inputs)`: Keras' LSTM or GRU cell, with the
    input projection `x W` of every step one product before the loop (`inputs`: its rows, time
    major), the cell's own order of additions kept. Other cells get `x` and are called as they are."""
    lstm, gru = isinstance(cell, keras.layers.LSTMCell), isinstance(cell, keras.layers.GRUCell)
    if not (lstm or (gru and cell.reset_after)) or not cell.use_bias:
        def called(inputs, states):
            output, new_states = cell(inputs, states, training=False)
            return output, (new_states if isinstance(new_states, (list, tuple)) else [new_states])
        return called, tf.transpose(x, [1, 0, 2])
    projected = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), cell.kernel)
    if lstm:
        bias = cell.bias  # the LSTM cell adds it last: x W + h U, then the bias
    else:
        input_bias, bias = tf.unstack(cell.bias)  # GRU (reset_after): x W + b_x, and h U + b_h
        projected = projected + input_bias
    projected = tf.transpose(tf.reshape(projected, [tf.shape(x)[0], x.shape[1], -1]), [1, 0, 2])

    def lstm_step(projected_t, states):
        h, c = states
        z = tf.split(projected_t + tf.matmul(h, cell.recurrent_kernel) + bias, 4, axis=1)
        c = cell.recurrent_activation(z[1]) * c + cell.recurrent_activation(z[0]) * cell.activation(z[2])
        h = cell.recurrent_activation(z[3]) * cell.activation(c)
        return h, [h, c]

    def gru_step(projected_t, states):
        (h,) = states
        x_z, x_r, x_h = tf.split(projected_t, 3, axis=1)
        h_z, h_r, h_h = tf.split(tf.matmul(h, cell.recurrent_kernel) + bias, 3, axis=1)
        z, r = cell.recurrent_activation(x_z + h_z), cell.recurrent_activation(x_r + h_r)
        h = z * h + (1 - z) * cell.activation(x_h + r * h_h)
        return h, [h]

    return (lstm_step if lstm else gru_step), projected


def known_ids(ids, vocab_size: int):
    """Ids outside the vocabulary read as `<unk>` in every quantization (a float GATHER wraps -1 round
    to the last word, an int8 one refuses it)."""
    return tf.where((ids >= 0) & (ids < vocab_size), ids, UNK)


def by_layer(flat: list, sizes: list[list[int]]) -> list[list]:
    """A flat list of states, per layer again as `Decoder.state_sizes()` groups them."""
    starts = np.cumsum([0, *map(len, sizes)])
    return [flat[start:end] for start, end in zip(starts[:-1], starts[1:])]


def stacked_states(layers: list[list[tf.Tensor]]) -> tf.Tensor:
    """Per-layer states `[batch, units]` as the one `[batch, n, units]` tensor an export passes."""
    return tf.stack([state for layer in layers for state in layer], axis=1)


def plain_model(loaded, quantize: str = "none") -> Seq2Seq:
    """The run's model on Keras' own layers (the converter takes no XLA kernels), with its weights;
    int8 quantizations hold its embedding tables as `Int8Rows` (one for a table the encoder shares)."""
    model = new_model(loaded.recipe, loaded.source.vocab_size, loaded.target.vocab_size, speed_path=False)
    model.set_weights(loaded.model.get_weights())
    if quantize in ("dynamic", "int8"):
        tables = {}
        for layer in (model.encoder, model.decoder):
            if id(layer.embedding) not in tables:
                tables[id(layer.embedding)] = Int8Rows(layer.embedding.embeddings.numpy())
            layer.embedding = tables[id(layer.embedding)]
        if isinstance(model.decoder.logits, TiedLogits):  # one table in the file, not two
            model.decoder.logits.embedding = tables[id(model.decoder.logits.embedding)]
    return model


def step_for(loaded, quantize: str = "none") -> NextWordStep:
    """The step of a loaded language model, quantized as `plain_model` says."""
    data = loaded.recipe.data
    return NextWordStep(plain_model(loaded, quantize), data.context, data.continuation, data.carry_state,
                        log_probs=loaded.target.unit == "piece", unrolled=quantize == "int8")


class Int8Rows:
    """An embedding table stored as int8 with one scale per row, looked up like `keras.layers.Embedding`.

    LiteRT's quantizers leave the tables of GATHER ops in float32: for a keyboard model, whose two
    embedding tables hold most of its weights, a "quantized" file would stay twice as large.

    >>> table = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    >>> float(np.abs(Int8Rows(table)(tf.constant([1, 0])).numpy() - table[[1, 0]]).max()) < 1 / 127
    True
    """

    def __init__(self, table: np.ndarray):
        scale = np.abs(table).max(axis=1, keepdims=True) / 127
        scale[scale == 0] = 1
        self.values = tf.constant(np.round(table / scale).astype(np.int8))
        self.scale = tf.constant(scale.astype(np.float32))

    def __call__(self, ids):
        return tf.cast(tf.gather(self.values, ids), tf.float32) * tf.gather(self.scale, ids)

    @property
    def embeddings(self) -> tf.Tensor:
        """The table as these int8 rows give it back, in float32: what a tied output layer multiplies
        by, so that the converter quantizes its weights to exactly `values` and stores the two as one
        buffer (from the original table, it rounds a few weights the other way and keeps both)."""
        return tf.cast(self.values, tf.float32) * self.scale


def calibration_steps(step: NextWordStep, call, loaded, lines: int = CALIBRATION_LINES, seed: int = 0):
    """What int8 calibrates on: the inputs of `call` (`step` traced) along `lines` seeded training
    lines, read as one text from `<s>` (each line ended by `</s>`, as training reads them), across
    window borders."""
    text = load_text(loaded.recipe.data, "train").splitlines()
    chosen = [line for line in random.Random(seed).sample(text, min(lines, len(text))) if line.strip()]
    stream = [token for ids in loaded.target.encode(tf.constant(chosen)).to_list() for token in [*ids, EOS]]
    state = step.zeros(1)
    for token in [BOS, *stream[:-1]]:
        inputs = {"token_id": tf.constant([token], tf.int32), **state}
        yield {name: value.numpy() for name, value in inputs.items()}
        out = call(**inputs)
        state = {name: out[name] for name in STATE}


def convert(loaded, quantize: str, step: NextWordStep) -> bytes:
    """The `.tflite` bytes of a language-model run's `step`, quantized as asked (one of `textseq.constants.QUANTIZATIONS`)."""
    traced = tf.function(step.__call__, input_signature=step.signature(), autograph=False)
    function = traced.get_concrete_function()
    # Weights as constants: the converter leaves variables read inside the window branch (an IF op)
    # as variables, which quantization then skips.
    frozen = convert_variables_to_constants_v2(function)
    names = sorted(function.structured_outputs)  # the frozen function's outputs: a flat list in this order
    named = tf.function(lambda *inputs: dict(zip(names, frozen(*inputs))), input_signature=step.signature())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named.get_concrete_function()], tf.Module())
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: calibration_steps(step, traced, loaded)
    with warnings.catch_warnings(), native_lines_dropped(CONVERTER_NOISE):
        # int8 calibration runs TensorFlow's own interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return converter.convert()


# What the int8 calibrator prints from C++ on every conversion ("fully_quantize: 0, inference_type: 6, ...").
CONVERTER_NOISE = re.compile(rb"^fully_quantize: ")


@contextlib.contextmanager
def native_lines_dropped(noise: re.Pattern):
    """Standard error's lines written by native code inside the block, less those `noise` matches (the
    rest is written out again afterwards): C++ prints past Python's streams, straight to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught if not noise.match(line))
            if kept:
                os.write(2, kept)


def metadata(loaded, quantize: str, step: NextWordStep) -> dict:
    recipe, tokenizer = loaded.recipe, loaded.target
    return {
        "textseq_version": __version__, "tensorflow_version": tf.__version__, "format": "litert",
        "model": MODEL_FILE, "signature": SIGNATURE, "quantize": quantize, "vocabulary": VOCAB_FILE,
        **tokenizer.describe(),
        "unknown_id": UNK, "start_id": BOS, "end_id": EOS, "control_ids": list(range(len(RESERVED))), "top_k": step.k,
        "inputs": {"token_id": {"shape": [1], "dtype": "int32", "range": [0, len(tokenizer.vocab.tokens) - 1],
                                "outside": "read as unknown_id"},
                   **{name: {"shape": [1, *shape], "dtype": dtype.name} for name, (shape, dtype) in step.shapes.items()}},
        "state": list(STATE),
        "usage": "state = zeros of each input but token_id; feed <s> (start_id), then each typed token's id "
                 "(end_id where a sentence ends); after every call keep the outputs named in state and read "
                 "top_ids / top_probabilities (a SentencePiece model's log_probs: every token's, from which "
                 "textseq/on_device.py's DeviceNextWords completes whole next words)",
        "recipe": recipe.to_dict(),
    }


def write_litert(loaded, out: Path, quantize: str) -> None:
    """The `.tflite` step of a `LanguageModel`, its vocabulary and `textseq.json`, in `out`."""
    step = step_for(loaded, quantize)
    model = convert(loaded, quantize, step)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(model)
    (out / VOCAB_FILE).write_text(json.dumps(loaded.target.vocab.tokens, ensure_ascii=False) + "\n", encoding="utf-8")
    info = metadata(loaded, quantize, step)
    if loaded.target.model_file:
        loaded.target.vocab.save(out / loaded.target.model_file)
        info["sentencepiece_model"] = loaded.target.model_file
    (out / METADATA).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def is_litert_export(path: Path) -> bool:
    """Whether `path` holds a LiteRT export that textseq wrote."""
    return (path / METADATA).is_file() and ((path / MODEL_FILE).is_file() or (path / TRANSLATOR_FILE).is_file())
