"""Helpers of the training tests (no tests here): a tiny 3D CNN with the
zoo builders' signature, small enough for CPU tests in seconds.

Used in-process and, as `tests/test_train_support.py:tiny_c3d`, by
`python -m training.train --model ...` subprocesses.
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

TINY_AFFECTION_RATES = (0.2, 0.4)


def tiny_c3d(
    num_classes,
    input_shape=(4, 32, 32, 3),
    class_regularization=True,
    affection_rates=None,
    dropout=0.0,
    classifier_activation="softmax",
    synchronized_batchnorm=None,
    class_regularization_options=None,
    widths=(16, 32),
):
    """Two conv-BN-ReLU stages (`widths` channels), a Class Regularization
    block after each, global pooling and the softmax `classifier`."""
    check_input_shape(input_shape, "tiny_c3d")
    rates = resolve_affection_rates(affection_rates, TINY_AFFECTION_RATES, "tiny_c3d")
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, widths[1], classifier_activation)
    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = inputs
    for stage, (filters, strides) in enumerate(zip(widths, ((1, 2, 2), 2)), start=1):
        x = conv_bn(x, filters, 3, strides, f"stage{stage}", sync)
        if class_regularization:
            x = class_regularization_block(x, classifier, rates[stage - 1],
                                           f"stage{stage}_classreg",
                                           class_regularization_options)
    return head(x, classifier, dropout, inputs, "tiny_c3d")
