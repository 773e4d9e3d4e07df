"""Videos through a served model: the file decoded with PyAV, the test-time
views sampled exactly as evaluation does, as the model's `ClipFormat` (read
from the server) says, sent in Predict calls, and the class probabilities
averaged over the views (the video-level score). Works over any client of
`serving.client_base` (gRPC or REST).

>>> result = classify_video(client, "classreg", "a.mp4")       # doctest: +SKIP
>>> result.top_k[0]                                            # doctest: +SKIP
('cartwheel', 0.83)
"""

import dataclasses

import numpy as np

from clipspec import signatures as names
from serving.client_base import model_spec

DEFAULT_VIEWS_PER_REQUEST = 8


@dataclasses.dataclass
class VideoPrediction:
    """What `classify_video` returns for one video."""

    path: str
    top_k: list  # [(class name, mean probability)], best first
    probabilities: np.ndarray  # float32 [K], mean over the views
    num_views: int
    num_frames: int
    fps: float
    model_version: int

    def to_json(self):
        return {
            "path": self.path,
            "top_k": [
                {"class": name, "score": round(float(score), 6)} for name, score in self.top_k
            ],
            "num_views": self.num_views,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "model_version": self.model_version,
        }


def video_views(path, clip_format):
    """Decodes `path` (PyAV, at the format's short side) and samples the
    test-time views exactly as evaluation does: uint8
    `[num_clips * num_crops, T, S, S, 3]`, the decoded frame count and fps."""
    from clipspec.decode import decode_video
    from clipspec.sampling import eval_views

    frames, fps = decode_video(path, short_side=clip_format.short_side)
    views = np.asarray(
        eval_views(
            frames,
            clip_format.clip_length,
            clip_format.stride,
            clip_format.crop_size,
            clip_format.num_clips,
            clip_format.num_crops,
            clip_format.short_video,
        ),
        np.uint8,
    )
    return views, len(frames), float(fps)


def model_clip_format(client, model, version=None, **overrides):
    """The model's `ClipFormat` (from the server) with `overrides`
    (`clip_length`, `crop_size`, `stride`, `num_clips`, `num_crops`,
    `short_side`; `None` values are ignored)."""
    return client.clip_format(model, version).replace(**overrides)


def classify_video(
    client,
    model,
    path,
    top_k=5,
    version=None,
    views_per_request=DEFAULT_VIEWS_PER_REQUEST,
    **overrides,
):
    """Classifies one video file through the server.

    The clips are cut as the model's `ClipFormat` says (read from the
    server; `overrides` change fields, see `model_clip_format`). The views
    go in Predict calls of up to `views_per_request` clips
    (`serving_default`; after the first call the version it answered with is
    requested, so a version swap mid-video cannot mix models); the
    video-level score is the mean of the views' probabilities.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from clipspec.decode import check_video_file

    check_video_file(path)  # before asking the server anything
    if (
        isinstance(views_per_request, bool)
        or not isinstance(views_per_request, int)
        or views_per_request < 1
    ):
        raise ValueError(
            "Invalid value for argument `views_per_request`. Expected a "
            f"positive int. Received: views_per_request={views_per_request!r}"
        )
    clip_format = model_clip_format(client, model, version, **overrides)
    views, num_frames, fps = video_views(path, clip_format)
    chunks, served = [], version
    for start in range(0, len(views), views_per_request):
        request = predict_pb2.PredictRequest()
        model_spec(request.model_spec, model, served, names.SERVING)
        request.inputs[names.CLIPS_INPUT].CopyFrom(
            tf.make_tensor_proto(views[start : start + views_per_request])
        )
        request.output_filter.append(names.PROBABILITIES_OUTPUT)
        response = client.predict_response(request)
        chunks.append(tf.make_ndarray(response.outputs[names.PROBABILITIES_OUTPUT]))
        served = response.model_spec.version.value or served
    mean = np.concatenate(chunks).mean(axis=0)
    best = np.argsort(-mean, kind="stable")[:top_k]
    class_names = client.class_names(model, best, version=served)
    return VideoPrediction(
        path=path,
        top_k=[(name, float(mean[i])) for name, i in zip(class_names, best)],
        probabilities=mean.astype(np.float32),
        num_views=len(views),
        num_frames=num_frames,
        fps=fps,
        model_version=served,
    )


def request_explanation(client, model, path, out_dir, version=None, name=None, **overrides):
    """Asks the export's `explain` signature for the per-block class-evidence
    maps of the video's centre clip (for the model's top class) and writes
    `<name>_explain.png`, `<name>_<block>.gif` and `<name>_explain.json` to
    `out_dir` (as `python -m training.explain` does; `name` defaults to the
    file's stem, see `clipspec.explanation_files.output_names` for several
    videos). Returns the summary (per-block guesses, written files)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from clipspec.decode import check_video_file
    from clipspec.explanation_files import write_explanation
    from keras_classreg.explanations import Explanation

    check_video_file(path)
    overrides.update(num_clips=1, num_crops=1)
    clip_format = model_clip_format(client, model, version, **overrides)
    views, _, fps = video_views(path, clip_format)
    request = predict_pb2.PredictRequest()
    model_spec(request.model_spec, model, version, names.EXPLAIN)
    request.inputs[names.CLIPS_INPUT].CopyFrom(tf.make_tensor_proto(views))
    response = client.predict_response(request)
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    if names.BLOCK_NAMES_OUTPUT not in outputs:
        raise ValueError(
            f"Model {model!r}: the '{names.EXPLAIN}' signature returned no "
            f"`{names.BLOCK_NAMES_OUTPUT}`."
        )
    served = response.model_spec.version.value or version
    num_classes = outputs[names.PROBABILITIES_OUTPUT].shape[-1]
    class_names = client.class_names(model, range(num_classes), version=served)
    explanation = Explanation.from_outputs(outputs, outputs[names.BLOCK_NAMES_OUTPUT][0])
    return write_explanation(
        explanation, views[0], class_names, out_dir, path, fps=fps / clip_format.stride, name=name
    )


__all__ = [
    "DEFAULT_VIEWS_PER_REQUEST",
    "VideoPrediction",
    "classify_video",
    "model_clip_format",
    "request_explanation",
    "video_views",
]
