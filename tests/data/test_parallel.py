"""Parallel corpora from files: the real Multi30k mirror, and every way such files go wrong."""

import gzip
from pathlib import Path

import pytest

from textseq.data.sources import load_pairs
from textseq.data.textfiles import read_lines
from textseq.errors import UserError
from textseq.recipe import DataConfig

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def parallel(tmp_path, **keys) -> DataConfig:
    return DataConfig(source="parallel", dir=str(tmp_path), train="corpus/train", validation="corpus/val",
                      test="corpus/test", source_language="de", target_language="en", **keys)


def write(path: Path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


@pytest.mark.skipif(not (SHARED / "multi30k").is_dir(), reason=f"no Multi30k mirror at {SHARED}")
def test_multi30k_from_the_local_mirror():
    config = DataConfig(source="parallel", dir=str(SHARED), train="multi30k/tok/train.lc.norm.tok",
                        validation="multi30k/tok/val.lc.norm.tok", test="multi30k/raw/test_2016_flickr",
                        source_language="de", target_language="en")
    assert len(load_pairs(config, "train")) == 29_000
    assert len(load_pairs(config, "validation")) == 1_014
    test = load_pairs(config, "test")  # raw/*.gz, read directly
    assert len(test) == 1_000
    assert test[0] == ("Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
                       "A man in an orange hat starring at something.")


def test_crlf_bom_gz_and_blank_pairs(tmp_path, caplog):
    write(tmp_path / "corpus/train.de", "\ufeffein hund\r\n\r\nzwei katzen\r\n")
    with gzip.open(tmp_path / "corpus/train.en.gz", "wt", encoding="utf-8") as f:
        f.write("a dog\nsomething\ntwo cats\n")
    assert load_pairs(parallel(tmp_path), "train") == [("ein hund", "a dog"), ("zwei katzen", "two cats")]
    assert "data.train: skipped 1 line pair(s) with an empty side (the first at line 2" in caplog.text


def test_line_count_mismatch_names_both_files(tmp_path):
    write(tmp_path / "corpus/val.de", "a\nb\nc\n")
    write(tmp_path / "corpus/val.en", "a\nb\n")
    with pytest.raises(UserError) as error:
        load_pairs(parallel(tmp_path), "validation")
    assert str(error.value) == (f"data.validation: {tmp_path}/corpus/val.en ends before line 3 but "
                                f"{tmp_path}/corpus/val.de has a line 3; line i of one must translate line i of the other")


def test_non_utf8_names_file_line_and_byte_offset(tmp_path):
    write(tmp_path / "corpus/test.de", b"gut\nsch\xf6n\n")
    write(tmp_path / "corpus/test.en", "good\nnice\n")
    with pytest.raises(UserError) as error:
        load_pairs(parallel(tmp_path), "test")
    assert str(error.value) == (f"data.test: {tmp_path}/corpus/test.de, line 2: byte 0xf6 (column 3) "
                                "is not UTF-8; convert the file to UTF-8 (e.g. with iconv), or set data.encoding_errors "
                                "to replace or skip")


def test_missing_empty_and_directory_files(tmp_path):
    with pytest.raises(UserError, match=r"data.train: .*corpus/train.de \(or train.de.gz\): no such file; check the "
                                        "path, or set data.dir"):
        load_pairs(parallel(tmp_path), "train")
    missing_corpus = DataConfig(source="parallel", dir=str(tmp_path), train="multi30k/tok/train.lc.norm.tok",
                                validation="v", test="t", source_language="de", target_language="en")
    with pytest.raises(UserError, match="run `textseq data fetch multi30k`.* --from DIR"):
        load_pairs(missing_corpus, "train")
    write(tmp_path / "empty.txt", "\n\n")
    with pytest.raises(UserError, match="data.train: .*empty.txt is empty; it needs one example per line"):
        read_lines(tmp_path / "empty.txt", "data.train")
    with pytest.raises(UserError, match="is a directory; give the path of a text file"):
        read_lines(tmp_path, "data.train")


def test_over_long_lines_are_cut_counted_and_reported_once(tmp_path, caplog):
    from textseq.data.tasks import TaskData
    from textseq.recipe import recipe_from_dict

    write(tmp_path / "corpus/train.de", "ein hund\n" + "sehr " * 30 + "lang\nzwei katzen\n")
    write(tmp_path / "corpus/train.en", "a dog\nvery long\ntwo cats\n")
    for split in ("val", "test"):
        write(tmp_path / f"corpus/{split}.de", "ein hund\n")
        write(tmp_path / f"corpus/{split}.en", "a dog\n")
    recipe = recipe_from_dict({"data": {**vars(parallel(tmp_path)), "max_source_length": 8}})
    data = TaskData.load(recipe)
    assert data.train[0].row_lengths().numpy().tolist() == [2, 8, 2]
    warnings = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert warnings == ["data.train: 1 of 3 sources are longer than data.max_source_length (8 tokens) and were "
                        "cut to it; the longest is example 2, 31 tokens"]


def test_non_utf8_lines_can_be_replaced_or_skipped_keeping_pairs_aligned(tmp_path, caplog):
    write(tmp_path / "corpus/test.de", b"gut\nsch\xf6n\nklar\n")
    write(tmp_path / "corpus/test.en", "good\nnice\nclear\n")
    replaced = load_pairs(parallel(tmp_path, encoding_errors="replace"), "test")
    assert replaced == [("gut", "good"), ("sch\ufffdn", "nice"), ("klar", "clear")]
    assert "1 line(s) are not UTF-8 (the first is line 2); data.encoding_errors=replace replaced" in caplog.text
    assert load_pairs(parallel(tmp_path, encoding_errors="skip"), "test") == [("gut", "good"), ("klar", "clear")]
