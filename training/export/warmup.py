"""TF Serving warm-up requests and the `classify` signature's input format.

`write_warmup_requests` writes one request per signature into
`assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog`s, TF Serving's format), which TF Serving and
`serving.server` replay before serving a version.
"""

import os

import numpy as np
import tensorflow as tf

from clipspec import signatures as names


def write_warmup_requests(export_dir, clip_format, signatures):
    """Writes TF Serving warm-up requests (one per signature) into
    `export_dir/assets.extra/tf_serving_warmup_requests`."""
    try:
        from tensorflow_serving.apis import (
            classification_pb2,
            predict_pb2,
            prediction_log_pb2,
        )
    except ImportError as error:
        raise ImportError(
            "Writing warm-up requests needs tensorflow-serving-api "
            "(`pip install keras-classreg[train]`); or export without them "
            "(--no-warmup / warmup=False)."
        ) from error
    clip = np.zeros(clip_format.input_shape, np.uint8)
    logs = []
    for name, signature in signatures.items():
        if signature.method_name == tf.saved_model.CLASSIFY_METHOD_NAME:
            request = classification_pb2.ClassificationRequest()
            request.model_spec.signature_name = name
            request.input.example_list.examples.append(clip_example(clip))
            logs.append(
                prediction_log_pb2.PredictionLog(
                    classify_log=prediction_log_pb2.ClassifyLog(request=request)
                )
            )
            continue
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for spec in signature.function.input_signature:
            shape = [1 if dim is None else dim for dim in spec.shape]
            if spec.name == names.CLIPS_INPUT and spec.shape[1] is None:
                shape = [1, *clip_format.input_shape]
            value = np.zeros(shape, spec.dtype.as_numpy_dtype)
            request.inputs[spec.name].CopyFrom(tf.make_tensor_proto(value))
        logs.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
        )
    path = os.path.join(export_dir, names.WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def clip_example(frames, quality=95):
    """A `tf.train.Example` for the `classify` signature: the uint8 frames
    `[T, H, W, 3]` JPEG-encoded, in order, in the bytes feature
    `image/encoded`."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            "Invalid value for argument `frames`. Expected uint8 frames "
            f"[T, H, W, 3]. Received: dtype={frames.dtype}, shape={frames.shape}"
        )
    encoded = [tf.io.encode_jpeg(frame, quality=quality).numpy() for frame in frames]
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                names.FRAMES_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))
            }
        )
    )
