"""Training data: layouts, prepared shards and the clip pipeline.

- `layouts`: UCF-101, HMDB-51, Kinetics and folder datasets → `VideoDataset`.
- `shard_writer`: `prepare_dataset(dataset, out_dir, …)` → sharded TFRecords +
  `manifest.json` (decoding with `clipspec.decode`); `write_shard`, the one
  shard writer of both runners.
- `beam_runner`: `prepare` on Apache Beam (the `[beam]` extra), one task per shard.
- `output_folder`: prepare's output folder through `tf.io.gfile` (whole-or-nothing writes).
- `gfile_paths`: joining paths of a local folder or a `tf.io.gfile` URL.
- `shard_format`: the shard files (frame records + index), read with TF ops.
- `pipeline`: `clip_dataset(manifest_or_dir, subset, mode, …)` → `tf.data`
  (clip and view rules from `clipspec`, shared with serving).
- `synthetic`: `write_synthetic_dataset(out_dir, …)`, moving-shape videos.

The TensorFlow-based names (`clip_dataset`, `prepare_dataset`, …) are
imported on first use, so that decoding worker processes (which need only
PyAV and NumPy) start without loading TensorFlow.

Example:

>>> from training import data
>>> dataset = data.write_synthetic_dataset("synthetic/", classes=4, per_class=8)
>>> manifest = data.prepare_dataset(dataset, "prepared/", short_side=64)
>>> clips = data.clip_dataset("prepared/", clip_length=8, crop_size=56)
"""

import typing

from cliutil.lazy import lazy_exports
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
from training.data.synthetic import MOTIONS, write_synthetic_dataset

if typing.TYPE_CHECKING:  # the names of `_LAZY`, for tools and readers
    from training.data.manifest import load_manifest, shard_paths, video_paths
    from training.data.pipeline import clip_dataset, predict_video_scores, video_level_scores
    from training.data.shard_writer import prepare_dataset

_LAZY = {
    "clip_dataset": "training.data.pipeline",
    "video_level_scores": "training.data.pipeline",
    "predict_video_scores": "training.data.pipeline",
    "load_manifest": "training.data.manifest",
    "shard_paths": "training.data.manifest",
    "video_paths": "training.data.manifest",
    "prepare_dataset": "training.data.shard_writer",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "AnnotationError",
    "MOTIONS",
    "MissingVideoError",
    "VideoDataset",
    "VideoItem",
    "clip_dataset",
    "load_folder",
    "load_hmdb51",
    "load_kinetics",
    "load_manifest",
    "load_ucf101",
    "predict_video_scores",
    "prepare_dataset",
    "shard_paths",
    "video_level_scores",
    "video_paths",
    "write_synthetic_dataset",
]
