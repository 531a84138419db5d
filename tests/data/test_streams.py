"""Streamed corpora: shards found by globs and lists, read by tf.data with the in-memory readers'
checks, shuffled, filtered, bucketed into batches, sharded per worker, and resumed exactly."""

import gzip
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from textseq.data.sources import Shard, load_pairs, split_shards
from textseq.data.fingerprints import fingerprints
from textseq.data.streams import data_error, pair_stream, sample_pairs, training_batches
from textseq.data.tokenizer import Tokenizer, iter_tokens
from textseq.data.vocab import Vocabulary
from textseq.errors import UserError
from textseq.recipe import DataConfig, TrainConfig

from conftest import make_shards, write_lines as write

def config(root, **changes):
    values = dict(source="parallel", dir=str(root), train="part-*", validation="part-0", test="part-0",
                  source_language="de", target_language="en", max_source_length=10, max_target_length=10,
                  shuffle_buffer=64)
    return DataConfig(**{**values, **changes})


def tokenizers(pairs):
    vocab = Vocabulary.build(iter_tokens([text for pair in pairs for text in pair], "word", False), "word")
    tokenizer = Tokenizer(vocab)
    return tokenizer, tokenizer


def stream_error(dataset) -> str:
    with pytest.raises(tf.errors.OpError) as caught:
        for _ in dataset:
            pass
    found = data_error(caught.value)
    assert found is not None, str(caught.value)[:500]
    return str(found)


def test_globs_and_lists_find_parallel_shards_in_order(tmp_path):
    make_shards(tmp_path, shards=3)
    shards = split_shards(config(tmp_path), "train")
    assert [[p.name for p in s.files] for s in shards] == [
        [f"part-{k}.de.gz", f"part-{k}.en.gz"] for k in range(3)]
    listed = split_shards(config(tmp_path, train=("part-2", "part-0", "part-2")), "train")
    assert [s.files[0].name for s in listed] == ["part-2.de.gz", "part-0.de.gz"]  # recipe order, no repeats
    # The in-memory reader (train.epochs) reads the same shards, in that order.
    pairs = load_pairs(config(tmp_path, train=("part-1", "part-0")), "train")
    assert len(pairs) == 100 and pairs[0][0].startswith("s1_0 ") and pairs[50][0].startswith("s0_0 ")


def test_bad_globs_and_shards_name_what_is_wrong(tmp_path):
    make_shards(tmp_path, shards=2)
    with pytest.raises(UserError, match=r"data.train: .*nothing-\*\.de \(or \.gz\) matches no file"):
        split_shards(config(tmp_path, train="nothing-*"), "train")
    (tmp_path / "part-1.en.gz").unlink()
    with pytest.raises(UserError, match=r"data.train: .*part-1\.en \(or part-1\.en\.gz\): no such file"):
        split_shards(config(tmp_path), "train")
    (tmp_path / "part-1.en.gz").write_bytes(b"plain text, not gzip\n")
    with pytest.raises(UserError, match=r"data.train: .*part-1\.en\.gz is not gzip"):
        split_shards(config(tmp_path), "train")
    tsv = config(tmp_path, source="tsv", train="*.tsv")
    with pytest.raises(UserError, match=r"data.train: .*\*\.tsv matches no file"):
        split_shards(tsv, "train")


def test_the_stream_reads_what_the_in_memory_reader_reads(tmp_path):
    make_shards(tmp_path, shards=2, packed=True)
    (tmp_path / "part-1.de.gz").write_bytes(gzip.compress(b"\xef\xbb\xbfbom line\r\n  \n" +
                                                          gzip.decompress((tmp_path / "part-1.de.gz").read_bytes())
                                                          .split(b"\n", 2)[2]))
    data = config(tmp_path)
    streamed = [(s.decode(), t.decode()) for s, t in pair_stream(split_shards(data, "train"), data, "train")
                .as_numpy_iterator()]
    assert streamed == load_pairs(data, "train")
    assert ("bom line", "t1_0 " + streamed[50][1].split(" ", 1)[1]) == streamed[50]  # BOM, \r gone
    assert len(streamed) == 99  # the pair with an empty source side is left out
    # TSV: the same pairs from one file of SOURCE<TAB>TARGET lines.
    write(tmp_path / "all.tsv", [f"{s}\t{t}" for s, t in streamed])
    tsv = config(tmp_path, source="tsv", train="all.tsv")
    assert [(s.decode(), t.decode()) for s, t in
            pair_stream(split_shards(tsv, "train"), tsv, "train").as_numpy_iterator()] == streamed


