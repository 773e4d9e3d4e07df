"""`SpaceToDepthConv3D` computes what `keras.layers.Conv3D` computes — outputs,
input and kernel gradients — with and without XLA, and the zoo uses it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_classreg import models
from keras_classreg.layers import SpaceToDepthConv3D
from keras_classreg.layers.space_to_depth_conv import _axis_plan

CASES = [
    # input shape, kernel, strides, padding, groups
    ((2, 5, 9, 8, 4), 3, (2, 2, 2), "same", 1),
    ((2, 8, 16, 15, 3), 7, (1, 2, 2), "same", 1),  # the ResNets' stem
    ((1, 8, 16, 16, 3), 7, (2, 2, 2), "same", 1),  # I3D's stem
    ((2, 5, 9, 8, 4), 1, (2, 2, 2), "same", 1),  # projection shortcut
    ((2, 5, 9, 8, 8), 3, (2, 2, 2), "same", 4),  # ResNeXt (grouped)
    ((2, 5, 9, 8, 4), (3, 7, 7), (3, 2, 1), "valid", 2),
    ((1, 1, 4, 4, 8), 3, (1, 1, 1), "same", 1),  # 1 frame: taps pruned
    ((1, 1, 7, 7, 8), 3, (2, 2, 2), "same", 1),
    ((2, 10, 22, 21, 3), 7, (1, 2, 2), "valid", 1),  # padding="symmetric" stem
]


def _outputs_and_gradients(layer, x, jit):
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return (y, *tape.gradient(loss, [x, layer.kernel]))

    return tf.function(step, jit_compile=jit)(x)


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["tf", "xla"])
@pytest.mark.parametrize("shape, kernel, strides, padding, groups", CASES)
def test_same_outputs_and_gradients_as_conv3d(shape, kernel, strides, padding, groups, jit):
    x = tf.constant(np.random.default_rng(0).standard_normal(shape), tf.float32)
    plain = keras.layers.Conv3D(
        8, kernel, strides=strides, padding=padding, groups=groups, use_bias=False
    )
    fast = SpaceToDepthConv3D(
        8, kernel, strides=strides, padding=padding, groups=groups, use_bias=False
    )
    plain.build(shape)
    fast.build(shape)
    fast.set_weights(plain.get_weights())
    expected = _outputs_and_gradients(plain, x, jit)
    received = _outputs_and_gradients(fast, x, jit)
    for name, a, b in zip(("output", "input gradient", "kernel gradient"), expected, received):
        assert a.shape == b.shape, name
        scale = float(tf.reduce_max(tf.abs(a)))
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-6 * scale, err_msg=name)


def test_axis_plans():
    # (size, kernel, stride, padding, rearrange) ->
    # (before, after, first tap, taps, factor, step)
    # stem, 112 -> 56: 7 taps, 3 before, rearranged by 2 into 4 taps of 2
    assert _axis_plan(112, 7, 2, "same", True) == (2, 4, 0, 7, 2, 1)
    # a 3-tap kernel on 1 frame only uses its middle tap, no padding
    assert _axis_plan(1, 3, 1, "same", False) == (0, 0, 1, 1, 1, 1)
    assert _axis_plan(1, 3, 2, "same", True) == (0, 0, 1, 1, 1, 2)
    # a strided 1-tap kernel is a strided slice
    assert _axis_plan(28, 1, 2, "same", True) == (0, -1, 0, 1, 1, 2)


def test_config_round_trip_and_weights_interchange_with_conv3d():
    layer = SpaceToDepthConv3D(4, 3, strides=(1, 2, 2), padding="same", name="c")
    layer.build((None, 4, 8, 8, 3))
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is SpaceToDepthConv3D and clone.get_config() == layer.get_config()
    plain = keras.layers.Conv3D.from_config(layer.get_config())
    plain.build((None, 4, 8, 8, 3))
    plain.set_weights(layer.get_weights())
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_zoo_convolutions_are_space_to_depth_convolutions():
    for name, options in (
        ("resnet18_3d", {}),
        ("i3d", {}),
        ("resnet34_3d", {"padding": "symmetric", "shortcut": "A"}),
    ):
        model = models.get(name, num_classes=3, input_shape=(4, 32, 32, 3), **options)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
        assert convs and all(isinstance(conv, SpaceToDepthConv3D) for conv in convs)
        assert any(max(conv.strides) > 1 for conv in convs)
