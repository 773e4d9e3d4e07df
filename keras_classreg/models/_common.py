"""Pieces shared by the model families: conv-BN-ReLU, the head, the blocks."""

import keras
import tensorflow as tf

from keras_classreg.classreg_model import ClassRegModel
from keras_classreg.layers.class_regularization import ClassRegularization
from keras_classreg.layers.space_to_depth_conv import SpaceToDepthConv3D


def use_synchronized_bn(synchronized_batchnorm):
    """Resolves the `synchronized_batchnorm` option of the builders.

    `None` (the default) means: synchronized when the model is built inside a
    distribution strategy with more than one replica. Plain BatchNorm
    statistics drift apart per replica under `MirroredStrategy` in Keras 3,
    so a distributed model would predict differently from its export.
    """
    if synchronized_batchnorm is not None:
        return bool(synchronized_batchnorm)
    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1


PADDINGS = ("same", "symmetric")


def check_padding(padding, model_name):
    if padding not in PADDINGS:
        raise ValueError(
            f"Invalid value for argument `padding` of {model_name}. Expected "
            f"one of {PADDINGS}. Received: padding={padding!r}"
        )


def check_epsilon(epsilon, model_name):
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(
            f"Invalid value for argument `batchnorm_epsilon` of {model_name}. "
            f"Expected a float > 0. Received: batchnorm_epsilon={epsilon!r}"
        )


def triple(value):
    """An int or a 3-sequence as a tuple of 3 ints."""
    if isinstance(value, int):
        return (value,) * 3
    return tuple(int(v) for v in value)


def needs_explicit_padding(kernel_size, strides):
    """Whether Keras "same" pads differently from PyTorch's symmetric
    `kernel_size // 2`: only for a strided axis with a kernel wider than 1
    (for stride 1 and odd kernels the two agree exactly)."""
    return any(s > 1 and k > 1 for k, s in zip(triple(kernel_size), triple(strides)))


def symmetric_pad(x, kernel_size, name):
    """Zero-pads `kernel_size // 2` on both sides of T, H and W (PyTorch's
    padding of odd kernels); the next layer then uses "valid"."""
    return keras.layers.ZeroPadding3D(
        tuple((k // 2, k // 2) for k in triple(kernel_size)), name=name
    )(x)


def batch_norm(x, name, synchronized, epsilon=1e-5):
    return keras.layers.BatchNormalization(
        epsilon=epsilon, momentum=0.9, synchronized=synchronized, name=name
    )(x)


def conv_bn(
    x,
    filters,
    kernel_size,
    strides=1,
    name="",
    synchronized=False,
    groups=1,
    activation=True,
    padding="same",
    epsilon=1e-5,
):
    """Conv3D (no bias) → BatchNorm → optional ReLU, with stable layer names.

    `padding="same"` is Keras/TensorFlow "SAME" (a strided convolution pads
    more at the end than at the start); `"symmetric"` pads `kernel_size // 2`
    on both sides as PyTorch does, with an explicit `ZeroPadding3D` layer
    named `{name}_pad` before a "valid" convolution where the two differ.
    The convolution and batch-norm layer names do not depend on it.

    The convolution is a `SpaceToDepthConv3D`: a `keras.layers.Conv3D` whose
    strided gradients avoid the CPU kernels that are tens of times slower
    than the convolution itself (same weights, weight names and outputs).
    """
    conv_padding = "same"
    if padding == "symmetric" and needs_explicit_padding(kernel_size, strides):
        x = symmetric_pad(x, kernel_size, f"{name}_pad")
        conv_padding = "valid"
    x = SpaceToDepthConv3D(
        filters,
        kernel_size,
        strides=strides,
        padding=conv_padding,
        use_bias=False,
        groups=groups,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = batch_norm(x, f"{name}_bn", synchronized, epsilon)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def resolve_affection_rates(affection_rates, defaults, model_name):
    rates = tuple(defaults if affection_rates is None else affection_rates)
    if len(rates) != len(defaults):
        raise ValueError(
            f"Invalid value for argument `affection_rates` of {model_name}. "
            f"Expected {len(defaults)} rates, one per Class Regularization "
            f"block. Received: affection_rates={affection_rates!r}"
        )
    return rates


def make_classifier(num_classes, num_features, activation):
    """The final Dense classifier, built up front so blocks can reference it.

    It computes in float32 (also under `mixed_float16`) as Keras recommends
    for the last layer.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected a positive "
            f"int. Received: num_classes={num_classes!r}"
        )
    classifier = keras.layers.Dense(
        num_classes, activation=activation, dtype="float32", name="classifier"
    )
    classifier.build((None, num_features))
    return classifier


def class_regularization_block(x, classifier, rate, name, options):
    return ClassRegularization(
        affection_rate=rate, classifier=classifier, name=name, **(options or {})
    )(x)


def check_input_shape(input_shape, model_name):
    if len(input_shape) != 4 or input_shape[-1] != 3:
        raise ValueError(
            f"Invalid value for argument `input_shape` of {model_name}. "
            "Expected (T, H, W, 3). "
            f"Received: input_shape={tuple(input_shape)!r}"
        )


def head(x, classifier, dropout, inputs, model_name):
    """Global average pool → dropout → classifier → `ClassRegModel`."""
    x = keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return ClassRegModel(inputs, classifier(x), name=model_name)
