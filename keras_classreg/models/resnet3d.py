"""3D ResNets (Hara, Kataoka & Satoh, CVPR 2018 layouts) with Class Regularization.

ResNet-18/34 use basic blocks, ResNet-50/101/152/200 bottlenecks (expansion
4), Wide ResNet-50-3D wide bottlenecks (width x2, expansion 2) and
ResNeXt-101-3D grouped bottlenecks (cardinality 32, expansion 2). Stem:
7x7x7 conv, stride (1, 2, 2), then 3x3x3 max pool, stride 2. Stages 2-4
down-sample by 2 in time and space; projection shortcuts (type B) or, with
`shortcut="A"`, Hara et al.'s parameter-free zero-padding shortcuts. A Class
Regularization block follows each of the four stages.

Options that make a model compute exactly what Hara et al.'s PyTorch models
compute (`keras_classreg.pretrained` sets them when it loads their weights):
`padding="symmetric"` (PyTorch pads `k // 2` on both sides; Keras "same"
pads a stride-2 layer one more at the end), `batchnorm_epsilon=1e-5`
(PyTorch's default, also this zoo's), `stem_kernel_size=(t, 7, 7)` and
`stem_strides=(t_stride, 2, 2)` (their `conv1_t_size` / `conv1_t_stride`),
`stem_pool=False` (`--no_max_pool`), `stem_filters` and `widen_factor`.
"""

import functools

import keras

from keras_classreg.layers.zero_padding_shortcut import ZeroPaddingShortcut
from keras_classreg.models._common import (
    check_epsilon,
    check_input_shape,
    check_padding,
    class_regularization_block,
    conv_bn,
    head,
    make_classifier,
    resolve_affection_rates,
    symmetric_pad,
    use_synchronized_bn,
)
from keras_classreg.models.registry import MODELS

RESNET_AFFECTION_RATES = (0.1, 0.2, 0.3, 0.4)
SHORTCUTS = ("A", "B")

# depth -> (block kind, blocks per stage)
_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def _basic_block(x, planes, strides, name, sync, padding="same", epsilon=1e-5, shortcut="B"):
    residual = x
    out = conv_bn(x, planes, 3, strides, f"{name}_1", sync, padding=padding, epsilon=epsilon)
    out = conv_bn(
        out, planes, 3, 1, f"{name}_2", sync, activation=False, padding=padding, epsilon=epsilon
    )
    return _residual(residual, out, planes, strides, name, sync, padding, epsilon, shortcut)


def _bottleneck_block(
    x,
    planes,
    strides,
    name,
    sync,
    width=None,
    expansion=4,
    groups=1,
    padding="same",
    epsilon=1e-5,
    shortcut="B",
):
    residual = x
    width = planes if width is None else width
    out = conv_bn(x, width, 1, 1, f"{name}_1", sync, padding=padding, epsilon=epsilon)
    out = conv_bn(
        out, width, 3, strides, f"{name}_2", sync, groups=groups, padding=padding, epsilon=epsilon
    )
    out = conv_bn(
        out,
        planes * expansion,
        1,
        1,
        f"{name}_3",
        sync,
        activation=False,
        padding=padding,
        epsilon=epsilon,
    )
    return _residual(
        residual, out, planes * expansion, strides, name, sync, padding, epsilon, shortcut
    )


def _grouped_bottleneck_block(
    x, planes, strides, name, sync, cardinality=32, expansion=2, **kwargs
):
    """ResNeXt bottleneck: `cardinality * (planes // 32)` channels in the
    grouped 3x3x3 convolution (Hara et al.'s `mid_planes`)."""
    return _bottleneck_block(
        x,
        planes,
        strides,
        name,
        sync,
        width=cardinality * (planes // 32),
        expansion=expansion,
        groups=cardinality,
        **kwargs,
    )


def _residual(
    residual, out, filters, strides, name, sync, padding="same", epsilon=1e-5, shortcut="B"
):
    if strides != 1 or residual.shape[-1] != filters:
        if shortcut == "A":
            residual = ZeroPaddingShortcut(filters, strides, name=f"{name}_shortcut")(residual)
        else:
            residual = conv_bn(
                residual,
                filters,
                1,
                strides,
                f"{name}_shortcut",
                sync,
                activation=False,
                padding=padding,
                epsilon=epsilon,
            )
    out = keras.layers.Add(name=f"{name}_add")([residual, out])
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
    stem_strides=(1, 2, 2),
    stem_pool=True,
    shortcut="B",
    padding="same",
    batchnorm_epsilon=1e-5,
):
    check_input_shape(input_shape, model_name)
    check_padding(padding, model_name)
    check_epsilon(batchnorm_epsilon, model_name)
    if shortcut not in SHORTCUTS:
        raise ValueError(
            f"Invalid value for argument `shortcut` of {model_name}. Expected "
            f"'A' (zero-padding) or 'B' (projection). Received: shortcut={shortcut!r}"
        )
    rates = resolve_affection_rates(affection_rates, RESNET_AFFECTION_RATES, model_name)
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, out_features, classifier_activation)
    options = dict(padding=padding, epsilon=batchnorm_epsilon, shortcut=shortcut)

    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = conv_bn(
        inputs,
        stem_filters,
        stem_kernel_size,
        stem_strides,
        "stem",
        sync,
        padding=padding,
        epsilon=batchnorm_epsilon,
    )
    if stem_pool:
        if padding == "symmetric":
            # Zeros instead of PyTorch's -inf padding give the same maxima:
            # the pool follows a ReLU, so every window holds a value >= 0.
            x = symmetric_pad(x, 3, "stem_pool_pad")
        x = keras.layers.MaxPooling3D(
            3, strides=2, padding="valid" if padding == "symmetric" else "same", name="stem_pool"
        )(x)
    for stage, (num_blocks, stage_planes) in enumerate(zip(blocks_per_stage, planes), start=1):
        for index in range(num_blocks):
            strides = 2 if (stage > 1 and index == 0) else 1
            x = block(
                x,
                stage_planes,
                strides,
                f"stage{stage}_block{index + 1}",
                sync,
                **(block_kwargs or {}),
                **options,
            )
        if class_regularization:
            x = class_regularization_block(
                x,
                classifier,
                rates[stage - 1],
                f"stage{stage}_classreg",
                class_regularization_options,
            )
    return head(x, classifier, dropout, inputs, model_name)


