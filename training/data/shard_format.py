"""The on-disk layout of prepared shards: frame records plus an index.

A prepared subset is split into shards. Shard `<subset>-<i>-of-<n>` (its
*prefix* below) is two files, plus the sidecar `<prefix>.json` that
`prepare` writes last:

- `<prefix>.frames.tfrecord`: a TFRecord file with one record per frame,
  the frame's JPEG bytes (RGB, short side `short_side`); a video's frames
  are consecutive records, videos in `video_id` order.
- `<prefix>.index.tfrecord`: a TFRecord file holding one `tf.train.Example`
  that describes the shard column by column: per video `video_id`,
  `label`, `num_frames`, `height`, `width` (int64), `fps` (float), `path`
  (bytes, UTF-8); `record_offsets` (int64, one per frame plus one): the
  byte offset in the frames file where each frame's record starts, then the
  file's size, so frame record `r` spans `record_offsets[r]` to
  `record_offsets[r + 1]`; `layout_version` and `shard` (the prefix's
  name), checked on reading.

The offsets are known by construction: the writer adds up the records it
writes, each its data plus the 16 bytes of TFRecord framing (length, CRC of
the length, CRC of the data: the documented TFRecord format), and checks
that the finished file has the size they add up to. Nothing parses the
framing by hand: a reader seeks
to the first record of a clip's span with TensorFlow's TFRecord reader
(`TFRecordDatasetV2` with `byte_offsets`, which checks each record's CRC)
and reads the span's records in one request of exactly their size: a
train clip reads the frames from its first to its last one (for stride
`s`, about `s` times the clip's own JPEG bytes), a test video all its
frames. Everything is TensorFlow ops through `tf.io.gfile`, so shards may
live on local disk or any filesystem TensorFlow has (`gs://`, `ram://`,
...), and no Python runs inside tf.data threads.

The index is read once, when a pipeline is built (`load_table`), and
checked against the frames file (its size must be the index's last
offset): a stale or corrupt index is an error that names the file and the
command that rewrites it. The frame offsets stay in memory, in the
pipeline's graph: 8 bytes per frame (20 MB for UCF-101's 2.5 M frames).

Folders prepared before this layout (`format_version` 1: one
`tf.train.Example` per video holding all its JPEGs, read through Python)
are converted in place, without decoding again, by `convert_folder` or by
re-running the `prepare` command that wrote them.

Example:

>>> from training.data import shard_format
>>> with shard_format.ShardWriter("prepared/train-00000-of-00001") as writer:
...     writer.add([jpeg0, jpeg1], label=0, video_id=0, fps=25.0,
...                path="a.mp4", height=128, width=171)
>>> table = shard_format.load_table(["prepared/train-00000-of-00001"])
>>> table["num_frames"], table["offsets"]
(array([2], dtype=int32), array([0, 8426, 16844]))
"""

import json
import os

import numpy as np
import tensorflow as tf

LAYOUT_VERSION = 2
# What the records hold (JPEG frames at prepare's settings). It enters
# prepare's shard signatures and stays 1 across the layout change, so that
# shards of the old layout are converted instead of decoded again.
CONTENT_VERSION = 1

# Bytes a TFRecord adds to its data: uint64 length, uint32 masked CRC of
# the length, uint32 masked CRC of the data
# (https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details).
RECORD_FRAMING = 16
FRAMES_SUFFIX = ".frames.tfrecord"
INDEX_SUFFIX = ".index.tfrecord"
VIDEO_COLUMNS = ("video_id", "label", "num_frames", "height", "width")
# The index Example's features and their kinds.
INDEX_FEATURES = {
    "layout_version": "int64",
    "shard": "bytes",
    **{n: "int64" for n in VIDEO_COLUMNS},
    "fps": "float",
    "path": "bytes",
    "record_offsets": "int64",
}
REPREPARE = (
    "re-run the `python -m training.prepare` command that wrote the "
    "folder (same --out): it rewrites the shards that are missing or "
    "changed"
)


def frames_path(prefix):
    """The frames file of a shard: `<prefix>.frames.tfrecord`."""
    return f"{os.fspath(prefix)}{FRAMES_SUFFIX}"


def index_path(prefix):
    """The index file of a shard: `<prefix>.index.tfrecord`."""
    return f"{os.fspath(prefix)}{INDEX_SUFFIX}"


def _name(prefix):
    return os.fspath(prefix).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# ----------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------
