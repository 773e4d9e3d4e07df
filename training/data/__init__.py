"""Video data: layouts, PyAV decoding, TFRecord shards and the clip pipeline.

- `layouts`: UCF-101, HMDB-51, Kinetics and folder datasets → `VideoDataset`.
- `decode`: `decode_video(path, short_side, max_frames)` with PyAV.
- `prepare`: `prepare_dataset(dataset, out_dir, …)` → sharded TFRecords +
  `manifest.json`.
- `frame_index`: where each frame's JPEG lies in a shard (random access).
- `pipeline`: `clip_dataset(manifest_or_dir, subset, mode, …)` → `tf.data`.
- `sampling`: clip/view rules shared with the serving client.
- `synth`: `write_synthetic_dataset(out_dir, …)`, moving-shape videos.

The TensorFlow-based names (`clip_dataset`, `prepare_dataset`, …) are
imported on first use, so that decoding worker processes (which need only
PyAV and NumPy) start without loading TensorFlow.

Example:

>>> from training import data
>>> dataset = data.write_synthetic_dataset("synthetic/", classes=4, per_class=8)
>>> manifest = data.prepare_dataset(dataset, "prepared/", short_side=64)
>>> clips = data.clip_dataset("prepared/", clip_length=8, crop_size=56)
"""

import importlib

from training.data.decode import VideoDecodeError, decode_video
from training.data.layouts import (
    AnnotationError,
    MissingVideoError,
    VideoDataset,
    VideoItem,
    load_folder,
    load_hmdb51,
    load_kinetics,
    load_ucf101,
)
from training.data.sampling import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    clip_frame_indices,
    normalize,
    test_clip_starts,
    test_views,
)
from training.data.synth import MOTIONS, write_synthetic_dataset

_LAZY = {
    "clip_dataset": "training.data.pipeline",
    "video_level_scores": "training.data.pipeline",
    "predict_video_scores": "training.data.pipeline",
    "load_manifest": "training.data.manifest",
    "shard_paths": "training.data.manifest",
    "prepare_dataset": "training.data.prepare",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'training.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "AnnotationError", "DEFAULT_MEAN", "DEFAULT_STD", "MOTIONS", "MissingVideoError",
    "VideoDataset", "VideoDecodeError", "VideoItem", "clip_dataset",
    "clip_frame_indices", "decode_video", "load_folder", "load_hmdb51",
    "load_kinetics", "load_manifest", "load_ucf101", "normalize",
    "predict_video_scores", "prepare_dataset", "shard_paths", "test_clip_starts",
    "test_views", "video_level_scores", "write_synthetic_dataset",
]
