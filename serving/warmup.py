"""SavedModel warm-up: TF Serving's `servables/tensorflow/
saved_model_warmup.cc`. The requests logged in a version's
`assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog`s) are replayed before the version serves, so its first
real request does not pay for graph tracing and kernel selection."""

import os

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from clipspec.signatures import WARMUP_FILE

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def run_warmup(servable, iterations=1):
    """Replays `servable`'s warm-up file (predict, classify, regress and
    multi_inference logs, as TF Serving), each record `iterations` times;
    returns the number of records run. A failing request fails the load."""
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.isfile(path):
        return 0
    handlers = {
        "predict_log": lambda log: servable.predict(log.request),
        "classify_log": lambda log: servable.classify(log.request),
        "regress_log": lambda log: servable.regress(log.request),
        "multi_inference_log": lambda log: servable.multi_inference(log.request),
    }
    count = 0
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind not in handlers:
            raise ValueError(
                f"{path}: warm-up record {count + 1} is a {kind}; supported: {', '.join(handlers)}."
            )
        for _ in range(iterations):
            handlers[kind](getattr(log, kind))
        count += 1
    return count


__all__ = ["MAX_WARMUP_RECORDS", "run_warmup"]
