"""LiteRT (TensorFlow Lite) export of a translation run: what a phone runs to translate offline.

One `.tflite` file with these signatures:

- `encode_N`, one per source length N of `source_lengths` (8, 16, 32, 64, ... up to
  `data.max_source_length`): source ids `[1, N]` (0-padded) -> `memory_outputs`, `memory_keys` (the
  attention's projection of them, computed once), `memory_length` and the decoder's start
  `states` `[1, n, units]`; the app takes the shortest that holds its source;
- `step`: `token_id` `[hypotheses]`, their `states` and the memory repeated per hypothesis -> new
  `states`, each hypothesis' `top_k` next tokens (`top_ids`, `top_log_probs`) and its `attention`
  weights over the source;
- `forced_step`: the same with a `forced_id` per hypothesis -> its `log_prob` instead of the top
  tokens: the step of a forced prefix (an output that must start with given text).

Beam search runs in the app, between `step` calls: `textseq.on_device` is its reference (numpy
only), the same search as `textseq.decoding.beam_search`. In the graph it would be a WHILE loop
writing the growing outputs with DYNAMIC_UPDATE_SLICE, as the encoders' loops write theirs (Keras'
TensorList ops have no builtin kernels); a loop of `step` calls costs a few microseconds per token
in the app and leaves beam size, length penalty, early stopping, n-best lists and forced prefixes
to it.

The encoder's layers are loops over the signature's length (`looped_encoder`), so an encoder costs
its length whatever the source's: hence one per length, as batches are bucketed by length in
training.
Quantization is the language model's (`textseq.litert`): float16, dynamic range (int8 weights, the
embedding tables as `Int8Rows`) or int8 weights and activations calibrated on training sources.
Beside the model: the vocabularies (`*.vocab.json`, or the SentencePiece `*.model` files the app
tokenizes with) and `textseq.json`.

>>> export("runs/multi30k-de-en-spm", "exports/de-en-phone", format="litert", quantize="dynamic")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from textseq import __version__
from textseq.constants import BOS, EOS, PAD, RESERVED, UNK
from textseq.data.sources import load_pairs
from textseq.litert import (CONVERTER_NOISE, METADATA, TRANSLATOR_FILE as MODEL_FILE, by_layer, known_ids,
                            looped_encoder, native_lines_dropped, plain_model, stacked_states)

TOP_K = 10  # candidates per hypothesis and step: beam search keeps at most this many hypotheses
CALIBRATION_SOURCES = 64  # training sources whose encoding and greedy steps calibrate int8 activations


def source_lengths(longest: int) -> list[int]:
    """The encoders' lengths: powers of two from 8 below `longest`, then `longest`.

    >>> source_lengths(96)
    [8, 16, 32, 64, 96]
    """
    return [n for n in (8, 16, 32, 64, 128, 256, 512) if n < longest] + [longest]


class TranslatorSignatures(tf.Module):
    """The `encode_N` and `step` functions of a translation model.

    >>> signatures = TranslatorSignatures(model, source_lengths=[8, 16, 96])  # doctest: +SKIP
    >>> memory = signatures.encoders[8](tf.constant([[5, 6, 7, 0, 0, 0, 0, 0]]))  # doctest: +SKIP
    """

    def __init__(self, model, source_lengths: list[int], k: int = TOP_K, unrolled: bool = False):
        super().__init__(name="translator")
        self.model, self.source_lengths = model, source_lengths
        self.unrolled = unrolled  # the encoder's steps written out (`looped_encoder`)
        self.k = min(k, model.decoder.vocab_size)
        self.state_sizes = model.decoder.state_sizes()
        keys = model.decoder.attention.project_keys(tf.zeros([1, 1, model.encoder.units]))
        self.shapes = {"states": ([sum(map(len, self.state_sizes)), model.decoder.units], tf.float32),
                       "memory_outputs": ([None, model.encoder.units], tf.float32),
                       "memory_keys": ([None, int(keys.shape[-1])], tf.float32),
                       "memory_length": ([], tf.int32)}
        self.encoders = {length: tf.function(self._encode, input_signature=[
            tf.TensorSpec([1, length], tf.int32, name="source_ids")], autograph=False) for length in source_lengths}
        step_inputs = [tf.TensorSpec([None], tf.int32, name="token_id")] + [
            tf.TensorSpec([None, *shape], dtype, name=name) for name, (shape, dtype) in self.shapes.items()]
        self.step = tf.function(self._step, input_signature=step_inputs, autograph=False)
        forced_id = tf.TensorSpec([None], tf.int32, name="forced_id")
        self.forced_step = tf.function(self._forced_step, input_signature=[*step_inputs, forced_id], autograph=False)

    def functions(self) -> dict:
        """Each signature's name and function."""
        return {**{f"encode_{length}": function for length, function in self.encoders.items()}, "step": self.step,
                "forced_step": self.forced_step}

    def _encode(self, source_ids):
        ids = known_ids(source_ids, self.model.encoder.vocab_size)
        outputs, encoder_states = looped_encoder(self.model.encoder, ids, self.unrolled)
        states = self.model.start_states(encoder_states)
        return {"memory_outputs": outputs, "memory_keys": self.model.decoder.attention.project_keys(outputs),
                "memory_length": tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD), tf.int32), axis=1),
                "states": stacked_states(states)}

    def _step(self, token_id, states, memory_outputs, memory_keys, memory_length):
        log_probs, after = self._stepped(token_id, states, memory_outputs, memory_keys, memory_length)
        top = tf.math.top_k(log_probs, self.k)
        return {"top_ids": top.indices, "top_log_probs": top.values, **after}

    def _forced_step(self, token_id, states, memory_outputs, memory_keys, memory_length, forced_id):
        log_probs, after = self._stepped(token_id, states, memory_outputs, memory_keys, memory_length)
        forced = known_ids(forced_id, self.model.decoder.vocab_size)
        return {"log_prob": tf.gather(log_probs, forced, batch_dims=1), **after}

    def _stepped(self, token_id, states, memory_outputs, memory_keys, memory_length):
        """The step's log-probabilities `[hypotheses, vocab]`, and its new `states` and `attention`."""
        token_id = known_ids(token_id, self.model.decoder.vocab_size)
        layers = by_layer([states[:, i] for i in range(states.shape[1])], self.state_sizes)
        memory = {"outputs": memory_outputs, "projected_keys": memory_keys,
                  "mask": tf.range(tf.shape(memory_outputs)[1])[None, :] < memory_length[:, None]}
        logits, layers, weights = self.model.step(token_id, layers, memory)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32)), {"states": stacked_states(layers),
                                                                "attention": tf.cast(weights, tf.float32)}


