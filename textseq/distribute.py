"""The `tf.distribute` strategy and the precision policy a recipe asks for.

`auto` picks a TPU when this is a TPU VM or one is named (never by a network lookup), `mirrored`
when more than one GPU is visible, and the default (one-device) strategy otherwise.
`train.devices: /cpu:0,/cpu:1` splits the CPU into logical devices, so the mirrored path can be
tried on any machine. `multi_worker` reads the cluster from `TF_CONFIG`; its chief (worker 0, or
the task of type `chief`) is the only process that writes the run directory.

>>> strategy = make_strategy(TrainConfig(strategy="auto"))  # doctest: +SKIP
>>> describe(strategy)  # doctest: +SKIP
'default strategy, 1 replica'
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os

import keras
import tensorflow as tf

from textseq.errors import UserError
from textseq.recipe import TrainConfig
from textseq.recipe.sections import ACCUMULATE_REPLICAS

TPU_HINT = "run on a Cloud TPU VM, or set train.tpu to the TPU's name or grpc:// address"
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The strategy named by `train.strategy` (and `train.devices`), created on this process; refused
    with train.accumulate where it has several replicas."""
    strategy = _strategy(config)
    if config.accumulate > 1 and strategy.num_replicas_in_sync > 1:
        raise UserError(ACCUMULATE_REPLICAS.format(accumulate=config.accumulate,
                                                   replicas=f"{strategy.num_replicas_in_sync} replicas"))
    return strategy


def _strategy(config: TrainConfig) -> tf.distribute.Strategy:
    devices = [d.strip() for d in config.devices.split(",")] if config.devices else None
    if devices:
        split_cpu(devices)
    if config.strategy == "tpu":
        return tpu_strategy(config.tpu)
    if config.strategy == "auto":
        if config.tpu or tpu_visible():
            return tpu_strategy(config.tpu)
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return mirrored()
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        return mirrored(devices)
    if config.strategy == "multi_worker":
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def mirrored(devices: list[str] | None = None) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy whose collectives have keys of their own in this process.

    Every MirroredStrategy numbers its collectives from the same keys, and TensorFlow keeps a key's
    shapes for the life of the process: a second mirrored training in one process failed with "Shape
    mismatch in the collective instance 100" (tensorflow#62790). TensorFlow's own tests move the
    base the same way (`strategy_combinations`).
    """
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    return tf.distribute.MirroredStrategy(devices)


def split_cpu(devices: list[str]) -> None:
    """Makes enough logical CPU devices for every `/cpu:N` named (before TensorFlow starts)."""
    cpus = [d for d in devices if d.lower().startswith("/cpu:")]
    if not cpus:
        return
    wanted = max(int(d.split(":")[1]) for d in cpus) + 1
    physical = tf.config.list_physical_devices("CPU")[0]
    try:  # listing logical devices would start TensorFlow, after which they cannot change
        tf.config.set_logical_device_configuration(physical, [tf.config.LogicalDeviceConfiguration()] * wanted)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) < wanted:
            raise UserError(f"train.devices: {', '.join(devices)} needs {wanted} logical CPU devices, but "
                            "TensorFlow already started in this process with fewer; train in a new process") from None


def tpu_visible() -> bool:
    """A TPU VM's accelerator device files, or a TPU named in TPU_NAME, without any network lookup."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or os.environ.get("TPU_NAME"))


