"""SavedModel export: string in, string out, loadable with TensorFlow alone (no textseq at load time).

Tokenization (the run's vocabulary tables and string ops), truncation, padding, decoding and
detokenization all run inside the graph.

>>> export("runs/dates", "exports/dates")  # doctest: +SKIP
>>> tf.saved_model.load("exports/dates").signatures["translate"](text=tf.constant(["3rd of March 1998"]))  # doctest: +SKIP
{'text': <tf.Tensor: shape=(1,), dtype=string, numpy=array([b'1998-03-03'], dtype=object)>, 'score': ...}

Language-model runs get `next_words`: `text` [batch], `k` (scalar) -> `words` (string [batch, k])
and `probabilities` (float32 [batch, k]); `serving_default`: the same with k = 5 and `text` alone;
`generate`: `text`, `max_tokens` (scalar) -> `text` [batch], the greedy continuation. Both read the
text window by window, as training reads its stream (`textseq.windows.walk_windows`), exactly as
`LanguageModel` does.

Translation runs get the signatures `translate` (= `serving_default`): `text` [batch] -> `text`
[batch] and `score` [batch], greedy or beam search as the recipe's `decode` section says; and
`translate_prefix`: `text`, `prefix` [batch] -> the same, each output starting with its prefix as
given (forced decoding); and `attention`: `text` -> `text`, `source_tokens` [batch, source],
`output_tokens` [batch, steps] and `weights` [batch, steps, source].
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from pathlib import Path

import tensorflow as tf

from textseq import __version__
from textseq.constants import EXPORT_FORMATS, QUANTIZATIONS, RESERVED
from textseq.decoding import decode
from textseq.errors import UserError
from textseq.inference import LanguageModel, Translator, load, next_suggestions
from textseq.translating import prefix_ids, source_ids, with_prefix
from textseq import files
from textseq.windows import walk_windows

METADATA = "textseq.json"  # in the export's assets/
log = logging.getLogger(__name__)

MAX_GENERATED_TOKENS = 10_000  # what one `generate` call may ask for, as `textseq generate --max-tokens`


def export(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False, format: str = "saved_model",
           quantize: str = "none") -> Path:
    """Writes the run's SavedModel (or, `format="litert"`, a language model's `.tflite` next-word step,
    see `textseq.litert`, or a translation run's encoder and decoder step, see
    `textseq.litert_translator`) to `out_dir` and returns its path.

    The export is written beside `out_dir` and swapped in when complete (`swap_in`), so a failure
    leaves what was there before. `overwrite` replaces an earlier textseq export's own files, never
    anything else: files of the user's inside it are carried over into the new one.
    """
    from textseq.litert import write_litert
    from textseq.litert_translator import write_litert_translator

    if format not in EXPORT_FORMATS:
        raise UserError(f"--format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and format != "litert":
        raise UserError(f"--quantize {quantize} applies to --format litert; a SavedModel keeps the run's float weights")
    out = Path(out_dir)
    recover_swap(out)
    check_export_target(Path(run_dir), out, overwrite)
    loaded = load(run_dir)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if format == "litert":
            (write_litert if isinstance(loaded, LanguageModel) else write_litert_translator)(loaded, staging, quantize)
        else:
            write_saved_model(loaded, staging)
        record_files(staging, {"weights": loaded.weights})
        if out.exists():
            carry_user_files(out, staging)
        swap_in(staging, out)
    except (OSError, tf.errors.OpError) as error:  # TensorFlow's file system raises its own errors
        reason = getattr(error, "strerror", None) or str(getattr(error, "message", error)).splitlines()[0][:200]
        raise UserError(f"{out}: cannot write the export ({reason}); choose a directory you can write to, with room "
                        "for the model") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def metadata_file(path: Path) -> Path:
    """`textseq.json` of an export: in `assets/` of a SavedModel, beside a LiteRT model."""
    return path / "assets" / METADATA if (path / "saved_model.pb").is_file() else path / METADATA


def record_files(path: Path, extra: dict) -> None:
    """Adds `extra` and the list of every file of the export to its metadata: what `--overwrite` may
    replace later (anything else there is the user's)."""
    metadata = metadata_file(path)
    info = json.loads(metadata.read_text(encoding="utf-8"))
    info.update(extra, files=sorted({*export_files(path), metadata.relative_to(path).as_posix()}))
    metadata.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_files(path: Path) -> list[str]:
    """Every file (and link) under `path`, and every empty folder, relative and '/'-separated."""
    return [entry.relative_to(path).as_posix() for entry in path.rglob("*")
            if entry.is_symlink() or not entry.is_dir() or not any(entry.iterdir())]


# The files of an export written before its metadata listed them: everything under these names.
OLD_LAYOUT = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "next_word.tflite", "vocab.json", METADATA,
              "spm.model")


