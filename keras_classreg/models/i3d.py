"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017), with
Class Regularization after Mixed_3c, Mixed_4f and Mixed_5c ("48 + 3").

Layer names follow DeepMind's `kinetics-i3d` end points (`Conv3d_1a_7x7`,
`Mixed_4b_Branch_1_Conv3d_0b_3x3`, ...). Their model pads "SAME" as Keras
does, so no padding option is needed; `batchnorm_epsilon=1e-3` (Sonnet's
default) and `logits_pool=(2, 7, 7)` (their average pool before the logits)
make this model compute exactly what theirs computes, which
`keras_classreg.pretrained.load_kinetics_i3d` relies on.
"""

import keras

from keras_classreg.models._common import (
    check_epsilon,
    check_input_shape,
    class_regularization_block,
    conv_bn,
    head,
    make_classifier,
    resolve_affection_rates,
    use_synchronized_bn,
)
from keras_classreg.models.registry import MODELS

I3D_AFFECTION_RATES = (0.2, 0.3, 0.4)

# name -> (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3,
#          branch3 pool-proj 1x1)
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# The groups after which a block (and, before the next group, a pool) sits.
_GROUPS = (
    ("Mixed_3b", "Mixed_3c"),
    ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"),
    ("Mixed_5b", "Mixed_5c"),
)
_GROUP_POOLS = (None, ("MaxPool3d_4a_3x3", 3), ("MaxPool3d_5a_2x2", 2))


def _inception(x, name, filters, sync, eps):
    b0, b1a, b1b, b2a, b2b, b3 = filters
    branch0 = conv_bn(x, b0, 1, 1, f"{name}_Branch_0_Conv3d_0a_1x1", sync, epsilon=eps)
    branch1 = conv_bn(x, b1a, 1, 1, f"{name}_Branch_1_Conv3d_0a_1x1", sync, epsilon=eps)
    branch1 = conv_bn(branch1, b1b, 3, 1, f"{name}_Branch_1_Conv3d_0b_3x3", sync, epsilon=eps)
    branch2 = conv_bn(x, b2a, 1, 1, f"{name}_Branch_2_Conv3d_0a_1x1", sync, epsilon=eps)
    branch2 = conv_bn(branch2, b2b, 3, 1, f"{name}_Branch_2_Conv3d_0b_3x3", sync, epsilon=eps)
    branch3 = keras.layers.MaxPooling3D(
        3, strides=1, padding="same", name=f"{name}_Branch_3_MaxPool3d_0a_3x3"
    )(x)
    branch3 = conv_bn(branch3, b3, 1, 1, f"{name}_Branch_3_Conv3d_0b_1x1", sync, epsilon=eps)
    return keras.layers.Concatenate(name=name)([branch0, branch1, branch2, branch3])


@MODELS.register("i3d")
def i3d(
    num_classes=400,
    input_shape=(16, 224, 224, 3),
    class_regularization=True,
    affection_rates=None,
    dropout=0.5,
    classifier_activation="softmax",
    synchronized_batchnorm=None,
    class_regularization_options=None,
    batchnorm_epsilon=1e-5,
    logits_pool=None,
):
    """I3D (Inception-v1 inflated) with Class Regularization.

    Args:
        num_classes: number of action classes `K`.
        input_shape: `(T, H, W, 3)` clip shape.
        class_regularization: add a block after Mixed_3c, Mixed_4f, Mixed_5c.
        affection_rates: 3 floats; default `(0.2, 0.3, 0.4)`.
        dropout: rate before the classifier (0.5 as in the original).
        classifier_activation: `"softmax"` (default) or `None` for logits.
        synchronized_batchnorm: `None` = on when built under a multi-replica
            strategy.
        class_regularization_options: dict of extra `ClassRegularization`
            arguments (`use_bias`, `stop_classifier_gradient`,
            `normalization_range`).
        batchnorm_epsilon: of every batch norm (1e-3 in DeepMind's model,
            Sonnet's default).
        logits_pool: `None` (default): the classifier reads the global
            average of Mixed_5c. `(t, h, w)`: first a stride-1 "valid"
            average pool of that size (a layer `Logits_AvgPool3d`; each size
            clipped to the feature map), then the global average — DeepMind's
            head uses `(2, 7, 7)` and averages its logits over the remaining
            time steps, which is this, as the logits are linear. At 224 x 224
            with 16 or more frames the clipping never applies.

    Returns:
        a `keras_classreg.ClassRegModel` whose last layer is the Dense
        `classifier`.

    Example:

    >>> from keras_classreg.models import i3d
    >>> model = i3d(num_classes=5, input_shape=(8, 32, 32, 3))
    >>> model.output_shape
    (None, 5)
    """
    check_input_shape(input_shape, "i3d")
    check_epsilon(batchnorm_epsilon, "i3d")
    eps = batchnorm_epsilon
    rates = resolve_affection_rates(affection_rates, I3D_AFFECTION_RATES, "i3d")
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, 1024, classifier_activation)

    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = conv_bn(inputs, 64, 7, 2, "Conv3d_1a_7x7", sync, epsilon=eps)
    x = keras.layers.MaxPooling3D(
        (1, 3, 3), strides=(1, 2, 2), padding="same", name="MaxPool3d_2a_3x3"
    )(x)
    x = conv_bn(x, 64, 1, 1, "Conv3d_2b_1x1", sync, epsilon=eps)
    x = conv_bn(x, 192, 3, 1, "Conv3d_2c_3x3", sync, epsilon=eps)
    x = keras.layers.MaxPooling3D(
        (1, 3, 3), strides=(1, 2, 2), padding="same", name="MaxPool3d_3a_3x3"
    )(x)
    for group, pool, rate in zip(_GROUPS, _GROUP_POOLS, rates):
        if pool is not None:
            pool_name, size = pool
            x = keras.layers.MaxPooling3D(size, strides=2, padding="same", name=pool_name)(x)
        for name in group:
            x = _inception(x, name, _MIXED[name], sync, eps)
        if class_regularization:
            x = class_regularization_block(
                x, classifier, rate, f"{group[-1]}_classreg", class_regularization_options
            )
    if logits_pool is not None:
        x = _logits_pool(x, logits_pool)
    return head(x, classifier, dropout, inputs, "i3d")


def _logits_pool(x, logits_pool):
    pool = tuple(logits_pool) if not isinstance(logits_pool, int) else (logits_pool,) * 3
    if len(pool) != 3 or not all(
        isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pool
    ):
        raise ValueError(
            "Invalid value for argument `logits_pool` of i3d. Expected None or "
            f"3 positive ints (t, h, w). Received: logits_pool={logits_pool!r}"
        )
    size = tuple(min(p, d) for p, d in zip(pool, x.shape[1:4]))
    return keras.layers.AveragePooling3D(size, strides=1, padding="valid", name="Logits_AvgPool3d")(
        x
    )