def signatures_for(loaded, quantize: str = "none") -> TranslatorSignatures:
    """The signatures of a loaded `Translator`, quantized as `plain_model` says."""
    return TranslatorSignatures(plain_model(loaded, quantize), source_lengths(loaded.recipe.data.max_source_length),
                                max(TOP_K, loaded.options().beam_size), unrolled=quantize == "int8")


def calibration(signatures: TranslatorSignatures, loaded, sources: int = CALIBRATION_SOURCES, seed: int = 0):
    """What int8 calibrates on: `(signature, inputs)` of the encoding and greedy steps of seeded training
    sources (each step also forced to the token it chose)."""
    pairs = load_pairs(loaded.recipe.data, "train")
    chosen = [source for source, _ in random.Random(seed).sample(pairs, min(sources, len(pairs)))]
    for ids in loaded.source.encode(tf.constant(chosen)).to_list():
        ids = ids[:signatures.source_lengths[-1]]
        length = next(n for n in signatures.source_lengths if n >= len(ids))
        padded = np.zeros((1, length), np.int32)
        padded[0, :len(ids)] = ids
        yield f"encode_{length}", {"source_ids": padded}
        memory = {name: value.numpy() for name, value in signatures.encoders[length](tf.constant(padded)).items()}
        token = np.array([BOS], np.int32)
        for _ in range(loaded.options().max_length):
            inputs = {"token_id": token, **memory}
            yield "step", inputs
            out = signatures.step(**{name: tf.constant(value) for name, value in inputs.items()})
            token = out["top_ids"].numpy()[:, 0].astype(np.int32)
            yield "forced_step", {**inputs, "forced_id": token}
            memory["states"] = out["states"].numpy()
            if token[0] == EOS:
                break


