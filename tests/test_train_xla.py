"""The default training path compiles its steps with XLA (checked on the step
functions Keras runs, not by timing); `--no-xla`, several replicas and
deterministic runs do what `training.compilation` says; a narrow model of
each kind of zoo block trains compiled."""

import importlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_train_support import tiny_config

import keras_classreg
from keras_classreg import models
from training import compilation
from training.compilation import compile_model, resolve_xla
from training.config import TrainConfig
from training.device_augmentation import DeviceAugmentedModel
from training.distribute import make_strategy
from training.onednn import ENV, cli_choice, onednn_enabled, prefer_onednn
from training.train import train

# the module (the package's `resnet3d` attribute is the builder function)
resnet3d_module = importlib.import_module("keras_classreg.models.resnet3d")


def _step_tf_function(keras_step_function):
    """The `tf.function` Keras made for one step (`one_step_on_data`), found
    in the closure of `model.train_function` / `model.test_function`."""
    seen, stack = set(), [keras_step_function]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if (
            isinstance(item, tf.types.experimental.PolymorphicFunction)
            and "one_step_on_data" in item.__name__
        ):
            return item
        if getattr(item, "__wrapped__", None) is not None:
            stack.append(item.__wrapped__)
        for cell in getattr(item, "__closure__", None) or ():
            try:
                stack.append(cell.cell_contents)
            except ValueError:
                pass
    raise AssertionError("no one_step_on_data tf.function in the Keras step function")


def _hlo(step, spec):
    """The step's XLA HLO for batches of `spec` (raises `ValueError` when
    the step is not an XLA function)."""
    batch = tuple(tf.zeros(s.shape, s.dtype) for s in spec)
    return step.experimental_get_compiler_ir(batch)(stage="hlo")


@pytest.fixture
def fitted_models(monkeypatch):
    """Records every model `fit` is called on."""
    seen = []
    original = keras.Model.fit

    def fit(self, *args, **kwargs):
        seen.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return seen


def test_default_config_leaves_xla_to_the_machine():
    assert TrainConfig(data="d", run_dir="r").xla is None
    with pytest.raises(ValueError, match="true, false or null"):
        TrainConfig(data="d", run_dir="r", xla="yes").validate()


@pytest.mark.slow
def test_default_training_and_validation_steps_are_xla_compiled(
    prepared_data, tmp_path, fitted_models
):
    # the defaults as on a machine with one CPU device (conftest splits
    # this process's CPU into two logical devices, i.e. two replicas), for
    # a model of one's own (tiny_config's), which compiles on every CPU
    config = tiny_config(
        prepared_data, tmp_path / "run", epochs=1, steps_per_epoch=2, devices=["/cpu:0"]
    )
    del config["xla"]  # the default
    train(config)
    (model,) = fitted_models
    assert model.jit_compile is True
    spec = (tf.TensorSpec((8, 8, 32, 32, 3), tf.float32), tf.TensorSpec((8, 4), tf.float32))
    train_hlo = _hlo(_step_tf_function(model.train_function), spec)
    test_hlo = _hlo(_step_tf_function(model.test_function), spec)

    # the validation step: the forward convolutions; the training step: the
    # gradient convolutions as well, in the same XLA computation
    def products(hlo):
        # convolutions, and the matrix products of patches SpaceToDepthConv3D
        # computes small-output convolutions with
        return hlo.count("convolution(") + hlo.count(" dot(")

    assert test_hlo.count("convolution(") >= 1
    assert products(train_hlo) > products(test_hlo)
    saved = json.load(open(tmp_path / "run" / "config.json"))
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    assert saved["xla"] is None and saved["xla_compiled"] is True
    assert summary["xla_compiled"] is True and summary["seconds_per_step"] > 0


@pytest.mark.slow
def test_no_xla_runs_tensorflow_kernels(prepared_data, tmp_path, fitted_models):
    train(
        tiny_config(
            prepared_data,
            tmp_path / "run",
            epochs=1,
            steps_per_epoch=1,
            devices=["/cpu:0"],
            xla=False,
            validation=False,
        )
    )
    (model,) = fitted_models
    assert model.jit_compile is False
    spec = (tf.TensorSpec((8, 8, 32, 32, 3), tf.float32), tf.TensorSpec((8, 4), tf.float32))
    with pytest.raises(ValueError, match="jit_compile=True"):
        _hlo(_step_tf_function(model.train_function), spec)


@pytest.mark.slow
def test_deterministic_cpu_runs_keep_xla_and_repeat_bitwise(prepared_data, tmp_path, fitted_models):
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    weights = []
    try:
        for name in ("a", "b"):
            train(
                tiny_config(
                    prepared_data,
                    tmp_path / name,
                    epochs=1,
                    steps_per_epoch=2,
                    devices=["/cpu:0"],
                    deterministic=True,
                    seed=5,
                    xla=True,
                    augmentation="scale_jitter",
                    flip=True,
                    validation=False,
                )
            )
            weights.append([w.numpy() for w in fitted_models[-1].weights])
            assert tf_config.is_op_determinism_enabled()
            assert fitted_models[-1].jit_compile is True
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert json.load(open(tmp_path / "a" / "summary.json"))["xla_compiled"] is True