def test_bad_lines_stop_the_stream_with_the_file_and_line(tmp_path):
    make_shards(tmp_path, shards=2, packed=False)
    lines = (tmp_path / "part-1.en").read_bytes().split(b"\n")
    (tmp_path / "part-1.en").write_bytes(b"\n".join(lines[:6] + [b"caf\xe9"] + lines[7:]))
    data = config(tmp_path)
    message = stream_error(pair_stream(split_shards(data, "train"), data, "train"))
    assert "data.train: " in message and "part-1.en, line 7: not UTF-8" in message and "encoding_errors" in message
    skipped = config(tmp_path, encoding_errors="skip")
    pairs = list(pair_stream(split_shards(skipped, "train"), skipped, "train").as_numpy_iterator())
    assert len(pairs) == 99 and all(not s.startswith(b"s1_6 ") for s, _ in pairs)

    (tmp_path / "part-1.en").write_bytes(b"\n".join(lines[:30]) + b"\n")  # 30 lines, its source has 50
    message = stream_error(pair_stream(split_shards(data, "train"), data, "train"))
    assert "part-1.en ends before line 31 but" in message and "part-1.de has a line 31" in message
    with pytest.raises(UserError, match=r"part-1\.en ends before line 31"):
        sample_pairs(split_shards(data, "train"), data, 10, seed=0)

    write(tmp_path / "bad.tsv", ["a\tb", "c\td\te"])
    tsv = config(tmp_path, source="tsv", train="bad.tsv")
    message = stream_error(pair_stream(split_shards(tsv, "train"), tsv, "train"))
    assert "bad.tsv, line 2: 3 tab-separated column(s)" in message


def batches_of(data, train, tokenizers_, count, context=None):
    dataset = training_batches([split_shards(data, "train")], [1.0], *tokenizers_, data, train, context)
    return [batch for _, batch in zip(range(count), dataset)]


def test_training_batches_drop_long_pairs_and_fill_batches_or_token_budgets(tmp_path):
    make_shards(tmp_path, shards=4)
    data = config(tmp_path, max_source_length=6, max_target_length=7)
    pairs = load_pairs(data, "train")
    pair_tokenizers = tokenizers(pairs)
    for inputs, target_out in batches_of(data, TrainConfig(batch_size=8), pair_tokenizers, 40):
        assert inputs["source"].shape[0] == 8 and inputs["source"].shape[1] <= 6
        assert target_out.shape == inputs["target_in"].shape and target_out.shape[1] <= 7
        assert np.all(inputs["target_in"][:, 0] == 2)  # BOS
        assert np.all(np.sum(target_out == 3, axis=1) == 1)  # one EOS each: nothing was cut
    longer = config(tmp_path, max_source_length=12, max_target_length=12)  # two buckets: up to 8 and 12 tokens
    token_batches = batches_of(longer, TrainConfig(batch_size=8, batch_tokens=24), pair_tokenizers, 40)
    sizes = {int(inputs["source"].shape[0]) for inputs, _ in token_batches}
    assert len(sizes) > 1  # short pairs come more to a batch
    for inputs, target_out in token_batches:
        assert inputs["source"].shape[0] * max(inputs["source"].shape[1], target_out.shape[1]) <= 24
    # Every short enough pair comes, and no other: two passes hold each about twice.
    kept = {s for s, t in pairs if len(s.split()) <= 6 and len(t.split()) <= 6}
    seen = Counter()
    for inputs, _ in batches_of(data, TrainConfig(batch_size=8), pair_tokenizers, 2 * len(kept) // 8):
        seen.update(pair_tokenizers[0].decode(inputs["source"]).numpy())
    assert {s.decode() for s in seen} == kept and max(seen.values()) <= 3


def test_a_restored_iterator_goes_on_with_the_same_batches(tmp_path):
    make_shards(tmp_path, shards=3)
    data = config(tmp_path)
    dataset = training_batches([split_shards(data, "train")], [1.0], *tokenizers(load_pairs(data, "train")), data,
                               TrainConfig(batch_size=4))
    iterator = iter(dataset)
    for _ in range(30):
        next(iterator)
    prefix = tf.train.Checkpoint(input=iterator).write(str(tmp_path / "position"))
    expected = [next(iterator)[1].numpy() for _ in range(20)]
    again = iter(dataset)
    tf.train.Checkpoint(input=again).read(prefix).assert_consumed()
    for want in expected:
        np.testing.assert_array_equal(next(again)[1].numpy(), want)


def test_pipelines_of_several_workers_read_disjoint_data(tmp_path):
    make_shards(tmp_path, shards=4)
    data = config(tmp_path, shuffle_buffer=1, max_source_length=20, max_target_length=20)
    tokenizers_ = tokenizers(load_pairs(data, "train"))

    def shards_read(index, pipelines, train="part-*"):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=index,
                                             num_replicas_in_sync=pipelines)
        sources = Counter()
        for inputs, _ in batches_of(config(tmp_path, train=train, shuffle_buffer=1, max_source_length=20,
                                           max_target_length=20), TrainConfig(batch_size=2 * pipelines),
                                    tokenizers_, 50, context):
            sources.update(text.split()[0][:2] for text in tokenizers_[0].decode(inputs["source"]).numpy().astype(str))
        return sources

    first, second = shards_read(0, 2), shards_read(1, 2)
    assert set(first) == {"s0", "s2"} and set(second) == {"s1", "s3"}  # by file: enough files
    one_file = [shards_read(index, 2, train="part-0") for index in (0, 1)]
    assert set(one_file[0]) == set(one_file[1]) == {"s0"}  # one file: every other pair


