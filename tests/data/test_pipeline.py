import numpy as np
import tensorflow as tf

from textseq.constants import BOS, EOS
from textseq.data.pipeline import encode_pairs, examples_dataset
from textseq.data.synthetic import dates_examples
from textseq.data.tokenizer import Tokenizer, iter_tokens
from textseq.data.vocab import Vocabulary

PAIRS = dates_examples("train", 600, seed=0)
TOKENIZER = Tokenizer(Vocabulary.build(iter_tokens([t for p in PAIRS for t in p], "char", False), "char"))


def translation_dataset(pairs, source, target, batch_size, max_source_length, max_target_length, **options):
    """Pairs encoded and batched, as training and evaluation of an in-memory corpus do."""
    examples = encode_pairs(pairs, source, target, max_source_length, max_target_length)
    return examples_dataset(examples, batch_size, max_source_length, max_target_length, **options)


def batches(**kwargs):
    return list(translation_dataset(PAIRS, TOKENIZER, TOKENIZER, batch_size=32, max_source_length=40,
                                    max_target_length=12, **kwargs))


def test_teacher_forcing_layout():
    (inputs, target_out), *_ = batches()
    target_in = inputs["target_in"].numpy()
    assert (target_in[:, 0] == BOS).all()
    lengths = (target_out.numpy() != 0).sum(axis=1)
    assert (target_out.numpy()[np.arange(len(lengths)), lengths - 1] == EOS).all()
    np.testing.assert_array_equal(target_in[:, 1:], np.where(target_out.numpy()[:, :-1] == EOS, 0, target_out.numpy()[:, :-1]))
    decoded = TOKENIZER.decode(target_out).numpy()
    assert [d.decode() for d in decoded] == [t for _, t in PAIRS[:32]]


def test_evaluation_order_is_stored_order_and_covers_every_pair():
    sources = [s for inputs, _ in batches() for s in TOKENIZER.decode(inputs["source"]).numpy()]
    assert [s.decode() for s in sources] == [s for s, _ in PAIRS]


def test_truncation_to_maximum_lengths():
    data = translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, max_source_length=5, max_target_length=4)
    for inputs, target_out in data:
        assert inputs["source"].shape[1] <= 5 and target_out.shape[1] <= 4


def source_rows(data):
    return [tuple(x for x in row if x) for inputs, _ in data for row in inputs["source"].numpy().tolist()]


def test_epoch_order_depends_on_epoch_and_repeats():
    epoch = tf.Variable(0, dtype=tf.int64)
    data = translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=1, epoch=epoch)
    first, again = source_rows(data), source_rows(data)
    epoch.assign(1)
    second = source_rows(data)
    assert first == again and first != second


def test_training_epoch_has_full_batches_of_distinct_examples():
    data = translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=0)
    sizes = [int(target_out.shape[0]) for _, target_out in data]
    assert sizes == [32] * (len(PAIRS) // 32) and data.cardinality() == len(sizes)
    rows = [tuple(r) for inputs, _ in data for r in inputs["target_in"].numpy().tolist()]
    sources = source_rows(data)
    assert len(set(zip(sources, rows))) == len(rows)  # no example twice in an epoch


def padding_ratio(data):
    real = total = 0
    for inputs, _ in data:
        source = inputs["source"].numpy()
        real, total = real + (source != 0).sum(), total + source.size
    return total / real


def test_length_sorting_keeps_padding_low():
    sorted_pools = padding_ratio(translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=0))
    stored = padding_ratio(batches())  # the generator's order is random
    assert sorted_pools < 1.15 and stored > 1.3, (sorted_pools, stored)


def pieces(pipelines, shuffle_seed=None, count=len(PAIRS)):
    """What each of `pipelines` workers (one replica each) gets of a global batch of 32."""
    return [list(translation_dataset(PAIRS[:count], TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=shuffle_seed,
                                     input_context=tf.distribute.InputContext(pipelines, k, pipelines)))
            for k in range(pipelines)]


def test_workers_split_every_global_batch_between_them():
    (single,), (first, second) = pieces(1, shuffle_seed=3), pieces(2, shuffle_seed=3)
    assert len(first) == len(second) == len(single)
    for whole, half_a, half_b in zip(single, first, second):
        assert half_a[1].shape[0] == half_b[1].shape[0] == 16
        assert source_rows([whole]) == source_rows([half_a]) + source_rows([half_b])


def test_distributed_evaluation_pads_the_last_batch_with_examples_that_count_for_nothing():
    first, second = pieces(2, count=70)  # 3 global batches of 32: 96 slots for 70 pairs
    assert len(first) == len(second) == 3
    targets = [t.numpy() for part in (first, second) for _, t in part]
    assert sum(int((t != 0).any(axis=1).sum()) for t in targets) == 70
    assert all(t.shape[0] == 16 for t in targets)


def test_static_shapes_pad_to_the_maximum_lengths():
    for inputs, target_out in translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=0,
                                                  static_shapes=True).take(3):
        assert inputs["source"].shape[1] == 40 and target_out.shape[1] == inputs["target_in"].shape[1] == 12
