"""Readers that turn `recipe.data` into lists of raw (source, target) string pairs, per split.

- `dates`: generated, offline (`textseq/data/synthetic.py`).
- `parallel`: two aligned text files per shard, `PREFIX.SRC_LANG` and `PREFIX.TGT_LANG` (or `.gz`),
  line i of one translating line i of the other, the layout of Multi30k, WMT and fairseq.
  Relative prefixes are under `data.dir` (default: the corpus cache of `textseq data fetch`).
- `tsv`: files of lines `SOURCE<TAB>TARGET` (the format of Tatoeba/Anki sentence pairs and of many
  exported corpora); a line with another number of columns is an error that names the file and line.

A split of either may be a prefix or file, a glob, or a list of them (`split_shards`). These
readers hold a split in memory (train.epochs); `textseq.data.streams` reads the same shards as a
tf.data stream (train.steps).
- `tfds`: a TensorFlow Datasets dataset through `tfds.load` (`data.dir` is its data_dir): pairs
  of the `source_language` / `target_language` features, or, for a language model, the texts of
  `text_field` joined by newlines.
- `text` (language models): one plain text file per split, or one file cut by `data.split` (the
  first share of its characters trains, the rest validates and tests, as char-rnn and nanoGPT cut
  tiny Shakespeare).

>>> pairs = load_pairs(DataConfig(source="dates", train_examples=3), "train")
>>> len(pairs), pairs[0][1]  # doctest: +SKIP
(3, '2046-09-13')
"""

from __future__ import annotations

import glob
import gzip
import logging
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

from textseq.data.corpora import CORPORA, data_dir, fetch_hint
from textseq.data.synthetic import dates_examples
from textseq.data.textfiles import decode_line, read_text, report_not_utf8
from textseq.errors import UserError
from textseq.recipe import Corpus, DataConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def load_pairs(config: DataConfig, split: str) -> list[tuple[str, str]]:
    """The raw (source, target) pairs of one split, in their stored order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if config.source in ("parallel", "tsv"):
        return file_pairs(config, split)
    if config.source == "tfds":
        return [(ex[config.source_language], ex[config.target_language])
                for ex in tfds_examples(config, split, (config.source_language, config.target_language))]
    count = {"train": config.train_examples, "validation": config.validation_examples,
             "test": config.test_examples}[split]
    return dates_examples(split, count, config.seed, validation_days=config.validation_examples,
                          test_days=config.test_examples)


def resolve(config: DataConfig, name: str) -> Path:
    """A recipe path: absolute, or relative to `data.dir` (default: the corpus cache)."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    return Path(config.dir).expanduser() / path if config.dir else data_dir() / path


def missing_file(key: str, path: Path) -> UserError:
    corpus = next((name for name in CORPORA if name in path.parts), None)
    hint = fetch_hint(corpus) if corpus else "check the path, or set data.dir to the directory that holds it"
    return UserError(f"{key}: {path}: no such file; {hint}")


