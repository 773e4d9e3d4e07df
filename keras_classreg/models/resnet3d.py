"""3D ResNets (Hara, Kataoka & Satoh, CVPR 2018 layouts) with Class Regularization.

ResNet-18/34 use basic blocks, ResNet-50/101/152 bottlenecks (expansion 4),
Wide ResNet-50-3D wide bottlenecks (width x2, expansion 2) and
ResNeXt-101-3D grouped bottlenecks (cardinality 32, expansion 2). Stem:
7x7x7 conv, stride (1, 2, 2), then 3x3x3 max pool, stride 2. Stages 2-4
down-sample by 2 in time and space; projection shortcuts (type B). A Class
Regularization block follows each of the four stages.
"""

import keras

from keras_classreg.models._common import (
    check_input_shape,
    class_regularization_block,
    conv_bn,
    head,
    make_classifier,
    resolve_affection_rates,
    use_synchronized_bn,
)

RESNET_AFFECTION_RATES = (0.1, 0.2, 0.3, 0.4)

# depth -> (block kind, blocks per stage)
_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _basic_block(x, planes, strides, name, sync, **_):
    shortcut = x
    out = conv_bn(x, planes, 3, strides, f"{name}_1", sync)
    out = conv_bn(out, planes, 3, 1, f"{name}_2", sync, activation=False)
    return _residual(shortcut, out, planes, strides, name, sync)


def _bottleneck_block(x, planes, strides, name, sync, width=None,
                      expansion=4, groups=1):
    shortcut = x
    width = planes if width is None else width
    out = conv_bn(x, width, 1, 1, f"{name}_1", sync)
    out = conv_bn(out, width, 3, strides, f"{name}_2", sync, groups=groups)
    out = conv_bn(out, planes * expansion, 1, 1, f"{name}_3", sync,
                  activation=False)
    return _residual(shortcut, out, planes * expansion, strides, name, sync)


def _residual(shortcut, out, filters, strides, name, sync):
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = conv_bn(shortcut, filters, 1, strides, f"{name}_shortcut",
                           sync, activation=False)
    out = keras.layers.Add(name=f"{name}_add")([shortcut, out])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def _resnet(
    model_name,
    block,
    blocks_per_stage,
    planes,
    num_classes,
    input_shape,
    class_regularization,
    affection_rates,
    out_features,
    block_kwargs=None,
    dropout=0.0,
    classifier_activation="softmax",
    synchronized_batchnorm=None,
    class_regularization_options=None,
    stem_filters=64,
    stem_kernel_size=7,
    stem_pool=True,
):
    check_input_shape(input_shape, model_name)
    rates = resolve_affection_rates(affection_rates, RESNET_AFFECTION_RATES,
                                    model_name)
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, out_features,
                                 classifier_activation)

    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = conv_bn(inputs, stem_filters, stem_kernel_size, (1, 2, 2), "stem", sync)
    if stem_pool:
        x = keras.layers.MaxPooling3D(3, strides=2, padding="same",
                                      name="stem_pool")(x)
    for stage, (num_blocks, stage_planes) in enumerate(
        zip(blocks_per_stage, planes), start=1
    ):
        for index in range(num_blocks):
            strides = 2 if (stage > 1 and index == 0) else 1
            x = block(x, stage_planes, strides, f"stage{stage}_block{index + 1}",
                      sync, **(block_kwargs or {}))
        if class_regularization:
            x = class_regularization_block(x, classifier, rates[stage - 1],
                                           f"stage{stage}_classreg",
                                           class_regularization_options)
    return head(x, classifier, dropout, inputs, model_name)



def resnet3d(
    depth=50,
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    **kwargs,
):
    """3D ResNet-18/34/50/101/152 (Hara et al. 2018) with Class Regularization.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: number of action classes `K`.
        input_shape: `(T, H, W, 3)` clip shape.
        class_regularization: add a block after each of the 4 stages.
        affection_rates: 4 floats; default `(0.1, 0.2, 0.3, 0.4)`.
        **kwargs: `dropout` (before the classifier, default 0),
            `classifier_activation` (default `"softmax"`; `None` for
            logits), `synchronized_batchnorm` (`None`: on when built under a
            multi-replica strategy), `class_regularization_options` (dict of
            `ClassRegularization` arguments: `use_bias`,
            `stop_classifier_gradient`, `normalization_range`).

    Returns:
        a `keras_classreg.ClassRegModel` whose last layer is the Dense
        `classifier`.

    Example:

    >>> from keras_classreg.models import resnet3d
    >>> model = resnet3d(18, num_classes=5, input_shape=(4, 32, 32, 3))
    >>> model.output_shape
    (None, 5)
    """
    if depth not in _DEPTHS:
        raise ValueError(
            "Invalid value for argument `depth`. Expected one of "
            f"{sorted(_DEPTHS)}. Received: depth={depth!r}"
        )
    kind, blocks = _DEPTHS[depth]
    if kind == "basic":
        block, out_features = _basic_block, 512
    else:
        block, out_features = _bottleneck_block, 2048
    return _resnet(f"resnet{depth}_3d", block, blocks, (64, 128, 256, 512),
                   num_classes, input_shape, class_regularization,
                   affection_rates, out_features, **kwargs)


def wide_resnet50_3d(
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    widen_factor=2,
    **kwargs,
):
    """Wide ResNet-50-3D (Hara et al. 2018: bottleneck width x`widen_factor`,
    expansion 2) with Class Regularization. Other arguments as `resnet3d`."""
    planes = tuple(p * widen_factor for p in (64, 128, 256, 512))
    return _resnet("wide_resnet50_3d", _bottleneck_block, (3, 4, 6, 3), planes,
                   num_classes, input_shape, class_regularization,
                   affection_rates, planes[-1] * 2,
                   block_kwargs={"expansion": 2}, **kwargs)


def resnext101_3d(
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    cardinality=32,
    **kwargs,
):
    """ResNeXt-101-3D (Hara et al. 2018: cardinality 32, grouped 3x3x3
    convolutions, expansion 2) with Class Regularization. Other arguments as
    `resnet3d`."""
    planes = (128, 256, 512, 1024)
    return _resnet("resnext101_3d", _bottleneck_block, (3, 4, 23, 3), planes,
                   num_classes, input_shape, class_regularization,
                   affection_rates, planes[-1] * 2,
                   block_kwargs={"expansion": 2, "groups": cardinality},
                   **kwargs)