def tpu_strategy(tpu: str | None) -> tf.distribute.TPUStrategy:
    """Connects to the TPU named by `train.tpu` (or the local TPU VM) and initialises it."""
    if not tpu and not tpu_visible():
        raise UserError(
            "train.strategy: tpu found no TPU: looked for a TPU VM's devices (/dev/accel*, /dev/vfio/N) and for "
            f"the TPU_NAME variable; {TPU_HINT}")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
        raise UserError(
            f"train.strategy: tpu found no TPU ({'at ' + tpu if tpu else 'on this machine'}: {error}); {TPU_HINT}"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def check_tf_config() -> dict:
    """The parsed `TF_CONFIG`, or one clear error that shows what it should look like."""
    how = f"set it on every machine, each with its own task index, e.g. {TF_CONFIG_EXAMPLE}"
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError(f"train.strategy: multi_worker reads the cluster from the TF_CONFIG environment variable, "
                        f"which is not set; {how}")
    try:
        config = json.loads(text)
        task_type, index = config["task"]["type"], int(config["task"]["index"])
        tasks = config["cluster"][task_type]
        tasks[index]
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise UserError(f"TF_CONFIG: {text!r} does not name this task in its cluster ({type(error).__name__}: "
                        f"{error}); {how}") from None
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True in the one process that writes the run: the only process, the `chief` task, or worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def workers(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    return sum(len(tasks) for job, tasks in resolver.cluster_spec().as_dict().items() if job in ("chief", "worker"))


def broadcast_from_chief(strategy: tf.distribute.Strategy, variables: list) -> None:
    """Gives every worker the chief's values (after the chief alone restored a checkpoint).

    The values are summed over the replicas with every replica but the chief's contributing zeros,
    packed into a few flat tensors (`packs`): a few collectives, in the same order on every worker,
    instead of one per variable, each a round trip between the machines.
    """
    if workers(strategy) == 1:
        return

    def chief_only(value):
        keep = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return tf.where(keep, value, tf.zeros_like(value))

    @tf.function(autograph=False)
    def broadcast():
        for pack in packs(variables):
            flat = tf.concat([tf.reshape(tf.convert_to_tensor(variable), [-1]) for variable in pack], 0)
            summed = strategy.reduce("SUM", strategy.run(chief_only, args=(flat,)), axis=None)
            for variable, part in zip(pack, tf.split(summed, [size(variable) for variable in pack])):
                variable.assign(tf.reshape(part, variable.shape))

    broadcast()


def packs(variables: list, most: int = 1 << 24) -> list[list]:
    """`variables` in groups of one dtype, each of at most `most` values (or one larger variable), in order.

    >>> weights = [tf.Variable([1.0, 2.0]), tf.Variable(7), tf.Variable([3.0]), tf.Variable([4.0, 5.0])]
    >>> [[v.numpy().tolist() for v in pack] for pack in packs(weights, most=3)]
    [[[1.0, 2.0], [3.0]], [[4.0, 5.0]], [7]]
    """
    by_dtype: dict[str, list] = {}
    for variable in variables:
        by_dtype.setdefault(tf.as_dtype(variable.dtype).name, []).append(variable)
    groups = []
    for same in by_dtype.values():
        group, values = [], 0
        for variable in same:
            if group and values + size(variable) > most:
                groups.append(group)
                group, values = [], 0
            group.append(variable)
            values += size(variable)
        groups.append(group)
    return groups


def size(variable) -> int:
    return math.prod(variable.shape)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has called it: one all-reduce of a number, in every worker's order."""
    @tf.function
    def meet():
        return strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)

    meet()


def task_index(strategy: tf.distribute.Strategy) -> int:
    """This process' place among the workers: 0 for the chief, 1.. for the others."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or is_chief(strategy):
        return 0
    has_chief = "chief" in resolver.cluster_spec().jobs
    return resolver.task_id + (1 if has_chief else 0)


def describe(strategy: tf.distribute.Strategy) -> str:
    replicas = strategy.num_replicas_in_sync
    names = {"_DefaultDistributionStrategy": "default", "MirroredStrategy": "mirrored", "TPUStrategy": "tpu",
             "CollectiveAllReduceStrategy": "multi_worker"}
    name = names.get(type(strategy).__name__, type(strategy).__name__)
    text = f"{name} strategy, {replicas} replica{'s' if replicas != 1 else ''}"
    if workers(strategy) > 1:
        role = "chief" if is_chief(strategy) else f"{strategy.cluster_resolver.task_type} {strategy.cluster_resolver.task_id}"
        text += f" on {workers(strategy)} workers (this one: {role})"
    return text


def resolve_precision(policy: str, strategy: tf.distribute.Strategy | None = None, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The policy `train.precision` names; `auto` is the fastest one the hardware trains well in.

    mixed_bfloat16 on TPUs, on GPUs of compute capability 8.0 and newer and on CPUs with bf16
    instructions (AVX512_BF16 or AMX); mixed_float16 on GPUs of capability 7.x; float32 elsewhere.

    >>> resolve_precision("float32")
    'float32'
    """
    if policy != "auto":
        return policy
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


@contextlib.contextmanager
def precision(policy: str):
    """Layers created inside use `policy` (e.g. mixed_bfloat16); the global policy is restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def work_around_keras_multi_worker(model: keras.Model, batch: tuple) -> None:
    """Two Keras 3 gaps under MultiWorkerMirroredStrategy (keras-team/keras#20329, #20585), closed here.

    1. `fit` builds the compiled loss and metrics from its first distributed batch, which it first
       reduces across replicas, and that fails for dict inputs: build them from one plain batch now,
       so that step has nothing left to do.
    2. Each step's logs are reduced with `strategy.reduce("MEAN", value, axis=0)`, which fails for
       scalars: hand them over as one-element vectors, which that reduction turns back into scalars.

    Both are open as of Keras 3.15.1. The work-around reaches into Keras' internals (`_symbolic_build`),
    which tests/test_multi_worker.py exercises with two real workers.
    """
    model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {k: tf.reshape(v, [1]) for k, v in step(data).items()})


def distribute_dataset(strategy: tf.distribute.Strategy, make_dataset):
    """`make_dataset(input_context)` as this strategy's replicas need it (the plain dataset on one device)."""
    if strategy is tf.distribute.get_strategy():
        return make_dataset(None)
    dataset = strategy.distribute_datasets_from_function(make_dataset)
    local = strategy.num_replicas_in_sync // workers(strategy)
    if local > 1 and dataset.cardinality > 0:
        # TensorFlow reports the pipeline's element count, and a pipeline yields one element per
        # local replica and step: Keras would expect `local` times the steps there are, end every
        # epoch with "Your input ran out of data" and log a single replica's running loss.
        dataset._cardinality = dataset.cardinality // local
    return dataset