def test_resolve_xla_decisions(monkeypatch):
    one = make_strategy(["/cpu:0"])
    two = make_strategy()  # conftest: two logical CPU devices
    assert resolve_xla(True, one).enabled
    assert resolve_xla(True, one, deterministic=True).enabled  # CPU: still XLA
    off = resolve_xla(False, one)
    assert not off.enabled and "--no-xla" in off.reason
    several = resolve_xla(True, two)
    assert not several.enabled and "2 replicas" in several.reason
    assert not resolve_xla(None, two, zoo_model=True).enabled

    # the default on one CPU: without XLA only a zoo model with oneDNN on
    def default(**kwargs):
        return resolve_xla(None, one, **{"zoo_model": True, "onednn": True, **kwargs})

    fastest = default()
    assert not fastest.enabled and "oneDNN kernels on" in fastest.reason
    for kwargs, reason in [
        ({"onednn": False}, "oneDNN kernels are off"),
        ({"zoo_model": False}, "a model of your own"),
        ({"deterministic": True}, "--deterministic"),
        ({"mixed_precision": True}, "--mixed-precision"),
    ]:
        decision = default(**kwargs)
        assert decision.enabled and reason in decision.reason, (kwargs, decision)
    assert resolve_xla(None, one, zoo_model=True).enabled is not onednn_enabled()

    monkeypatch.setattr(compilation, "_gpus", lambda: ["/gpu:0"])
    gpu = resolve_xla(True, one, deterministic=True)
    assert not gpu.enabled and "select-and-scatter" in gpu.reason
    assert resolve_xla(True, one).enabled
    assert default().enabled and "GPU" in default().reason


def test_onednn_choice_of_the_command_lines():
    avx2 = frozenset({"sse4_2", "avx2"})

    def choice(environ, **kwargs):
        return cli_choice(environ=environ, **{"machine": "x86_64", "flags": avx2, **kwargs})

    value, note = choice({})
    assert value == "1" and "with AVX2" in note
    for kwargs, environ, reason in [
        ({}, {ENV: "0"}, "as set by the user"),
        ({"deterministic": True}, {}, "--deterministic"),
        ({"machine": "aarch64"}, {}, "aarch64 CPU"),
        ({"flags": frozenset({"sse4_2"})}, {}, "without AVX2"),
    ]:
        value, note = choice(environ, **kwargs)
        assert value is None and reason in note, (kwargs, note)
    # TensorFlow is loaded in this process: too late to change anything
    with_avx2 = {"machine": "x86_64", "flags": avx2}
    if ENV not in os.environ:
        assert "loaded before" in prefer_onednn(**with_avx2) and ENV not in os.environ


def test_prefer_onednn_sets_the_variable_in_a_fresh_process():
    code = (
        "import os, sys; from training import onednn; "
        "print(onednn.prefer_onednn(flags=frozenset({'avx2'}), machine='x86_64')); "
        "assert 'tensorflow' not in sys.modules; "
        "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    note, value = result.stdout.strip().splitlines()
    assert note.startswith("oneDNN: on (TF_ENABLE_ONEDNN_OPTS=1") and value == "1"
    # the command line decides before anything imports TensorFlow (here it
    # stops at the missing --data, after the decision is printed)
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--data", "/nonexistent", "--run-dir", "r"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no such manifest" in result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("[train] oneDNN: ")]
    assert "TensorFlow loaded before" not in line, line


def test_compile_model_keeps_xla_under_op_determinism():
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 16, 16, 3))
        model.compile("sgd", "categorical_crossentropy", jit_compile=True)
        assert model.jit_compile is False  # what Keras does on its own
        compile_model(model, True, optimizer="sgd", loss="categorical_crossentropy")
        assert model.jit_compile is True
        assert tf_config.is_op_determinism_enabled()  # restored
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def _compiled_step(model, x, y):
    compile_model(
        model,
        True,
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="categorical_crossentropy",
    )
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert _step_tf_function(model.train_function) is not None
    assert model.jit_compile is True
    return loss


def _batch(shape, classes=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape)).astype("float32")
    return x, np.eye(classes, dtype="float32")[[0, 2]]