class ShardWriter:
    """Writes one shard: its frames file, then its index.

    Both files are written under `.tmp` names and renamed when `close()`
    (or the end of a `with` block without error) finishes them; an error
    inside the block removes them.

    Args:
        prefix: the shard's path without suffix (local, or any `tf.io.gfile`
            filesystem).
    """

    def __init__(self, prefix):
        self.prefix = os.fspath(prefix)
        self._frames_tmp = frames_path(self.prefix) + ".tmp"
        self._writer = tf.io.TFRecordWriter(self._frames_tmp)
        self._columns = {name: [] for name in VIDEO_COLUMNS + ("fps", "path")}
        self._offsets = [0]

    def add(self, jpegs, label, video_id, fps, path, height, width):
        """Appends one video (a sequence of JPEG `bytes`, at least one)."""
        if not len(jpegs):
            raise ValueError(f"{path}: a video needs at least one frame.")
        for jpeg in jpegs:
            self._writer.write(jpeg)
            self._offsets.append(self._offsets[-1] + len(jpeg) + RECORD_FRAMING)
        for name, value in (
            ("video_id", video_id),
            ("label", label),
            ("num_frames", len(jpegs)),
            ("height", height),
            ("width", width),
            ("fps", fps),
        ):
            self._columns[name].append(value)
        self._columns["path"].append(str(path).encode("utf-8", "surrogateescape"))

    def close(self):
        """Finishes both files; returns `{"frames_bytes", "index_bytes"}`."""
        self._writer.close()
        size = tf.io.gfile.stat(self._frames_tmp).length
        if size != self._offsets[-1]:
            self.abort()
            raise OSError(
                f"{self._frames_tmp}: {size} bytes after writing, but its "
                f"records add up to {self._offsets[-1]}; nothing was kept."
            )
        index_tmp = index_path(self.prefix) + ".tmp"
        with tf.io.TFRecordWriter(index_tmp) as writer:
            writer.write(self._index_example())
        tf.io.gfile.rename(self._frames_tmp, frames_path(self.prefix), overwrite=True)
        tf.io.gfile.rename(index_tmp, index_path(self.prefix), overwrite=True)
        return {
            "frames_bytes": size,
            "index_bytes": tf.io.gfile.stat(index_path(self.prefix)).length,
        }

    def abort(self):
        """Closes and deletes the unfinished files."""
        self._writer.close()
        for path in (self._frames_tmp, index_path(self.prefix) + ".tmp"):
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.result = self.close()
        else:
            self.abort()

    def _index_example(self):
        def ints(values):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

        feature = {name: ints(self._columns[name]) for name in VIDEO_COLUMNS}
        feature["fps"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(v) for v in self._columns["fps"]])
        )
        feature["path"] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=self._columns["path"])
        )
        feature["record_offsets"] = ints(self._offsets)
        feature["layout_version"] = ints([LAYOUT_VERSION])
        feature["shard"] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[_name(self.prefix).encode("utf-8")])
        )
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def check_written(prefix, info):
    """True when both files of a shard exist with the sizes that `info`
    (prepare's sidecar) recorded for this layout."""
    if info.get("layout_version") != LAYOUT_VERSION:
        return False
    for path, key in ((frames_path(prefix), "frames_bytes"), (index_path(prefix), "index_bytes")):
        if not tf.io.gfile.exists(path) or tf.io.gfile.stat(path).length != info.get(key):
            return False
    return True


# ----------------------------------------------------------------------
# Reading the index (when a pipeline is built)
# ----------------------------------------------------------------------
def _parse_index(serialized):
    """The index record's features as arrays (the protobuf parser; a
    `tf.data` map would be traced again for every file)."""
    feature = _example(serialized).features.feature
    out = {}
    for name, kind in INDEX_FEATURES.items():
        if name not in feature:
            raise ValueError(f"no feature {name!r}")
        values = getattr(feature[name], f"{kind}_list").value
        out[name] = (
            list(values)
            if kind == "bytes"
            else np.asarray(values, np.float32 if kind == "float" else np.int64)
        )
    out["path"] = np.asarray(out["path"], dtype=object)
    if len(out["layout_version"]) != 1 or len(out["shard"]) != 1:
        raise ValueError("layout_version and shard must hold one value each")
    out["layout_version"], out["shard"] = out["layout_version"][0], out["shard"][0]
    return out


def _example(serialized):
    from google.protobuf.message import DecodeError

    try:
        return tf.train.Example.FromString(serialized)
    except DecodeError as error:
        raise ValueError(f"not a tf.train.Example ({error})") from error


