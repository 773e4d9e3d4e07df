"""A narrow 3D ResNet for CPU-sized reproduction studies.

The zoo's smallest model (`resnet18_3d`: 64-channel 7x7x7 stem, widths 64 to
512) is slow to train from scratch on 2 shared CPU cores. This builder keeps
its layout and layer names — a stem, 4 stages of basic residual blocks from
`keras_classreg.models.resnet3d`, one Class Regularization block after each
stage, global pooling and the softmax `Dense` classifier — with a 3x3x3
16-channel stem of spatial stride 2, no stem pooling, one block per stage and widths
(16, 32, 64, 128) ("ResNet-10-3D, width 1/4").

Use it as `--model benchmarks/small_resnet3d.py:small_resnet3d` with
`python -m training.train` or `benchmarks/reproduce.py`.

>>> model = small_resnet3d(num_classes=5, input_shape=(8, 32, 32, 3))
>>> model.output_shape
(None, 5)
"""

import keras

from keras_classreg.models import RESNET_AFFECTION_RATES
from keras_classreg.models._common import (
    check_input_shape,
    class_regularization_block,
    conv_bn,
    head,
    make_classifier,
    resolve_affection_rates,
    use_synchronized_bn,
)
from keras_classreg.models.resnet3d import _basic_block

WIDTHS = (16, 32, 64, 128)


def small_resnet3d(num_classes, input_shape=(8, 32, 32, 3), class_regularization=True,
                   affection_rates=None, dropout=0.0, synchronized_batchnorm=None,
                   class_regularization_options=None):
    """ResNet-10-3D at a quarter of the width, with optional Class Regularization.

    Args: as the zoo's `resnet3d` (`affection_rates`: 4 floats, default
    `(0.1, 0.2, 0.3, 0.4)`).
    """
    name = "small_resnet3d"
    check_input_shape(input_shape, name)
    rates = resolve_affection_rates(affection_rates, RESNET_AFFECTION_RATES, name)
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, WIDTHS[-1], "softmax")
    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = conv_bn(inputs, WIDTHS[0], 3, (1, 2, 2), "stem", sync)
    for stage, planes in enumerate(WIDTHS, start=1):
        x = _basic_block(x, planes, 1 if stage == 1 else 2, f"stage{stage}_block1", sync)
        if class_regularization:
            x = class_regularization_block(x, classifier, rates[stage - 1],
                                           f"stage{stage}_classreg",
                                           class_regularization_options)
    return head(x, classifier, dropout, inputs, name)
