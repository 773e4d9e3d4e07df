"""Whether a run's training and evaluation steps are compiled with XLA.

`training.train` compiles them with XLA by default (`xla: true`,
`--no-xla` to turn it off), wherever XLA can compile them:

- **one replica** (one CPU or one GPU; MultiWorker with one worker): the
  whole step (forward, gradients, optimizer update, metrics) is one XLA
  computation (`model.compile(jit_compile=True)`); so is the validation
  step.
- **several replicas** (`MirroredStrategy` over several devices,
  `MultiWorkerMirroredStrategy` with several workers): not compiled. Keras
  3 compiles the step *around* `strategy.run`, one computation over all the
  replicas' devices, which XLA cannot place ("Trying to access resource
  ... located in device CPU:1 from device CPU:0"); compiling each
  replica's step instead needs TensorFlow's merge-call-free collectives,
  which it only has when every device is a GPU, and Keras 3 has no such
  mode. The step runs TensorFlow's kernels, and `resolve_xla` says so.
- **`--deterministic`**: Keras turns `jit_compile` off while TensorFlow's
  op determinism is on ("not all ops are supported by XLA with determinism
  enabled": on GPUs, XLA's deterministic mode has no select-and-scatter,
  i.e. no max-pooling gradient). On CPUs XLA runs the same computation the
  same way every time (no atomics; work split by thread count only), so
  deterministic CPU runs keep XLA: `compile_model` re-enables it after
  Keras's check (tested: two runs give bitwise-equal weights). On GPUs the
  step runs TensorFlow's deterministic kernels without XLA, and
  `resolve_xla` prints that trade-off.

The zoo's models train fast either way: their convolutions
(`keras_classreg.layers.SpaceToDepthConv3D`) keep off the CPU kernels that
are tens of times slower than the convolution itself
(`python -m benchmarks.layer_cliffs` finds them).
"""

import contextlib
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class XlaDecision:
    """`enabled`: compile the steps with XLA; `reason`: why not, or the
    trade-off taken (a sentence for the log; empty when XLA is on as
    asked)."""

    enabled: bool
    reason: str = ""


def _gpus():
    return tf.config.list_logical_devices("GPU")


def resolve_xla(requested, strategy, deterministic=False, num_workers=1):
    """Whether the steps of a run under `strategy` are compiled with XLA.

    Args:
        requested: the run's `xla` setting.
        strategy: the `tf.distribute` strategy the model is built under.
        deterministic: whether the run asks for deterministic ops.
        num_workers: worker processes taking part (MultiWorker).

    Returns:
        an `XlaDecision`.
    """
    if not requested:
        return XlaDecision(
            False,
            (
                "XLA off (--no-xla): steps run TensorFlow's kernels. Models built "
                "from plain keras.layers.Conv3D can be tens of times slower on "
                "some CPUs (strided-convolution gradients); the zoo's models are "
                "not."
            ),
        )
    if strategy.num_replicas_in_sync > 1:
        return XlaDecision(
            False,
            (
                f"XLA off: {strategy.num_replicas_in_sync} replicas "
                f"({num_workers} worker(s)). Keras 3 compiles one step across all "
                "replicas' devices, which XLA cannot place; steps run "
                "TensorFlow's kernels."
            ),
        )
    if deterministic and _gpus():
        return XlaDecision(
            False,
            (
                "XLA off (--deterministic on a GPU): XLA's deterministic mode "
                "cannot compile max-pooling gradients (select-and-scatter), so "
                "the step runs TensorFlow's deterministic GPU kernels, typically "
                "slower than XLA. Drop --deterministic for XLA's speed."
            ),
        )
    return XlaDecision(True)


@contextlib.contextmanager
def _op_determinism_suspended():
    """Turns TensorFlow's op determinism off inside the block (restored on
    exit)."""
    from tensorflow.python.framework import config as tf_config

    enabled = tf_config.is_op_determinism_enabled()
    if enabled:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if enabled:
            tf.config.experimental.enable_op_determinism()


def compile_model(model, jit_compile, **compile_kwargs):
    """`model.compile(jit_compile=jit_compile, **compile_kwargs)`, keeping
    XLA on while op determinism is on (decide with `resolve_xla`, which
    turns it off for deterministic GPU runs; see the module docstring).

    Raises:
        RuntimeError: Keras refused XLA for another reason (a layer with
            `supports_jit = False`); the message names the layers.
    """
    # Keras checks op determinism when `jit_compile` is set (at compile)
    with _op_determinism_suspended():
        model.compile(jit_compile=jit_compile, **compile_kwargs)
    if bool(model.jit_compile) != bool(jit_compile):
        unsupported = [
            layer.name
            for layer in model._flatten_layers()
            if not getattr(layer, "supports_jit", True)
        ]
        raise RuntimeError(
            f"Keras would not compile model '{model.name}' with XLA; layers "
            f"that do not support it: {', '.join(unsupported) or 'none found'}. "
            "Train with --no-xla."
        )
    return model