def load_text(config: DataConfig, split: str) -> str:
    """The text of one split of a `text` source (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if config.source == "tfds":
        return "\n".join(ex[config.text_field] for ex in tfds_examples(config, split, (config.text_field,)))
    name = getattr(config, split)
    if split != "train" and not name and config.split:
        name, split, held_out = config.train, "train", True
    elif split == "test" and not name:
        name, split, held_out = config.validation, "validation", False
    else:
        held_out = False
    if not name:
        raise UserError(f"data.{split} is not set; there is no {split} text to read")
    path = resolve(config, name)
    try:
        text = read_text(path, f"data.{split}", config.encoding_errors)
    except FileNotFoundError:
        raise missing_file(f"data.{split}", path) from None
    if config.split and not config.validation:
        cut = int(len(text) * config.split)
        text = text[cut:] if held_out else text[:cut] if split == "train" else text
    if not text.strip():
        raise UserError(f"data.{split}: {path} has no text{' in this share of data.split' if config.split else ''}")
    return text


GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Shard:
    """The files of one piece of a split: (source, target) of a parallel corpus, or (file,) of a TSV one."""

    files: tuple[Path, ...]

    def __str__(self) -> str:
        return " + ".join(str(path) for path in self.files)


def split_names(config: DataConfig, split: str) -> tuple[str, ...]:
    """The paths or globs the recipe gives for a split (a corpus list's, in its order)."""
    value = getattr(config, split)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(name for item in value for name in (item.files if isinstance(item, Corpus) else (item,)))


def split_shards(config: DataConfig, split: str, names: tuple[str, ...] | None = None) -> list[Shard]:
    """The shards of a split of a parallel or TSV corpus, in the recipe's order (a glob's matches sorted).

    A prefix (parallel) or file (TSV) may be a glob; a parallel prefix names `PREFIX.SRC_LANG` and
    `PREFIX.TGT_LANG`, each plain or `.gz`. A glob that matches nothing, or a source file without its
    target file, is an error that names them.
    """
    key = f"data.{split}"
    shards: list[Shard] = []
    for name in names if names is not None else split_names(config, split):
        pattern = resolve(config, name)
        if config.source == "parallel":
            found = parallel_shards(config, pattern, key)
        elif GLOB_CHARACTERS & set(str(pattern)):
            found = [Shard((path,)) for path in sorted(Path(p) for p in glob.glob(str(pattern)))]
            if not found:
                raise UserError(f"{key}: {pattern} matches no file; check the pattern (relative paths are under "
                                f"data.dir: {data_root(config)})")
        else:
            found = [Shard((pattern,))]
        shards += [shard for shard in found if shard not in shards]
    for shard in shards:
        for path in shard.files:
            check_file(path, key)
    return shards


def parallel_shards(config: DataConfig, prefix: Path, key: str) -> list[Shard]:
    source, target = config.source_language, config.target_language
    if not GLOB_CHARACTERS & set(str(prefix)):
        return [Shard(tuple(language_file(prefix, language, key) for language in (source, target)))]
    matches = sorted({Path(p) for pattern in (f"{prefix}.{source}", f"{prefix}.{source}.gz")
                      for p in glob.glob(pattern)})
    if not matches:
        raise UserError(f"{key}: {prefix}.{source} (or .gz) matches no file; check the pattern (relative paths are "
                        f"under data.dir: {data_root(config)})")
    shards = []
    for path in matches:
        stem = path.name.removesuffix(".gz").removesuffix(f".{source}")
        shards.append(Shard((path, language_file(path.with_name(stem), target, key))))
    return shards


def language_file(prefix: Path, language: str, key: str) -> Path:
    """`PREFIX.LANGUAGE`, or `PREFIX.LANGUAGE.gz` when only that exists."""
    plain = prefix.with_name(f"{prefix.name}.{language}")
    packed = plain.with_name(plain.name + ".gz")
    if plain.exists() or not packed.exists():
        if not plain.exists():
            raise missing_file(key, plain.with_name(f"{plain.name} (or {plain.name}.gz)"))
        return plain
    return packed


def check_file(path: Path, key: str) -> None:
    """A shard must be a readable file; a `.gz` one must be gzip."""
    if not path.exists():
        raise missing_file(key, path)
    if path.is_dir():
        raise UserError(f"{key}: {path} is a directory; give the path of a text file (or a glob)")
    if path.suffix == ".gz" and not is_gzip(path):
        raise UserError(f"{key}: {path} is not gzip (its name ends in .gz, its bytes do not start as gzip's); "
                        "compress it with gzip, or drop .gz from its name if it is plain text")


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def data_root(config: DataConfig) -> Path:
    return Path(config.dir).expanduser() if config.dir else data_dir()


# Written once, filled by the Python reader below and (as TensorFlow strings) by the tf.data stream.
MISALIGNED = ("{key}: {short} ends before line {line} but {long} has a line {line}; line i of one must translate "
              "line i of the other")
BAD_COLUMNS = ("{key}: {file}, line {line}: {count} tab-separated column(s){shown}; every line must be "
               "SOURCE<TAB>TARGET (a tab inside a text must be replaced by a space)")
EMPTY_SIDES = "%s: skipped %d line pair(s) with an empty side (the first at line %d of %s)"


def open_shard_file(path: Path):
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def shard_pairs(shard: Shard, config: DataConfig, key: str) -> Iterator[tuple[str, str]]:
    """Every (source, target) pair of one parallel or TSV shard, in order, read a line at a time.

    The one reader of both formats in Python (a split held in memory, the sample a streamed run
    starts from; `textseq.data.streams` checks the same rules in the graph, with the same messages):
    lines that are not UTF-8 as data.encoding_errors says, parallel files of equal length, TSV lines
    of exactly two columns. Blank lines are left out; skipped lines and pairs with an empty side are
    reported once, after the shard.
    """
    opened = [open_shard_file(path) for path in shard.files]
    bad: dict[Path, list[int]] = {path: [] for path in shard.files}
    empty: list[int] = []
    kept = 0
    try:
        for number, raws in enumerate(zip_longest(*opened), 1):
            if None in raws:
                short, long_ = shard.files if raws[0] is None else shard.files[::-1]
                raise UserError(MISALIGNED.format(key=key, short=short, long=long_, line=number))
            texts = []
            for path, raw in zip(shard.files, raws):
                text, not_utf8 = decode_line(raw, path, number, key, config.encoding_errors)
                bad[path] += [number] if not_utf8 else []
                texts.append(text)
            if None in texts or not any(text.strip() for text in texts):
                continue  # skipped (not UTF-8), or blank
            pair = texts if len(texts) == 2 else tsv_columns(texts[0].strip(), shard.files[0], number, key)
            source, target = pair[0].strip(), pair[1].strip()
            if source and target:
                kept += 1
                yield source, target
            else:
                empty.append(number)
    except (OSError, EOFError) as error:
        raise UserError(f"{key}: {shard}: cannot be read ({error})") from None
    finally:
        for f in opened:
            f.close()
    if not kept and not empty and not any(bad.values()):
        raise UserError(f"{key}: {shard.files[0]} is empty; it needs one example per line")
    for path, numbers in bad.items():
        report_not_utf8(key, path, numbers, config.encoding_errors)
    if empty:
        log.warning(EMPTY_SIDES, key, len(empty), empty[0], shard.files[0])


def tsv_columns(line: str, path: Path, number: int, key: str) -> list[str]:
    columns = line.split("\t")
    if len(columns) != 2:
        shown = f" in {line if len(line) <= 60 else line[:57] + '...'!r}"
        raise UserError(BAD_COLUMNS.format(key=key, file=path, line=number, count=len(columns), shown=shown))
    return columns


def file_pairs(config: DataConfig, split: str) -> list[tuple[str, str]]:
    """The (source, target) pairs of one split of a parallel or TSV corpus, every shard in order."""
    key = f"data.{split}"
    pairs = [pair for shard in split_shards(config, split) for pair in shard_pairs(shard, config, key)]
    if not pairs:
        raise UserError(f"{key}: {', '.join(split_names(config, split))} has no (source, target) pairs")
    return pairs


def tfds_examples(config: DataConfig, split: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """The string `fields` of every example of one split of `data.dataset`, via `tfds.load`."""
    import tensorflow_datasets as tfds

    split_name = getattr(config, split) or split
    where = f"data.dataset: {config.dataset} (split {split_name})"
    data_dir = config.dir or tfds.core.constants.DATA_DIR
    try:
        try:
            dataset = tfds.load(config.dataset, split=split_name, data_dir=config.dir, download=False)
        except AssertionError:  # not prepared in data_dir: download it, if there is a network
            if not network_reachable():
                raise UserError(f"{where}: not prepared in {data_dir}, and no network to download it; prepare "
                                f"it where there is one (`tfds build {config.dataset} --data_dir DIR`) and set "
                                "data.dir to DIR") from None
            dataset = tfds.load(config.dataset, split=split_name, data_dir=config.dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"data.dataset: no TensorFlow Datasets dataset named {config.dataset!r}; "
                        "`tfds build --help` and the TFDS catalog list them") from None
    except ValueError as error:  # an unknown split, mostly
        raise UserError(f"{where}: {str(error).splitlines()[0]}") from None
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - download and preparation raise many kinds
        raise UserError(f"{where}: not prepared in {data_dir} and could not be downloaded "
                        f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); prepare it where there is "
                        f"a network (`tfds build {config.dataset} --data_dir DIR`) and set data.dir to DIR") from None
    missing = [field for field in fields if field not in dataset.element_spec]
    if missing:
        raise UserError(f"{where}: no feature {missing[0]!r}; it has {', '.join(sorted(dataset.element_spec))}")
    return [{field: example[field].decode("utf-8") for field in fields} for example in tfds.as_numpy(dataset)]


def network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """Whether TFDS' download host answers; offline, TFDS itself retries for minutes before failing."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