def test_corpora_are_mixed_by_weight(tmp_path):
    make_shards(tmp_path, shards=2, pairs=200)
    data = config(tmp_path, max_source_length=20, max_target_length=20)
    tokenizers_ = tokenizers(load_pairs(data, "train"))
    corpora = [split_shards(data, "train", ("part-0",)), split_shards(data, "train", ("part-1",))]
    dataset = training_batches(corpora, [3.0, 1.0], *tokenizers_, data, TrainConfig(batch_size=16))
    origins = Counter()
    for _, (inputs, _) in zip(range(100), dataset):
        origins.update(text.split()[0][:2] for text in tokenizers_[0].decode(inputs["source"]).numpy().astype(str))
    assert origins["s0"] / (origins["s0"] + origins["s1"]) == pytest.approx(0.75, abs=0.04)


def test_the_vocabulary_sample_is_bounded_seeded_and_counts_every_pair(tmp_path):
    make_shards(tmp_path, shards=3)
    data = config(tmp_path)
    shards = split_shards(data, "train")
    sample, seen = sample_pairs(shards, data, 40, seed=1)
    assert seen == 150 and len(sample) == 40 and sample == sample_pairs(shards, data, 40, seed=1)[0]
    assert sample != sample_pairs(shards, data, 40, seed=2)[0]
    assert {s.split()[0][:2] for s, _ in sample} == {"s0", "s1", "s2"}  # from every shard


def test_fingerprints_see_a_change_anywhere_in_a_file_and_name_it_within_the_data_dir(tmp_path):
    shard = tmp_path / "corpus" / "train.de"
    shard.parent.mkdir()
    lines = [f"line {i} of a shard larger than the ends a quick check would read".encode() for i in range(8000)]
    shard.write_bytes(b"\n".join(lines))
    before = fingerprints([Shard((shard,))], tmp_path)
    assert before[0][:2] == ["corpus/train.de", shard.stat().st_size] and shard.stat().st_size > 400_000
    middle = shard.stat().st_size // 2
    data = shard.read_bytes()
    shard.write_bytes(data[:middle] + (b"X" if data[middle:middle + 1] != b"X" else b"Y") + data[middle + 1:])
    after = fingerprints([Shard((shard,))], tmp_path)
    assert after[0][:2] == before[0][:2] and after[0][2] != before[0][2]
    assert fingerprints([Shard((shard,))], tmp_path / "elsewhere")[0][0] == str(shard)  # outside data.dir: as is


def test_pairs_the_stream_drops_for_length_add_no_words_to_the_vocabulary():
    from textseq.data.streams import PairSample
    from textseq.data.tasks import Streamable, translation_vocabularies
    from textseq.recipe import VocabConfig

    long_line = " ".join(f"rare{i}" for i in range(500))
    sample = PairSample([b"ein hund\x00a dog", f"{long_line}\x00a cat".encode(), b"zwei katzen\x00two cats"])
    data = DataConfig(max_source_length=12, max_target_length=12)
    source, target = translation_vocabularies(Streamable(sample, data, "word"), VocabConfig(shared=False))
    assert "rare7" not in source.tokens and "cat" not in target.tokens  # the whole pair is dropped, as it streams
    assert {"ein", "hund", "zwei", "katzen"} <= set(source.tokens) and {"dog", "two", "cats"} <= set(target.tokens)
