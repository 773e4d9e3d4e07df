"""Which `tf.distribute` strategy a run uses, and which worker this is.

- `TF_CONFIG` set (a cluster of workers): `MultiWorkerMirroredStrategy`.
- otherwise `MirroredStrategy` over the given devices, or all local GPUs,
  or, without GPUs, all logical CPU devices (one, unless the process split
  its CPU into logical devices as the tests do).

The models of `keras_classreg.models` switch to synchronized BatchNorm when
they are built inside a strategy with more than one replica, so build them
in `strategy.scope()`.
"""

import os

import keras
import tensorflow as tf


def cluster_resolver():
    """TensorFlow's `TFConfigClusterResolver` for this process, or `None`
    when `TF_CONFIG` names no cluster (a single process).

    Raises:
        ValueError: `TF_CONFIG` is not valid JSON, or names a task that is
            not in its cluster (the message shows the variable).
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        spec = resolver.cluster_spec().as_dict()
    except ValueError as error:  # json.JSONDecodeError included
        raise ValueError(
            f"The TF_CONFIG environment variable is not valid ({error}). It must "
            'look like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}. Received: {text!r}'
        ) from None
    if not spec:
        return None
    task_type, index = resolver.task_type, resolver.task_id
    members = spec.get(task_type) or []
    if task_type is None or index is None or not 0 <= int(index) < len(members):
        raise ValueError(
            f"TF_CONFIG names task {task_type}:{index}, which is not in its "
            f"cluster {spec}. Received: {text!r}"
        )
    return resolver


def worker_role():
    """`(task_type, task_index, is_chief)` of this process.

    The chief is the `chief` task if the cluster has one, else worker 0;
    a process without `TF_CONFIG` is the chief.
    """
    resolver = cluster_resolver()
    if resolver is None:
        return "chief", 0, True
    task_type, index = resolver.task_type, int(resolver.task_id)
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)
    return task_type, index, is_chief


# One strategy per device set and process: two MirroredStrategy objects over
# the same devices allocate the same collective keys, and a second model
# trained in the same process then fails with "Shape mismatch in the
# collective instance".
_STRATEGIES = {}


def make_strategy(devices=None):
    """The strategy for this process (see the module docstring).

    Calls with the same devices return the same strategy object.

    Args:
        devices: device names for `MirroredStrategy` (ignored under
            `TF_CONFIG`); `None` for all local GPUs, else all logical CPUs.
    """
    if cluster_resolver() is not None:
        key = ("multi_worker",)
    elif devices:
        key = ("mirrored",) + tuple(devices)
    elif tf.config.list_logical_devices("GPU"):
        key = ("mirrored", "all-gpus")
    else:
        key = ("mirrored",) + tuple(device.name for device in tf.config.list_logical_devices("CPU"))
    if key not in _STRATEGIES:
        if key[0] == "multi_worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=cluster_resolver()
            )
        elif key[1:] == ("all-gpus",):
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy(list(key[1:]))
        _STRATEGIES[key] = strategy
    return _STRATEGIES[key]


def num_workers(strategy):
    """Number of worker processes taking part in `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(kind, [])) for kind in ("chief", "worker")))


# The newest Keras release in which `fit` under MultiWorkerMirroredStrategy
# was seen to fail without the patch below (keras-team/keras#20585).
# tests/test_train_multiworker.py checks that the installed Keras still needs
# it and fails once Keras fixes the bug, so that the patch can go.
LAST_KERAS_NEEDING_MULTI_WORKER_PATCH = (3, 15)


def keras_needs_multi_worker_patch(version=None):
    """Whether Keras `version` (default: the installed one) is a release in
    which multi-worker `fit` needs `patch_multi_worker_build`."""
    major, minor = (int(part) for part in (version or keras.version()).split(".")[:2])
    return (major, minor) <= LAST_KERAS_NEEDING_MULTI_WORKER_PATCH


def patch_multi_worker_build(model, strategy, element_spec):
    """Works around two Keras 3 bugs that stop `fit` under
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585), for `model` only,
    on the Keras releases that have them (`keras_needs_multi_worker_patch`).

    Keras 3.15's TensorFlow trainer (1) builds the model symbolically from
    one batch obtained with `strategy.reduce("MEAN", batch)` over the whole
    `(clips, labels)` structure, which `MultiWorkerMirroredStrategy` cannot
    reduce ("Attempt to convert a value (PerReplica...) to a Tensor"), and
    (2) reduces each step's scalar logs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Fixes:
    (1) build from the dataset's `element_spec` (the batch only supplies
    shapes and dtypes; no data is read, so no cross-worker step is
    involved), (2) hand the logs over as shape `[1]`, whose mean over axis 0
    across all replicas is the intended scalar. A no-op for other strategies
    and for newer Keras releases.

    Args:
        model: the compiled model.
        strategy: the strategy it was built under.
        element_spec: `(clips, labels)` `tf.TensorSpec`s of the training data.
    """
    if num_workers(strategy) < 2 or not keras_needs_multi_worker_patch():
        return model

    def build(iterator=None, data_batch=None):
        del iterator, data_batch  # shapes come from element_spec
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    def vector_logs(step):
        def wrapped(data):
            return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

        return wrapped

    model._maybe_symbolic_build = build
    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)
    return model


def barrier(strategy):
    """Blocks until every worker of `strategy` reaches this call (a no-op
    with one worker): a cross-worker sum of ones, which also checks that
    all workers still agree on how many of them there are."""
    workers = num_workers(strategy)
    if workers < 2:
        return
    total = strategy.reduce("SUM", strategy.run(tf.function(lambda: tf.constant(1.0))), axis=None)
    expected = float(strategy.num_replicas_in_sync)
    if float(total) != expected:
        raise RuntimeError(f"Worker barrier counted {float(total)} replicas, expected {expected}.")