def convert(loaded, quantize: str, signatures: TranslatorSignatures) -> bytes:
    """The `.tflite` bytes of the signatures, quantized as asked.

    Each function is frozen (weights as constants, as the language model's step is) and saved as a
    signature of a SavedModel that holds nothing else: the converter takes several signatures only
    from a SavedModel, and saving the Keras model itself would trace its layers again.
    """
    module, functions = tf.Module(), signatures.functions()
    for name, function in functions.items():
        concrete = function.get_concrete_function()
        frozen = convert_variables_to_constants_v2(concrete)
        outputs = sorted(concrete.structured_outputs)  # the frozen function's outputs: a flat list in this order
        setattr(module, name, tf.function(named_outputs(frozen, outputs), input_signature=function.input_signature))
    with tempfile.TemporaryDirectory() as saved:
        tf.saved_model.save(module, saved, signatures={name: getattr(module, name).get_concrete_function()
                                                       for name in functions})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(functions))
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = lambda: calibration(signatures, loaded)
        with warnings.catch_warnings(), native_lines_dropped(CONVERTER_NOISE):
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return converter.convert()


def named_outputs(frozen, names: list[str]):
    """A function of `frozen`'s inputs that returns its flat outputs as a dict under `names`."""
    def call(*inputs):
        return dict(zip(names, frozen(*inputs)))
    return call


def side_files(loaded, out: Path) -> dict:
    """Writes each side's vocabulary (or SentencePiece model) and returns how the app reads each side."""
    sides = {}
    for side, tokenizer in (("source", loaded.source), ("target", loaded.target)):
        prefix = "" if loaded.recipe.vocab.shared else f"{side}."
        info = {**tokenizer.describe(), "unknown_id": UNK, "end_id": EOS, "control_ids": list(range(len(RESERVED)))}
        if tokenizer.model_file:
            tokenizer.vocab.save(out / f"{prefix}{tokenizer.model_file}")
            info["sentencepiece_model"] = f"{prefix}{tokenizer.model_file}"
        else:
            (out / f"{prefix}vocab.json").write_text(json.dumps(tokenizer.vocab.tokens, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
            info["vocabulary"] = f"{prefix}vocab.json"
        sides[side] = info
    return sides


def write_litert_translator(loaded, out: Path, quantize: str) -> None:
    """The `.tflite` translator of a `Translator`, its vocabularies and `textseq.json`, in `out`."""
    signatures = signatures_for(loaded, quantize)
    model = convert(loaded, quantize, signatures)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(model)
    options = loaded.options()
    step_inputs = {"token_id": {"shape": [-1], "dtype": "int32"},
                   **{name: {"shape": [-1, *shape], "dtype": dtype.name}
                      for name, (shape, dtype) in signatures.shapes.items()}}
    info = {
        "textseq_version": __version__, "tensorflow_version": tf.__version__, "format": "litert",
        "task": "translate", "model": MODEL_FILE, "signatures": list(signatures.functions()), "quantize": quantize,
        "source_lengths": signatures.source_lengths, "top_k": signatures.k, "pad_id": PAD, "start_id": BOS,
        "decoding": {"beam_size": options.beam_size, "alpha": options.alpha, "max_length": options.max_length},
        **side_files(loaded, out),
        "inputs": {**{f"encode_{n}": {"source_ids": {"shape": [1, n], "dtype": "int32"}}
                      for n in signatures.source_lengths},
                   "step": step_inputs,
                   "forced_step": {**step_inputs, "forced_id": {"shape": [-1], "dtype": "int32"}}},
        "usage": "textseq/on_device.py is the app loop: tokenize the source, run the shortest encode_N that holds "
                 "it once, then step with the "
                 "last token of every hypothesis (start_id first) and keep the best beam_size of their top_ids by "
                 "total log-probability over ((5 + length) / 6) ** alpha, until each has produced end_id; "
                 "forced_step gives the log_prob of a given forced_id instead, for an output that must start "
                 "with given text",
        "recipe": loaded.recipe.to_dict(),
    }
    (out / METADATA).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
