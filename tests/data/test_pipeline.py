import numpy as np
import tensorflow as tf

from textseq.data.pipeline import length_buckets, translation_dataset
from textseq.data.synthetic import dates_examples
from textseq.data.tokenizer import Tokenizer, iter_tokens
from textseq.data.vocab import BOS, EOS, Vocabulary

PAIRS = dates_examples("train", 600, seed=0)
TOKENIZER = Tokenizer(Vocabulary.build(iter_tokens([t for p in PAIRS for t in p], "char", False), "char"))


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


def test_epoch_order_depends_on_epoch_and_repeats():
    epoch = tf.Variable(0, dtype=tf.int64)
    data = translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=1, epoch=epoch)

    def order():
        return [tuple(row) for inputs, _ in data for row in inputs["source"].numpy().tolist()]

    first, again = order(), order()
    epoch.assign(1)
    second = order()
    assert first == again and first != second
    assert sorted(map(lambda r: tuple(x for x in r if x), first)) == sorted(map(lambda r: tuple(x for x in r if x), second))


def padding_ratio(data):
    real = total = 0
    for inputs, _ in data:
        source = inputs["source"].numpy()
        real, total = real + (source != 0).sum(), total + source.size
    return total / real


def test_bucketing_keeps_padding_low():
    bucketed = padding_ratio(translation_dataset(PAIRS, TOKENIZER, TOKENIZER, 32, 40, 12, shuffle_seed=0,
                                                 epoch=tf.Variable(0, dtype=tf.int64)))
    unbucketed = padding_ratio(batches())  # the generator's order is random
    assert bucketed < 1.15 and unbucketed > 1.3, (bucketed, unbucketed)


def test_length_buckets_grow():
    bounds = length_buckets(64)
    assert bounds[0] == 2 and bounds[-1] <= 64 and all(b > a for a, b in zip(bounds, bounds[1:]))