def own_files(path: Path) -> set[str]:
    """The files an earlier textseq export wrote in `path` (relative, '/'-separated)."""
    try:
        listed = json.loads(metadata_file(path).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError):
        listed = None
    if isinstance(listed, list):
        return set(listed)
    return {name for name in export_files(path) if name.split("/")[0] in OLD_LAYOUT}


def carry_user_files(out: Path, staging: Path) -> None:
    """Copies the files in `out` that its earlier export did not write into the new export in `staging`
    (copies: until the swap, `out` keeps the originals)."""
    ours = own_files(out)
    for name in sorted(set(export_files(out)) - ours):
        target = staging / name
        if target.exists():
            raise UserError(f"{out / name}: is not part of the earlier export, and the new export writes a file of "
                            "that name; move your file out of the export directory, then export again. Nothing "
                            "was changed")
        target.parent.mkdir(parents=True, exist_ok=True)
        if (out / name).is_symlink():
            os.symlink(os.readlink(out / name), target)
        elif (out / name).is_dir():
            target.mkdir()
        else:
            shutil.copy2(out / name, target)
        log.info("kept %s (not written by textseq) in the new export", name)


def swap_in(staging: Path, out: Path) -> None:
    """Puts the complete export in `staging` at `out`: the earlier one is moved aside first, then
    deleted. A process killed between the renames leaves `out` missing and both beside it, hidden;
    the next export to `out` puts back whichever is whole (`recover_swap`)."""
    if out.exists():
        previous = out.parent / f".{out.name}.previous-{os.getpid()}"
        files.replace(out, previous)
        files.replace(staging, out)
        shutil.rmtree(previous)
    else:
        files.replace(staging, out)


def recover_swap(out: Path) -> None:
    """Tidies what an export killed while writing `out` left beside it (see `swap_in`): the earlier
    export is put back when `out` is missing, or deleted once the new one is in place, and staged
    partial exports of dead processes are deleted. Says what it did."""
    if not out.parent.is_dir():
        return
    for previous in sorted(out.parent.glob(f".{glob.escape(out.name)}.previous-*")):
        if is_running(previous.name.rpartition("-")[2]):
            continue
        if out.exists():
            shutil.rmtree(previous)
            log.warning("warning: %s: deleted %s, the earlier export that an interrupted export had moved aside (the "
                        "new export was already in place)", out, previous.name)
        else:
            files.replace(previous, out)
            log.warning("warning: %s: put back the earlier export that an interrupted export had moved aside (%s)",
                        out, previous.name)
    for partial in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial-*")):
        if not is_running(partial.name.rpartition("-")[2]):
            shutil.rmtree(partial)
            log.warning("warning: %s: deleted %s, what an interrupted export had written", out, partial.name)


