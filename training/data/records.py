"""The TFRecord format of prepared videos: one `tf.train.Example` per video.

Features:

- `frames`: bytes list, one JPEG per frame (RGB, short side `short_side`).
- `label`: int64, index into the manifest's `class_names`.
- `video_id`: int64, the video's index in its subset (unique per subset;
  the test pipeline groups views by it).
- `num_frames`, `height`, `width`: int64.
- `fps`: float, the source's frame rate (0 when unknown).
- `path`: bytes, the source video's path (UTF-8).

Example:

>>> from training.data import records
>>> blob = records.make_example([b"..."], label=1, video_id=0, fps=25.0,
...                             path="a.mp4", height=128, width=171)
>>> sorted(records.parse(blob))[:3]
['fps', 'frames', 'height']
"""

import tensorflow as tf

FORMAT_VERSION = 1

FEATURES = {
    "frames": tf.io.VarLenFeature(tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "video_id": tf.io.FixedLenFeature([], tf.int64),
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "fps": tf.io.FixedLenFeature([], tf.float32),
    "path": tf.io.FixedLenFeature([], tf.string),
}


def make_example(jpegs, label, video_id, fps, path, height, width):
    """The serialized `tf.train.Example` of one video."""
    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=list(jpegs))),
        "label": ints(label),
        "video_id": ints(video_id),
        "num_frames": ints(len(jpegs)),
        "height": ints(height),
        "width": ints(width),
        "fps": tf.train.Feature(float_list=tf.train.FloatList(value=[float(fps)])),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[str(path).encode("utf-8", "surrogateescape")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse(serialized):
    """Parses one record; `frames` becomes a dense string vector."""
    example = tf.io.parse_single_example(serialized, FEATURES)
    example["frames"] = example["frames"].values
    example["label"] = tf.cast(example["label"], tf.int32)
    example["video_id"] = tf.cast(example["video_id"], tf.int32)
    for key in ("num_frames", "height", "width"):
        example[key] = tf.cast(example[key], tf.int32)
    return example
