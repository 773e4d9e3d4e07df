"""FLOPs of a Keras model for one clip, counted by TensorFlow's own profiler."""

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)


def flops(model, input_shape=None):
    """Floating-point operations of one forward pass on one clip.

    The graph of `model(x, training=False)` for a batch of one is frozen and
    handed to `tf.compat.v1.profiler` (`float_operation` view), which counts
    a multiply-add as 2 FLOPs (so divide by 2 for "MACs").

    Args:
        model: a built Keras model with a single input.
        input_shape: per-clip input shape without batch, default the model's.

    Returns:
        int, total FLOPs.

    Example:

    >>> import keras_classreg
    >>> model = keras_classreg.models.get("resnet18_3d", num_classes=4,
    ...                                   input_shape=(4, 32, 32, 3))
    >>> keras_classreg.flops(model) > 0
    True
    """
    if input_shape is None:
        input_shape = tuple(model.inputs[0].shape[1:])
    if any(dim is None for dim in input_shape):
        raise ValueError(
            "flops() needs a fully known per-clip input shape. "
            f"Received: input_shape={tuple(input_shape)!r}"
        )
    spec = tf.TensorSpec((1, *input_shape), model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(
        graph=frozen.graph,
        run_meta=tf.compat.v1.RunMetadata(),
        cmd="op",
        options=options,
    )
    return int(info.total_float_ops)
