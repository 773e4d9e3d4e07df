"""Which `tf.distribute` strategy a run uses, and which worker this is.

- `TF_CONFIG` set (a cluster of workers): `MultiWorkerMirroredStrategy`.
- otherwise `MirroredStrategy` over the given devices, or all local GPUs,
  or, without GPUs, all logical CPU devices (one, unless the process split
  its CPU into logical devices as the tests do).

The models of `keras_classreg.models` switch to synchronized BatchNorm when
they are built inside a strategy with more than one replica, so build them
in `strategy.scope()`.
"""

import json
import os

import tensorflow as tf


def tf_config():
    """The parsed `TF_CONFIG` environment variable, or `None` when unset."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The TF_CONFIG environment variable is not valid JSON "
            f"({error.msg} at character {error.pos}): {text!r}"
        ) from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict) or (
        "type" not in task or "index" not in task
    ):
        raise ValueError(
            "TF_CONFIG must look like {\"cluster\": {\"worker\": [\"host:port\", "
            "...]}, \"task\": {\"type\": \"worker\", \"index\": 0}}. "
            f"Received: {text!r}"
        )
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= task["index"] < len(members):
        raise ValueError(
            f"TF_CONFIG names task {task['type']}:{task['index']}, which is "
            f"not in its cluster {cluster}."
        )
    return value


def worker_role():
    """`(task_type, task_index, is_chief)` of this process.

    The chief is the `chief` task if the cluster has one, else worker 0;
    a process without `TF_CONFIG` is the chief.
    """
    config = tf_config()
    if config is None:
        return "chief", 0, True
    task_type, index = config["task"]["type"], int(config["task"]["index"])
    has_chief = bool(config["cluster"].get("chief"))
    is_chief = task_type == "chief" or (
        not has_chief and task_type == "worker" and index == 0
    )
    return task_type, index, is_chief


def make_strategy(devices=None):
    """The strategy for this process (see the module docstring).

    Args:
        devices: device names for `MirroredStrategy` (ignored under
            `TF_CONFIG`); `None` for all local GPUs, else all logical CPUs.
    """
    if tf_config() is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus)


def num_workers(strategy):
    """Number of worker processes taking part in `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(kind, [])) for kind in ("chief", "worker")))