def read_index(prefix):
    """The checked index of one shard: a dict of NumPy arrays (the columns,
    `offsets` int64 `[frames + 1]`).

    Raises:
        FileNotFoundError: a file of the shard is missing.
        ValueError: the index is unreadable, corrupt, of another layout or
            stale (its frames file changed); the message names the files
            and how to rewrite them.
    """
    prefix = os.fspath(prefix)
    path = index_path(prefix)
    for needed in (path, frames_path(prefix)):
        if not tf.io.gfile.exists(needed):
            raise FileNotFoundError(f"{needed}: no such shard file; {REPREPARE}.")
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path).take(2)]
    except tf.errors.OpError as error:
        raise ValueError(
            f"{path}: not a readable shard index ({error.message}); {REPREPARE}."
        ) from error
    if len(records) != 1:
        raise ValueError(
            f"{path}: a shard index holds one record, this file has "
            f"{len(records) or 'none'}; {REPREPARE}."
        )
    try:
        record = _parse_index(records[0])
    except ValueError as error:
        raise ValueError(f"{path}: not a shard index ({error}); {REPREPARE}.") from error
    return _checked(prefix, record)


def _checked(prefix, record):
    """Checks a parsed index against itself and its frames file."""
    path = index_path(prefix)

    def fail(problem):
        raise ValueError(f"{path}: {problem}; {REPREPARE}.")

    if int(record["layout_version"]) != LAYOUT_VERSION:
        fail(
            f"layout version {int(record['layout_version'])}, this code reads "
            f"version {LAYOUT_VERSION}"
        )
    shard = record["shard"].decode("utf-8", "replace")
    if shard != _name(prefix):
        fail(f"the index of shard {shard!r}, not of {_name(prefix)!r} (a renamed or copied file)")
    columns = {name: record[name].astype(np.int64) for name in VIDEO_COLUMNS}
    columns["fps"] = record["fps"]
    columns["path"] = record["path"]
    offsets = record["record_offsets"].astype(np.int64)
    videos = len(columns["video_id"])
    if any(len(values) != videos for values in columns.values()):
        fail("columns of different lengths (a corrupt index)")
    if np.any(columns["num_frames"] < 1):
        fail("a video without frames (a corrupt index)")
    frames = int(columns["num_frames"].sum())
    if len(offsets) != frames + 1 or offsets[0] != 0 or np.any(np.diff(offsets) <= 0):
        fail(
            f"{len(offsets)} record offsets for {frames} frames, or not "
            "increasing from 0 (a corrupt index)"
        )
    size = tf.io.gfile.stat(frames_path(prefix)).length
    if size != offsets[-1]:
        fail(
            f"stale: it describes a frames file of {offsets[-1]} bytes but "
            f"{frames_path(prefix)} has {size} (the frames file changed after "
            "the index was written)"
        )
    columns["offsets"] = offsets
    return columns


def load_table(prefixes):
    """One row per video of the shards `prefixes`, their indexes checked.

    Returns:
        a dict of int32 arrays `[V]`: `shard` (position in `prefixes`),
        `video_id`, `label`, `num_frames`, `height`, `width`, `first` (row
        of the video's first frame in `offsets`); and `offsets`, int64: the
        shards' `record_offsets` one after the other (`[frames + shards]`),
        so frame `i` of a video spans bytes `offsets[first + i]` to
        `offsets[first + i + 1]` of its shard's frames file.
    """
    prefixes = [os.fspath(p) for p in prefixes]
    indexes = _read_indexes(prefixes)
    table = {name: [] for name in ("shard",) + VIDEO_COLUMNS + ("first",)}
    offsets, rows = [], 0
    for number, index in enumerate(indexes):
        count = len(index["video_id"])
        table["shard"].append(np.full(count, number))
        for name in VIDEO_COLUMNS:
            table[name].append(index[name])
        table["first"].append(
            rows
            + np.concatenate([[0], np.cumsum(index["num_frames"])[:-1]]).astype(np.int64)[:count]
        )
        offsets.append(index["offsets"])
        rows += len(index["offsets"])
    out = {
        name: np.concatenate(values).astype(np.int32) if values else np.zeros(0, np.int32)
        for name, values in table.items()
    }
    out["offsets"] = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
    return out


def _read_indexes(prefixes):
    """All indexes with one `TFRecordDataset` (index files hold one record
    each; each names its shard, which catches a misplaced record); on any
    problem, shard by shard for an exact error."""
    if not prefixes:
        return []
    try:
        dataset = tf.data.TFRecordDataset([index_path(p) for p in prefixes])
        records = [_parse_index(r.numpy()) for r in dataset]
    except (tf.errors.OpError, ValueError):
        records = None
    if (
        records is None
        or len(records) != len(prefixes)
        or any(r["shard"].decode("utf-8", "replace") != _name(p) for r, p in zip(records, prefixes))
    ):
        return [read_index(p) for p in prefixes]
    for prefix in prefixes:
        if not tf.io.gfile.exists(frames_path(prefix)):
            raise FileNotFoundError(f"{frames_path(prefix)}: no such shard file; {REPREPARE}.")
    return [_checked(p, r) for p, r in zip(prefixes, records)]


