"""SavedModel export: string in, string out, loadable with TensorFlow alone (no textseq at load time).

Tokenization (the run's vocabulary tables and string ops), truncation, padding, decoding and
detokenization all run inside the graph.

>>> export("runs/dates", "exports/dates")  # doctest: +SKIP
>>> tf.saved_model.load("exports/dates").signatures["translate"](text=tf.constant(["3rd of March 1998"]))  # doctest: +SKIP
{'text': <tf.Tensor: shape=(1,), dtype=string, numpy=array([b'1998-03-03'], dtype=object)>, 'score': ...}

Translation runs get the signatures `translate` (= `serving_default`): `text` [batch] -> `text`
[batch] and `score` [batch], greedy or beam search as the recipe's `export` section says; and
`attention`: `text` -> `text`, `source_tokens` [batch, source], `output_tokens` [batch, steps] and
`weights` [batch, steps, source].
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from textseq import __version__
from textseq.data.vocab import PAD
from textseq.decoding import decode
from textseq.errors import UserError
from textseq.inference import LanguageModel, load

METADATA = "textseq.json"  # in the export's assets/


def export(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Writes the run's SavedModel to `out_dir` and returns its path."""
    loaded = load(run_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out}: exists and is not empty; choose another directory or pass --overwrite")
        shutil.rmtree(out)
    if isinstance(loaded, LanguageModel):
        raise UserError(f"{run_dir}: exporting language-model runs is not built yet; translation runs export")
    archive = keras.export.ExportArchive()
    archive.track(loaded.model)
    for tokenizer in {id(loaded.source): loaded.source, id(loaded.target): loaded.target}.values():
        archive.track(tokenizer)
    for name, fn in translation_endpoints(loaded).items():
        archive.add_endpoint(name, fn, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.write_out(str(out), verbose=False)
    recipe = loaded.recipe
    metadata = {"textseq_version": __version__, "tensorflow_version": tf.__version__, "task": recipe.task,
                "source_vocabulary_size": loaded.source.vocab_size, "target_vocabulary_size": loaded.target.vocab_size,
                "decoding": loaded.options().describe(), "recipe": recipe.to_dict()}
    (out / "assets").mkdir(exist_ok=True)
    (out / "assets" / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return out


def translation_endpoints(translator) -> dict:
    model, source, target, recipe = translator.model, translator.source, translator.target, translator.recipe
    options = translator.options()

    def source_ids(text):
        ids = source.encode(text)[:, : recipe.data.max_source_length].to_tensor(PAD)
        return tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])  # at least one step

    def translate(text):
        tokens, scores, _ = decode(model, source_ids(text), options)
        return {"text": target.decode(tokens[:, 0]), "score": scores[:, 0]}

    def attention(text):
        ids = source_ids(text)
        tokens, _, weights = decode(model, ids, options)
        tokens = tokens[:, 0]
        return {"text": target.decode(tokens), "source_tokens": tf.gather(source.tokens, ids),
                "output_tokens": tf.gather(target.tokens, tokens), "weights": weights[:, 0]}

    return {"translate": translate, "serving_default": translate, "attention": attention}
