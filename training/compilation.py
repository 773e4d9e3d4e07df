"""Whether a run's training and evaluation steps are compiled with XLA.

`training.train` decides per run (`xla: null`, the default), or does as
told (`--xla` / `--no-xla`). Wherever XLA can compile them:

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

The default on one CPU replica is the configuration `python -m
benchmarks.train_step` measured fastest where it is safe: a model of the
zoo, with TensorFlow's oneDNN kernels on (`training.onednn`), trains without
XLA: the zoo's convolutions (`keras_classreg.layers.SpaceToDepthConv3D`)
keep off the CPU kernels for strided-convolution gradients that are tens of
times slower than the convolution itself (`python -m benchmarks.layer_cliffs`
finds them), and oneDNN's kernels beat XLA's CPU code
(docs/benchmarks/train_step.md). Everything else compiles with
XLA: oneDNN off (XLA was faster than TensorFlow's own kernels there), a
model of your own (its plain `Conv3D` layers can hit that cliff without
XLA), deterministic runs (XLA is what makes CPU runs bitwise repeatable)
and mixed precision on a CPU (TensorFlow has no float16 CPU kernel for
`MaxPool3D`). On GPUs the default is XLA.
"""

import contextlib
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class XlaDecision:
    """`enabled`: compile the steps with XLA; `reason`: what was chosen and
    why (a sentence for the log)."""

    enabled: bool
    reason: str = ""


def _gpus():
    return tf.config.list_logical_devices("GPU")


def resolve_xla(
    requested,
    strategy,
    deterministic=False,
    num_workers=1,
    zoo_model=False,
    mixed_precision=False,
    onednn=None,
):
    """Whether the steps of a run under `strategy` are compiled with XLA.

    Args:
        requested: the run's `xla` setting: `True` / `False` as asked,
            `None` to choose (see the module docstring).
        strategy: the `tf.distribute` strategy the model is built under.
        deterministic: whether the run asks for deterministic ops.
        num_workers: worker processes taking part (MultiWorker).
        zoo_model: whether the model is one of `keras_classreg.models`.
        mixed_precision: whether the run trains under `mixed_float16`.
        onednn: whether TensorFlow's oneDNN kernels are on; default: ask
            TensorFlow (`training.onednn.onednn_enabled`).

    Returns:
        an `XlaDecision` whose reason says what was chosen and why.
    """
    if requested is False:
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
    if requested:
        return XlaDecision(True, "training and validation steps compiled with XLA (--xla)")
    return _default_xla(deterministic, zoo_model, mixed_precision, onednn)


def _default_xla(deterministic, zoo_model, mixed_precision, onednn):
    """The default of one replica (see the module docstring)."""
    if _gpus():
        return XlaDecision(True, "steps compiled with XLA (the default on a GPU)")
    if deterministic:
        return XlaDecision(
            True, "steps compiled with XLA: --deterministic (XLA's CPU code repeats bitwise)"
        )
    if not zoo_model:
        return XlaDecision(
            True,
            "steps compiled with XLA: a model of your own (plain Conv3D gradients can "
            "be tens of times slower on CPUs without XLA); --no-xla to compare",
        )
    if mixed_precision:
        return XlaDecision(
            True,
            "steps compiled with XLA: --mixed-precision on a CPU (no float16 CPU "
            "kernel for MaxPool3D without XLA)",
        )
    if onednn is None:
        from training.onednn import onednn_enabled

        onednn = onednn_enabled()
    if not onednn:
        return XlaDecision(
            True,
            "steps compiled with XLA: TensorFlow's oneDNN kernels are off on this "
            "CPU, and without them XLA was faster (TF_ENABLE_ONEDNN_OPTS=1 and "
            "--no-xla to try the other way)",
        )
    return XlaDecision(
        False,
        "XLA off: a zoo model on a CPU with TensorFlow's oneDNN kernels on, "
        "measured faster than XLA (docs/benchmarks/train_step.md); --xla to compile",
    )


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