def is_running(pid: str) -> bool:
    """Whether process `pid` (a number, as in a staging folder's name) still runs here."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_export(path: Path) -> bool:
    """Whether `path` holds a SavedModel or a LiteRT model that textseq exported."""
    from textseq.litert import is_litert_export

    return ((path / "saved_model.pb").is_file() and (path / "assets" / METADATA).is_file()) or is_litert_export(path)


def check_export_target(run_dir: Path, out: Path, overwrite: bool) -> None:
    """Refuses an OUT that would put the run or anything else than an earlier export at risk."""
    run, target = run_dir.resolve(), out.resolve()
    if target == run or run in target.parents:
        raise UserError(f"{out}: is inside the run directory {run_dir}; export to a directory of its own, "
                        f"e.g. exports/{run.name}")
    if target in run.parents:
        raise UserError(f"{out}: holds the run directory {run_dir}; export to a directory of its own, "
                        f"e.g. exports/{run.name}")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another export directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out}: exists and is not empty; choose another directory, or pass --overwrite to "
                            "replace an earlier export there")
        if not is_export(out):
            raise UserError(f"{out}: is not a textseq export (no saved_model.pb and assets/{METADATA}, nor a "
                            f"next_word.tflite or translator.tflite and {METADATA}); "
                            "--overwrite replaces only an earlier export, and nothing was deleted. Choose another "
                            "directory")


def write_saved_model(loaded: LanguageModel | Translator, out: Path) -> None:
    """The SavedModel of a loaded run, with its signatures and `assets/textseq.json`, in `out`."""
    endpoints = language_model_endpoints(loaded) if isinstance(loaded, LanguageModel) else translation_endpoints(loaded)
    root = tf.Module()
    # The tokenizers bring their tables and SentencePiece models; the weights are the model's
    # variables themselves (tracking the Keras model would save each weight a second time).
    root.tokenizers = list({id(loaded.source): loaded.source, id(loaded.target): loaded.target}.values())
    root.weights = [weight.value for weight in loaded.model.weights]
    functions = {}
    for name, (fn, signature) in endpoints.items():
        if fn not in functions:
            functions[fn] = tf.function(fn, input_signature=signature, autograph=False)
        setattr(root, name, functions[fn])
    # Each endpoint is traced once, by the save itself (a function traced before it would be traced
    # again under the save's variable policy). Serving needs no gradients: the speed path's custom
    # gradients are left out of the graph.
    tf.saved_model.save(root, str(out), signatures={name: getattr(root, name) for name in endpoints},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    recipe = loaded.recipe
    metadata = {"textseq_version": __version__, "tensorflow_version": tf.__version__, "task": recipe.task,
                "source_vocabulary_size": loaded.source.vocab_size, "target_vocabulary_size": loaded.target.vocab_size,
                "recipe": recipe.to_dict(), "signatures": sorted(endpoints)}
    if isinstance(loaded, Translator):
        metadata["decoding"] = loaded.options().describe()
    (out / "assets").mkdir(exist_ok=True)
    if loaded.target.model_file:
        # The graph holds the models too; the files let a client or a person inspect the vocabulary.
        metadata["sentencepiece_models"] = {}
        for side, tokenizer in {"source": loaded.source, "target": loaded.target}.items():
            name = tokenizer.model_file if recipe.vocab.shared else f"{side}.{tokenizer.model_file}"
            tokenizer.vocab.save(out / "assets" / name)
            metadata["sentencepiece_models"][side] = f"assets/{name}"
    if loaded.target.requires:
        metadata["requires"] = sorted({*loaded.source.requires, *loaded.target.requires})
    (out / "assets" / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def translation_endpoints(translator) -> dict:
    model, source, target = translator.model, translator.source, translator.target
    max_source_length, options = translator.recipe.data.max_source_length, translator.options()

    def translate(text):
        tokens, scores, _ = decode(model, source_ids(source, text, max_source_length), options)
        return {"text": target.decode(tokens[:, 0]), "score": scores[:, 0]}

    def translate_prefix(text, prefix):
        forced = prefix_ids(target, prefix, options.max_length)
        tokens, scores, _ = decode(model, source_ids(source, text, max_source_length), options, forced)
        return {"text": with_prefix(target.decode(tokens[:, 0]), prefix, forced, target), "score": scores[:, 0]}

    def attention(text):
        ids = source_ids(source, text, max_source_length)
        tokens, _, weights = decode(model, ids, options)
        tokens = tokens[:, 0]
        return {"text": target.decode(tokens), "source_tokens": tf.gather(source.tokens, ids),
                "output_tokens": tf.gather(target.tokens, tokens), "weights": weights[:, 0]}

    text = [tf.TensorSpec([None], tf.string, name="text")]
    return {"translate": (translate, text), "serving_default": (translate, text), "attention": (attention, text),
            "translate_prefix": (translate_prefix, [*text, tf.TensorSpec([None], tf.string, name="prefix")])}


def language_model_endpoints(lm: LanguageModel, default_k: int = 5) -> dict:
    model, tokenizer, data = lm.model, lm.target, lm.recipe.data

    def next_words(text, k):
        with tf.control_dependencies([tf.debugging.assert_positive(k, message="next_words: k must be at least 1")]):
            k = tf.minimum(k, tokenizer.vocab_size - len(RESERVED))
        probabilities, words = next_suggestions(model, data, tokenizer, tokenizer.encode(text), k)
        return {"words": words, "probabilities": probabilities}

    def generate(text, max_tokens):
        with tf.control_dependencies([tf.debugging.assert_less_equal(
                max_tokens, MAX_GENERATED_TOKENS, message=f"generate: max_tokens must be at most {MAX_GENERATED_TOKENS}")]):
            max_tokens = tf.identity(max_tokens)
        ids = tokenizer.encode(text)
        _, produced = walk_windows(model, ids.to_tensor(0), tf.cast(ids.row_lengths(), tf.int32), data.context,
                           data.continuation, data.carry_state, tf.maximum(max_tokens, 0))
        return {"text": tokenizer.join_lines(produced)}

    text = tf.TensorSpec([None], tf.string, name="text")
    return {
        "next_words": (next_words, [text, tf.TensorSpec([], tf.int32, name="k")]),
        "serving_default": (lambda text: next_words(text, tf.constant(default_k)), [text]),
        "generate": (generate, [text, tf.TensorSpec([], tf.int32, name="max_tokens")]),
    }
