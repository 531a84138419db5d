"""textseq's optimizers clip as PyTorch's clip_grad_norm_ would on the dense gradient, and keep
embedding gradients sparse."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from textseq.kernels import optimizers
from textseq.recipe import TrainConfig
from textseq.optimization import make_optimizer

IDS = tf.constant([[3, 1, 3], [3, 0, 2]])  # row 3 looked up three times


def embedding_and_dense_gradients(scale: float):
    """An embedding table and a dense weight, and their gradients (the table's as IndexedSlices)."""
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(6, 4)).astype("float32"))
    dense = tf.Variable(rng.normal(size=(4, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        outputs = tf.matmul(tf.reshape(tf.gather(table, IDS), [-1, 4]), dense)
        loss = scale * tf.reduce_sum(outputs * tf.constant(rng.normal(size=(6, 2)).astype("float32")))
    return [table, dense], tape.gradient(loss, [table, dense])


def test_the_norm_of_an_embedding_gradient_is_that_of_its_dense_form():
    _, (rows, dense) = embedding_and_dense_gradients(1.0)
    assert isinstance(rows, tf.IndexedSlices) and len(rows.indices) == 6  # one slice per lookup
    expected = np.sqrt(np.sum(tf.convert_to_tensor(rows).numpy() ** 2) + np.sum(dense.numpy() ** 2))
    np.testing.assert_allclose(optimizers.gradient_norm([rows, None, dense]).numpy(), expected, rtol=1e-6)
    naive = np.sqrt(np.sum(rows.values.numpy() ** 2) + np.sum(dense.numpy() ** 2))  # tf.clip_by_norm's
    assert abs(naive - expected) > 1e-3 * expected


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("clip", ["global_clipnorm", "clipnorm"])
def test_a_clipped_sgd_step_equals_the_step_on_dense_gradients_and_leaves_other_rows(clip, momentum):
    variables, gradients = embedding_and_dense_gradients(100.0)  # norms far above the limit
    dense_gradients = [tf.convert_to_tensor(g).numpy() for g in gradients]
    if clip == "global_clipnorm":
        norm = np.sqrt(sum(np.sum(g ** 2) for g in dense_gradients))
        expected_gradients = [g * 2.0 / norm for g in dense_gradients]
    else:
        expected_gradients = [g * 2.0 / np.sqrt(np.sum(g ** 2)) for g in dense_gradients]
    before = [v.numpy() for v in variables]

    optimizer = optimizers.SGD(0.5, momentum=momentum, **{clip: 2.0})
    optimizer.apply_gradients(zip(gradients, variables))  # a first step: the momentum is the step itself

    for variable, start, gradient in zip(variables, before, expected_gradients):
        np.testing.assert_allclose(variable.numpy(), start - 0.5 * gradient, rtol=1e-5, atol=1e-6)
    untouched = [4, 5]  # rows no id looked up
    np.testing.assert_array_equal(variables[0].numpy()[untouched], before[0][untouched])


@pytest.mark.parametrize("optimizer", [optimizers.Adam, optimizers.RMSprop])
def test_clipped_embedding_gradients_stay_sparse(optimizer):
    _, gradients = embedding_and_dense_gradients(100.0)
    for clip in ("global_clipnorm", "clipnorm"):
        clipped = optimizer(0.1, **{clip: 2.0})._clip_gradients(gradients)
        assert isinstance(clipped[0], tf.IndexedSlices)
        np.testing.assert_allclose(optimizers.gradient_norm(clipped[1:] if clip == "clipnorm" else clipped), 2.0,
                                   rtol=1e-5)


def op_types(graph_def) -> set[str]:
    """The ops of a graph and of the functions it calls (conditions' branches among them)."""
    return {node.op for node in graph_def.node} | {
        node.op for function in graph_def.library.function for node in function.node_def}


@pytest.mark.parametrize("options", [
    {"optimizer": "Adam", "clipnorm": 1.0},
    {"optimizer": "Adam", "global_clipnorm": 1.0, "gradient_accumulation_steps": 2},
    {"optimizer": "AdamW", "weight_decay": 0.01, "use_ema": True},
    {"optimizer": "Adam", "amsgrad": True}])
def test_the_fused_adam_step_follows_keras_adam(options):
    """Dense gradients, clipped or not, with a decaying rate: the fused step lands where Keras' own step
    lands after several steps, and it is TensorFlow's `ResourceApplyAdam`. The embedding's IndexedSlices
    keep Keras' step (its row 3 is looked up thrice: Adam of the summed rows would land elsewhere).

    The betas are binary fractions: the fused op computes `1 - beta` in float32, Keras in Python, and
    for 0.999 the two differ by 1.3e-5 of it (float32 holds 0.999 as 0.99900001)."""
    options = {"beta_1": 0.875, "beta_2": 0.9921875, **options}
    name = options.pop("optimizer")
    rate = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.9)
    landed, graphs = {}, {}
    keras_step = type("KerasStep", (optimizers.SparseClipping, getattr(keras.optimizers, name)), {})  # textseq's clipping
    for side, make in [("textseq", getattr(optimizers, name)), ("keras", keras_step)]:
        (table, dense), _ = embedding_and_dense_gradients(1.0)
        optimizer = make(rate, **options)

        @tf.function
        def step(scale):
            with tf.GradientTape() as tape:
                outputs = tf.matmul(tf.reshape(tf.gather(table, IDS), [-1, 4]), dense)
                loss = scale * tf.reduce_sum(outputs * tf.sin(tf.range(12, dtype="float32")[:6, None] + dense[0]))
            optimizer.apply_gradients(zip(tape.gradient(loss, [table, dense]), [table, dense]))

        for scale in [3.0, 0.2, 1.0, 2.0, 0.5, 1.0]:
            step(tf.constant(scale))
        landed[side] = [table.numpy(), dense.numpy()]
        graphs[side] = op_types(step.get_concrete_function(tf.constant(1.0)).graph.as_graph_def())
    for ours, keras_own in zip(landed["textseq"], landed["keras"]):
        np.testing.assert_allclose(ours, keras_own, rtol=2e-6, atol=1e-7)
    assert ("ResourceApplyAdam" in graphs["textseq"]) == (not options.get("amsgrad"))
    assert "ResourceApplyAdam" not in graphs["keras"]


def test_a_gradient_under_the_limit_steps_unchanged_and_a_nan_one_makes_nan_weights():
    weights = tf.Variable([1.0, 1.0])
    optimizers.SGD(0.1, global_clipnorm=10.0).apply_gradients([(tf.constant([3.0, 4.0]), weights)])
    np.testing.assert_allclose(weights.numpy(), [0.7, 0.6], rtol=1e-6)
    optimizers.SGD(0.1, global_clipnorm=10.0).apply_gradients([(tf.constant([np.nan, 1.0]), weights)])
    assert np.isnan(weights.numpy()).all()  # the step shows the divergence instead of hiding it
    small = tf.constant([3.0, 4.0])
    np.testing.assert_array_equal(optimizers.Adam(0.1, global_clipnorm=10.0)._clip_gradients([small])[0], [3.0, 4.0])


MIRRORED_SGD = textwrap.dedent("""
    import json
    import keras, numpy as np, tensorflow as tf
    from textseq.kernels import optimizers
    from textseq.distribute import make_strategy
    from textseq.recipe import TrainConfig
    strategy = make_strategy(TrainConfig(strategy="mirrored", devices="/cpu:0,/cpu:1"))
    results = {}
    for name, make in [("textseq", optimizers.SGD), ("keras", keras.optimizers.SGD),
                       ("textseq adam", optimizers.Adam), ("keras adam", keras.optimizers.Adam)]:
        with strategy.scope():
            weights = tf.Variable([1.0, 1.0, 1.0])
            optimizer = make(0.5, global_clipnorm=1.0)
            optimizer.build([weights])  # Adam's moments: created under the strategy, not in the step
        def step():
            replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, "float32")
            optimizer.apply_gradients([(tf.constant([3.0, 4.0, 0.0]) * (replica + 1.0), weights)])
        tf.function(lambda: strategy.run(step))()
        results[name] = [v.numpy().tolist() for v in strategy.experimental_local_results(weights)]
    print(json.dumps(results))
""")


def test_sgd_and_adam_under_two_replicas_clip_each_replicas_gradients_as_keras():
    """Each replica clips its own gradients before they are summed (as Keras does); the copies stay equal.
    Adam's fused step updates each replica's copy of the weight and of its moments as Keras' step does."""
    process = subprocess.run([sys.executable, "-c", MIRRORED_SGD], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    results = json.loads(process.stdout.strip().splitlines()[-1])
    first, second = results["textseq"]
    np.testing.assert_allclose(first, second)
    # replica gradients (3, 4, 0) and (6, 8, 0), each clipped to norm 1 and summed: (1.2, 1.6, 0)
    np.testing.assert_allclose(first, [1 - 0.5 * 1.2, 1 - 0.5 * 1.6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(results["keras"][0], first, rtol=1e-6)
    first, second = results["textseq adam"]
    np.testing.assert_allclose(first, second)
    # the fused op computes 1 - 0.999 in float32 (1.3e-5 off), Keras in Python
    np.testing.assert_allclose(first, results["keras adam"][0], rtol=2e-5)
    np.testing.assert_allclose(first, [1 - 0.5, 1 - 0.5, 1.0], rtol=2e-5)  # Adam's first step: the rate, signed


def test_the_recipe_picks_the_clipping_and_the_optimizer_round_trips():
    each = make_optimizer(TrainConfig(optimizer="sgd", clipnorm=5.0), 10)
    joint = make_optimizer(TrainConfig(optimizer="adam", clipnorm=5.0, clip="global"), 10)
    assert (type(each), each.clipnorm, each.global_clipnorm) == (optimizers.SGD, 5.0, None)
    assert (type(joint), joint.clipnorm, joint.global_clipnorm) == (optimizers.Adam, None, 5.0)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(joint))
    assert type(clone) is optimizers.Adam and clone.get_config() == joint.get_config()
