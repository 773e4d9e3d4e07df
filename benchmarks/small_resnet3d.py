"""A narrow 3D ResNet for CPU-sized reproduction studies.

The zoo's smallest model (`resnet18_3d`: 64-channel 7x7x7 stem, widths 64 to
512) is slow to train from scratch on 2 shared CPU cores. This builder keeps
its layout and layer names — a stem, 4 stages of basic residual blocks from
`keras_classreg.models.resnet3d`, one Class Regularization block after each
stage, global pooling and the softmax `Dense` classifier — with a 3x3x3
16-channel stem of spatial stride 2, no stem pooling, one block per stage and widths
(16, 32, 64, 128) ("ResNet-10-3D, width 1/4").

Use it as `--model benchmarks/small_resnet3d.py:small_resnet3d` with
`python -m training.train` or `python -m benchmarks.reproduce`.

>>> model = small_resnet3d(num_classes=5, input_shape=(8, 32, 32, 3))
>>> model.output_shape
(None, 5)
"""

from keras_classreg.models.resnet3d import _basic_block, _resnet

WIDTHS = (16, 32, 64, 128)


def small_resnet3d(
    num_classes,
    input_shape=(8, 32, 32, 3),
    class_regularization=True,
    affection_rates=None,
    dropout=0.0,
    synchronized_batchnorm=None,
    class_regularization_options=None,
):
    """ResNet-10-3D at a quarter of the width, with optional Class Regularization.

    Args: as the zoo's `resnet3d` (`affection_rates`: 4 floats, default
    `(0.1, 0.2, 0.3, 0.4)`).
    """
    return _resnet(
        "small_resnet3d",
        _basic_block,
        (1, 1, 1, 1),
        WIDTHS,
        num_classes,
        input_shape,
        class_regularization,
        affection_rates,
        WIDTHS[-1],
        dropout=dropout,
        synchronized_batchnorm=synchronized_batchnorm,
        class_regularization_options=class_regularization_options,
        stem_filters=WIDTHS[0],
        stem_kernel_size=3,
        stem_pool=False,
    )