# ----------------------------------------------------------------------
# Reading frames (TensorFlow ops; used inside tf.data functions)
# ----------------------------------------------------------------------
def read_records(path, start, stop, count):
    """The `count` consecutive records of TFRecord file `path` that fill
    bytes `start` to `stop`: string `[count]`.

    TensorFlow's TFRecord reader, seeking to `start` (`byte_offsets`) with
    a read buffer of exactly `stop - start` bytes: one read of the span,
    each record's CRC checked. Graph code: no Python when it runs.
    """
    start = tf.cast(start, tf.int64)
    count = tf.cast(count, tf.int64)
    variant = tf.raw_ops.TFRecordDatasetV2(
        filenames=tf.reshape(path, [1]),
        compression_type="",
        buffer_size=tf.cast(stop, tf.int64) - start,
        byte_offsets=tf.reshape(start, [1]),
    )
    records = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
    span = records.take(count).batch(count).get_single_element()
    check = tf.debugging.Assert(
        tf.equal(tf.size(span, out_type=tf.int64), count),
        [
            "Fewer frame records than the shard index lists (the frames file changed "
            "after the pipeline was built); file and byte offset:",
            path,
            start,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(span)


def frame_reader(prefixes, offsets):
    """A graph function `read(shard, first, indices) -> JPEGs [len(indices)]`
    over the rows of `load_table(prefixes)`: reads the records from the
    lowest to the highest of a video's frame `indices` (one span, one read)
    and picks the frames."""
    files = tf.constant([frames_path(p) for p in prefixes], tf.string)
    offsets = tf.constant(offsets, tf.int64)

    def read(shard, first, indices):
        indices = tf.cast(indices, tf.int64)
        low, high = tf.reduce_min(indices), tf.reduce_max(indices)
        first = tf.cast(first, tf.int64)
        span = read_records(
            files[shard], offsets[first + low], offsets[first + high + 1], high - low + 1
        )
        return tf.gather(span, indices - low)

    return read


def read_videos(prefix):
    """The videos of a shard, in order, eagerly (for checks and tools):
    dicts with the index's per-video fields (`path` as str) and `frames`,
    a list of JPEG `bytes`."""
    index = read_index(prefix)
    records = tf.data.TFRecordDataset(frames_path(prefix)).as_numpy_iterator()
    for row in range(len(index["video_id"])):
        video = {name: int(index[name][row]) for name in VIDEO_COLUMNS}
        video["fps"] = float(index["fps"][row])
        video["path"] = index["path"][row].decode("utf-8", "surrogateescape")
        video["frames"] = [next(records) for _ in range(video["num_frames"])]
        yield video


# ----------------------------------------------------------------------
# Folders of the old layout (format_version 1)
# ----------------------------------------------------------------------
OLD_SUFFIX = ".tfrecord"


def old_layout_message(root):
    """What to do with a folder prepared in the old layout."""
    return (
        f"{root} was prepared in the old shard layout (format_version 1: one "
        "tf.train.Example per video, read through Python), which this version no "
        f"longer reads (it reads format_version {LAYOUT_VERSION}: frame records "
        "plus an index). Convert it in place, without decoding the videos again "
        '(about as fast as copying the folder): python -c "from '
        f'training.data.shard_format import convert_folder; convert_folder({str(root)!r})"'
        " -- or re-run the `python -m training.prepare` command that wrote it "
        "(same arguments): it converts the shards whose videos and settings are "
        "unchanged."
    )


def old_files(prefix):
    """The files that the old layout had for shard `prefix`."""
    old = os.fspath(prefix) + OLD_SUFFIX
    return [old, old + ".json", old + ".index.npz"]


def convert_old_shard(old_path, prefix):
    """Writes shard `prefix` in this layout from the old-layout shard file
    `old_path` (its JPEG bytes are copied, not decoded); returns the sizes
    (`{"frames_bytes", "index_bytes"}`). The old file is left in place."""
    try:
        with ShardWriter(prefix) as writer:
            for number, record in enumerate(tf.data.TFRecordDataset(old_path)):
                video = read_old_video(record.numpy())
                if video is None:
                    raise ValueError(
                        f"{old_path}: record {number} is not a video of "
                        f"the old layout; {REPREPARE}."
                    )
                writer.add(
                    video["frames"],
                    video["label"],
                    video["video_id"],
                    video["fps"],
                    video["path"],
                    video["height"],
                    video["width"],
                )
    except tf.errors.OpError as error:
        raise ValueError(
            f"{old_path}: not a readable old-layout shard ({error.message}); {REPREPARE}."
        ) from error
    return writer.result


def read_old_video(serialized):
    """One record of the old layout (a `tf.train.Example` per video) as a
    dict (`frames`: list of JPEG bytes), or None if it is not one."""
    try:
        feature = _example(serialized).features.feature
        video = {
            name: feature[name].int64_list.value[0]
            for name in ("label", "video_id", "height", "width")
        }
        video["fps"] = feature["fps"].float_list.value[0]
        video["path"] = feature["path"].bytes_list.value[0].decode("utf-8", "surrogateescape")
    except (ValueError, IndexError, KeyError):
        return None
    video["frames"] = list(feature["frames"].bytes_list.value)
    return video if video["frames"] else None


def convert_folder(folder, progress=True):
    """Converts a folder prepared in the old layout to this one, in place.

    Every shard of `manifest.json` is rewritten as frames + index files
    (JPEG bytes copied, nothing decoded), its sidecar updated (so a later
    `prepare` with the same arguments reuses it), the old files removed and
    the manifest rewritten last. An interrupted conversion resumes.

    Returns:
        the number of shards converted.

    Raises:
        FileNotFoundError: no manifest in `folder`, or an old shard file missing.
        ValueError: the folder is not in the old layout, or a shard is unreadable.
    """
    folder = os.fspath(folder)
    manifest_file = os.path.join(folder, "manifest.json")
    if not tf.io.gfile.exists(manifest_file):
        raise FileNotFoundError(f"{manifest_file}: no such manifest.")
    with tf.io.gfile.GFile(manifest_file, "r") as handle:
        manifest = json.load(handle)
    if manifest.get("format_version") == LAYOUT_VERSION:
        raise ValueError(f"{folder} is already in shard layout {LAYOUT_VERSION}.")
    names = [
        (subset, name) for subset, entry in manifest["subsets"].items() for name in entry["shards"]
    ]
    iterator = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, unit="shard", desc="convert", dynamic_ncols=True)
    converted = 0
    for _, name in iterator:
        prefix = os.path.join(
            folder, name[: -len(OLD_SUFFIX)] if name.endswith(OLD_SUFFIX) else name
        )
        if convert_old_files(prefix) is not None:
            converted += 1
    for entry in manifest["subsets"].values():
        entry["shards"] = [
            n[: -len(OLD_SUFFIX)] if n.endswith(OLD_SUFFIX) else n for n in entry["shards"]
        ]
    manifest["format_version"] = LAYOUT_VERSION
    manifest["features"] = sorted(INDEX_FEATURES)
    _write_json(manifest_file, manifest)
    return converted


def convert_old_files(prefix, expect=None):
    """Converts shard `prefix` from its old-layout files, if they are there.

    With `expect` (a dict that must match the old sidecar's `signature`),
    only a finished old shard of the same inputs is converted. Returns the
    new sidecar dict (also written to `<prefix>.json`; the old files are
    removed), or None when there was nothing to convert.
    """
    old, old_sidecar, _ = old_files(prefix)
    sidecar = os.fspath(prefix) + ".json"
    if not tf.io.gfile.exists(old):
        converted = all(tf.io.gfile.exists(p) for p in (frames_path(prefix), index_path(prefix)))
        if expect is None and not converted:
            raise FileNotFoundError(f"{old}: no such shard file; {REPREPARE}.")
        return None
    info = {}
    if tf.io.gfile.exists(old_sidecar):
        with tf.io.gfile.GFile(old_sidecar, "r") as handle:
            try:
                info = json.load(handle)
            except json.JSONDecodeError:
                info = {}
    if expect is not None and (
        info.get("signature") != expect.get("signature")
        or info.get("bytes") != tf.io.gfile.stat(old).length
    ):
        return None
    info.pop("bytes", None)
    info.update(convert_old_shard(old, prefix), layout_version=LAYOUT_VERSION)
    if info.get("signature"):
        _write_json(sidecar, info)
    remove_old_files(prefix)
    return info


def remove_old_files(prefix):
    """Deletes the old-layout files of shard `prefix` (if any)."""
    for path in old_files(prefix):
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _write_json(path, value):
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