def _widths(base, widen_factor, argument="widen_factor"):
    if (
        isinstance(widen_factor, bool)
        or not isinstance(widen_factor, (int, float))
        or widen_factor <= 0
    ):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a number > 0. "
            f"Received: {argument}={widen_factor!r}"
        )
    widths = tuple(int(p * widen_factor) for p in base)
    if min(widths) < 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`: it leaves a stage "
            f"without channels ({widths}). Received: {argument}={widen_factor!r}"
        )
    return widths


def resnet3d(
    depth=50,
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    widen_factor=1.0,
    **kwargs,
):
    """3D ResNet-18/34/50/101/152/200 (Hara et al. 2018) with Class
    Regularization.

    Args:
        depth: 18, 34, 50, 101, 152 or 200.
        num_classes: number of action classes `K`.
        input_shape: `(T, H, W, 3)` clip shape.
        class_regularization: add a block after each of the 4 stages.
        affection_rates: 4 floats; default `(0.1, 0.2, 0.3, 0.4)`.
        widen_factor: multiplies every width, the stem's included (Hara et
            al.'s `--resnet_widen_factor`: `int(64 * widen_factor)` ...);
            1.0 gives the published sizes.
        **kwargs: `dropout` (before the classifier, default 0),
            `classifier_activation` (default `"softmax"`; `None` for
            logits), `synchronized_batchnorm` (`None`: on when built under a
            multi-replica strategy), `class_regularization_options` (dict of
            `ClassRegularization` arguments: `use_bias`,
            `stop_classifier_gradient`, `normalization_range`), and the
            architecture options `shortcut` (`"B"` projection, default, or
            `"A"` zero-padding), `padding` (`"same"`, default, or
            `"symmetric"` as PyTorch), `batchnorm_epsilon` (default 1e-5),
            `stem_filters`, `stem_kernel_size` (int or `(t, h, w)`, default
            7), `stem_strides` (default `(1, 2, 2)`), `stem_pool` (default
            True).

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
    planes = _widths((64, 128, 256, 512), widen_factor)
    kwargs.setdefault("stem_filters", planes[0])
    if kind == "basic":
        block, out_features = _basic_block, planes[-1]
    else:
        block, out_features = _bottleneck_block, planes[-1] * 4
    return _resnet(
        f"resnet{depth}_3d",
        block,
        blocks,
        planes,
        num_classes,
        input_shape,
        class_regularization,
        affection_rates,
        out_features,
        **kwargs,
    )


@MODELS.register("wide_resnet50_3d")
def wide_resnet50_3d(
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    widen_factor=2,
    **kwargs,
):
    """Wide ResNet-50-3D (Hara et al. 2018: bottleneck widths
    `64 * widen_factor, ...`, expansion 2) with Class Regularization.

    The stem keeps 64 filters (Hara et al.'s 2018 layout and their published
    `wideresnet-50-kinetics.pth`; their 2020 code widens it too: pass
    `stem_filters=64 * widen_factor`). Other arguments as `resnet3d`."""
    planes = _widths((64, 128, 256, 512), widen_factor)
    return _resnet(
        "wide_resnet50_3d",
        _bottleneck_block,
        (3, 4, 6, 3),
        planes,
        num_classes,
        input_shape,
        class_regularization,
        affection_rates,
        planes[-1] * 2,
        block_kwargs={"expansion": 2},
        **kwargs,
    )


@MODELS.register("resnext101_3d")
def resnext101_3d(
    num_classes=400,
    input_shape=(16, 112, 112, 3),
    class_regularization=True,
    affection_rates=None,
    cardinality=32,
    widen_factor=1.0,
    **kwargs,
):
    """ResNeXt-101-3D (Hara et al. 2018: stage widths 128, 256, 512, 1024;
    grouped 3x3x3 convolutions of `cardinality * (width // 32)` channels in
    `cardinality` groups; expansion 2) with Class Regularization.

    `widen_factor` scales the stage widths (1.0: the published sizes; the
    stem keeps 64 filters unless `stem_filters` is given). Other arguments as
    `resnet3d`."""
    if isinstance(cardinality, bool) or not isinstance(cardinality, int) or cardinality < 1:
        raise ValueError(
            "Invalid value for argument `cardinality`. Expected a positive "
            f"int. Received: cardinality={cardinality!r}"
        )
    planes = _widths((128, 256, 512, 1024), widen_factor)
    if planes[0] // 32 < 1:
        raise ValueError(
            "Invalid value for argument `widen_factor` of resnext101_3d: the "
            f"first stage width {planes[0]} leaves no channels per group "
            f"(cardinality * (width // 32)). Received: widen_factor={widen_factor!r}"
        )
    return _resnet(
        "resnext101_3d",
        _grouped_bottleneck_block,
        (3, 4, 23, 3),
        planes,
        num_classes,
        input_shape,
        class_regularization,
        affection_rates,
        planes[-1] * 2,
        block_kwargs={"expansion": 2, "cardinality": cardinality},
        **kwargs,
    )


for _depth in (18, 34, 50, 101, 152, 200):
    MODELS.add(f"resnet{_depth}_3d", functools.partial(resnet3d, _depth))