# One model per kind of block, narrow and shallow (XLA compiles the layer
# graph: its time grows with the number of layers; full widths took 1-2 min
# and gigabytes each, and a narrow ResNeXt-101 still 2 min): basic blocks
# (resnet18/34), bottleneck blocks (resnet50-200, wide_resnet50), grouped
# bottlenecks (resnext101), each one block per stage with the zoo's own block
# functions and stem, and inception modules (i3d: the zoo's builder with its
# stem, pools and Class Regularization blocks, one narrow module per group).
def _one_block_per_stage(block, planes, out_per_plane, **block_kwargs):
    def build(shape):
        return resnet3d_module._resnet(
            "shallow",
            block,
            (1, 1, 1, 1),
            planes,
            3,
            shape,
            True,
            None,
            planes[-1] * out_per_plane,
            block_kwargs=block_kwargs or None,
            stem_filters=planes[0],
        )

    return build


def _shallow_i3d(shape):
    """The zoo's I3D layout at 1/8 of its widths, one inception module per
    group: a stem convolution and pool, then per group its pool, the last
    module of the group (the zoo's `_inception`) and a Class Regularization
    block, and the head. (The whole I3D, or its full-width stem, took minutes
    to compile.)"""
    from keras_classreg.models import _common

    i3d_module = importlib.import_module("keras_classreg.models.i3d")
    classifier = _common.make_classifier(3, 1024 // 8, "softmax")
    inputs = keras.Input(shape, name="clips")
    x = _common.conv_bn(inputs, 8, 7, 2, "Conv3d_1a_7x7", False)
    x = keras.layers.MaxPooling3D(
        (1, 3, 3), strides=(1, 2, 2), padding="same", name="MaxPool3d_2a_3x3"
    )(x)
    for group, pool, rate in zip(
        i3d_module._GROUPS, i3d_module._GROUP_POOLS, i3d_module.I3D_AFFECTION_RATES
    ):
        if pool is not None:
            x = keras.layers.MaxPooling3D(pool[1], strides=2, padding="same", name=pool[0])(x)
        name = group[-1]
        filters = [f // 8 for f in i3d_module._MIXED[name]]
        x = i3d_module._inception(x, name, filters, False, 1e-5)
        x = _common.class_regularization_block(x, classifier, rate, f"{name}_classreg", None)
    return _common.head(x, classifier, 0.0, inputs, "shallow_i3d")


BLOCKS = {
    "basic": lambda shape: models.get(
        "resnet18_3d", num_classes=3, input_shape=shape, widen_factor=0.125
    ),
    "bottleneck": _one_block_per_stage(resnet3d_module._bottleneck_block, (8, 16, 32, 64), 4),
    "grouped_bottleneck": _one_block_per_stage(
        resnet3d_module._grouped_bottleneck_block,
        (32, 64, 128, 256),
        2,
        expansion=2,
        cardinality=4,
    ),
    "inception": _shallow_i3d,
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_each_kind_of_zoo_block_trains_compiled(kind):
    shape = (4, 32, 32, 3)
    x, y = _batch(shape)
    _compiled_step(BLOCKS[kind](shape), x, y)
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{"mixed_precision": True}, {"augment_on": "device"}],
    ids=["mixed_precision", "augment_on_device"],
)
def test_mixed_precision_and_device_augmentation_train_compiled(
    prepared_data, tmp_path, fitted_models, options
):
    train(
        tiny_config(
            prepared_data,
            tmp_path / "run",
            epochs=1,
            steps_per_epoch=1,
            devices=["/cpu:0"],
            validation=False,
            xla=True,
            **options,
        )
    )
    (model,) = fitted_models
    if options.get("augment_on") == "device":
        # ClipAugmentation runs inside the compiled step
        assert isinstance(model, DeviceAugmentedModel)
    assert model.jit_compile is True
    _step_tf_function(model.train_function)
    assert keras.config.dtype_policy().name == "float32"  # restored
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    assert summary["xla_compiled"] is True
    assert np.isfinite(summary["last_epoch_metrics"]["loss"])


def test_folded_blocks_compile():
    from test_train_support import tiny_c3d

    shape = (4, 16, 16, 3)
    x, _ = _batch(shape)
    model = tiny_c3d(3, input_shape=shape)
    folded = keras_classreg.fold_class_regularization(model)
    assert any(
        isinstance(layer, keras_classreg.FoldedClassRegularization) for layer in folded.layers
    )
    forward = tf.function(lambda t: folded(t, training=False), jit_compile=True)
    hlo = forward.experimental_get_compiler_ir(tf.constant(x))(stage="hlo")
    assert "convolution(" in hlo
    np.testing.assert_allclose(forward(x), model(x, training=False), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mixed_precision_zoo_model_trains_compiled():
    # the zoo's MaxPool3D has no float16 CPU kernel: only compiled
    shape = (4, 16, 16, 3)
    x, y = _batch(shape)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        # the zoo's stem (with its MaxPool3D) and one basic block per stage:
        # XLA's float16 compile time grows with the layer count, not widths
        model = _one_block_per_stage(resnet3d_module._basic_block, (8, 16, 32, 64), 1)(shape)
        _compiled_step(model, x, y)
    finally:
        keras.mixed_precision.set_global_policy("float32")
