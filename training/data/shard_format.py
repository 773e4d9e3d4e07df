"""The on-disk layout of prepared shards: frame records plus an index.

A prepared subset is split into shards. Shard `<subset>-<i>-of-<n>` (its
*prefix* below) is two files, plus the sidecar `<prefix>.json` that
`prepare` writes last:

- `<prefix>.frames.tfrecord`: a TFRecord file with one record per frame,
  the frame's JPEG bytes (RGB, short side `short_side`); a video's frames
  are consecutive records, videos in `video_id` order.
- `<prefix>.index.tfrecord`: a TFRecord file. Its first record is a
  `tf.train.Example` describing the shard's videos column by column:
  `video_id`, `label`, `num_frames`, `height`, `width` (int64), `fps`
  (float), `path` (bytes, UTF-8); `layout_version`, `shard` (the prefix's
  name) and `frames_bytes` (the frames file's size), checked on reading.
  Then one record per video, in the same order: its frame offsets, the
  `num_frames + 1` byte positions (int64, little-endian) in the frames file
  where each of its frame records starts, then where its last one ends.

The offsets are known by construction: the writer adds up the records it
writes, each its data plus the 16 bytes of TFRecord framing (length, CRC of
the length, CRC of the data: the documented TFRecord format), and checks
that the finished files have the sizes they add up to. The position of a
video's offsets record in the index is known the same way: after the
first record, video `v`'s record starts `sum(8 * (n_u + 1) + 16 for u <
v)` bytes further. Nothing parses the framing by hand.

Reading is in two steps, both TensorFlow ops through `tf.io.gfile`, so
shards may live on local disk or any filesystem TensorFlow has (`gs://`,
`ram://`, ...), and no Python runs inside tf.data threads:

- when a pipeline is built, `load_table` reads the first record of each
  index (the per-video columns, a few dozen bytes per video) and checks
  both files' sizes: memory and time grow with the videos and shards, not
  with the frames;
- per clip, the reader seeks to the video's offsets record in the index
  (`TFRecordDatasetV2` with `byte_offsets`, which checks each record's CRC)
  and then to the clip's first frame record, reading the span from the
  clip's first to its last frame in one request of exactly its size (for
  stride `s`, about `s` times the clip's own JPEG bytes; a test video: all
  its frames).

A stale or corrupt index is an error that names the file and the command
that rewrites it: at build time for what the first record and the sizes
show, at read time (TensorFlow's CRC and record-count checks) for the rest.

Example:

>>> from training.data import shard_format
>>> with shard_format.ShardWriter("prepared/train-00000-of-00001") as writer:
...     writer.add([jpeg0, jpeg1], label=0, video_id=0, fps=25.0,
...                path="a.mp4", height=128, width=171)
>>> table = shard_format.load_table(["prepared/train-00000-of-00001"])
>>> table["num_frames"], table["offsets_at"]
(array([2], dtype=int32), array([112]))
"""

import concurrent.futures
import os

import numpy as np
import tensorflow as tf

import cliutil
from training.data import output_folder

LAYOUT_VERSION = 3
# What the records hold (JPEG frames at prepare's settings); it enters
# prepare's shard signatures.
CONTENT_VERSION = 1

# Bytes a TFRecord adds to its data: uint64 length, uint32 masked CRC of
# the length, uint32 masked CRC of the data
# (https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details).
RECORD_FRAMING = 16
OFFSET_BYTES = 8
FRAMES_SUFFIX = ".frames.tfrecord"
INDEX_SUFFIX = ".index.tfrecord"
VIDEO_COLUMNS = ("video_id", "label", "num_frames", "height", "width")
# The features of the index's first record and their kinds.
INDEX_FEATURES = {
    "layout_version": "int64",
    "shard": "bytes",
    "frames_bytes": "int64",
    **{n: "int64" for n in VIDEO_COLUMNS},
    "fps": "float",
    "path": "bytes",
}
# Enough to read an index's first record in one request (a few dozen bytes
# per video) without reading the offsets records behind it.
HEADER_READ_BYTES = 1 << 16
# Parallel size checks when a pipeline is built (each is a request on a
# remote filesystem).
STAT_THREADS = 16
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


def offsets_record_bytes(num_frames):
    """Bytes a video's offsets record takes in the index, framing included."""
    return OFFSET_BYTES * (np.asarray(num_frames, np.int64) + 1) + RECORD_FRAMING


# ----------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------
class ShardWriter:
    """Writes one shard: its frames file, then its index.

    Both files are written under temporary names
    (`cliutil.partial_path`) and renamed when `close()`
    (or the end of a `with` block without error) finishes them; an error
    inside the block removes them.

    Args:
        prefix: the shard's path without suffix (local, or any `tf.io.gfile`
            filesystem).
    """

    def __init__(self, prefix):
        self.prefix = os.fspath(prefix)
        self._frames_tmp = cliutil.partial_path(frames_path(self.prefix))
        self._index_tmp = cliutil.partial_path(index_path(self.prefix))
        self._writer = tf.io.TFRecordWriter(self._frames_tmp)
        self._columns = {name: [] for name in VIDEO_COLUMNS + ("fps", "path")}
        self._offsets = []
        self._end = 0

    def add(self, jpegs, label, video_id, fps, path, height, width):
        """Appends one video (a sequence of JPEG `bytes`, at least one)."""
        if not len(jpegs):
            raise ValueError(f"{path}: a video needs at least one frame.")
        offsets = [self._end]
        for jpeg in jpegs:
            self._writer.write(jpeg)
            offsets.append(offsets[-1] + len(jpeg) + RECORD_FRAMING)
        self._end = offsets[-1]
        self._offsets.append(offsets)
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
        if size != self._end:
            self.abort()
            raise OSError(
                f"{self._frames_tmp}: {size} bytes after writing, but its "
                f"records add up to {self._end}; nothing was kept."
            )
        try:
            index_size = write_index(
                self._index_tmp, _name(self.prefix), self._columns, self._offsets, size
            )
        except OSError:
            self.abort()
            raise
        output_folder.rename(self._frames_tmp, frames_path(self.prefix))
        output_folder.rename(self._index_tmp, index_path(self.prefix))
        return {"frames_bytes": size, "index_bytes": index_size}

    def abort(self):
        """Closes and deletes the unfinished files."""
        self._writer.close()
        for path in (self._frames_tmp, self._index_tmp):
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.result = self.close()
        else:
            self.abort()


def write_index(path, shard, columns, offsets, frames_bytes):
    """Writes a shard's index file `path`: the header (the per-video
    `columns`: `VIDEO_COLUMNS`, `fps`, `path` as bytes; the `shard` name and
    `frames_bytes`), then each video's `offsets` (a sequence of ints) as
    one record. Returns the file's size, checked against its records.

    Raises:
        OSError: the written file does not have the size its records add up to.
    """

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    feature = {name: ints(columns[name]) for name in VIDEO_COLUMNS}
    feature["fps"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=[float(v) for v in columns["fps"]])
    )
    feature["path"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=columns["path"]))
    feature["layout_version"] = ints([LAYOUT_VERSION])
    feature["frames_bytes"] = ints([frames_bytes])
    feature["shard"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[shard.encode()]))
    header = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    expected = len(header) + RECORD_FRAMING
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(header)
        for video in offsets:
            record = np.asarray(video, "<i8").tobytes()
            writer.write(record)
            expected += len(record) + RECORD_FRAMING
    size = tf.io.gfile.stat(path).length
    if size != expected:
        raise OSError(
            f"{path}: {size} bytes after writing, but its records add up to "
            f"{expected}; nothing was kept."
        )
    return size


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
# Reading the index headers (when a pipeline is built)
# ----------------------------------------------------------------------
class _ParseError(ValueError):
    """An index header that is not one."""


def _parse_header(serialized, paths=True):
    """The first index record's features as arrays (the protobuf parser; a
    `tf.data` map would be traced again for every file). Without `paths`,
    the per-video `path` and `fps` are left out (a pipeline needs neither)."""
    feature = _example(serialized).features.feature
    out = {}
    for name, kind in INDEX_FEATURES.items():
        if name not in feature:
            raise _ParseError(f"no feature {name!r}")
        if not paths and name in ("path", "fps"):
            continue
        values = getattr(feature[name], f"{kind}_list").value
        out[name] = (
            list(values)
            if kind == "bytes"
            else np.asarray(values, np.float32 if kind == "float" else np.int64)
        )
    for name in ("layout_version", "shard", "frames_bytes"):
        if len(out[name]) != 1:
            raise _ParseError(f"{name} must hold one value")
        out[name] = out[name][0]
    if paths:
        out["path"] = np.asarray(out["path"], dtype=object)
    out["header_bytes"] = len(serialized) + RECORD_FRAMING
    return out


def _example(serialized):
    from google.protobuf.message import DecodeError

    try:
        return tf.train.Example.FromString(serialized)
    except DecodeError as error:
        raise _ParseError(f"not a tf.train.Example ({error})") from error


def _sizes(prefix):
    """`(frames file size, index file size)`; FileNotFoundError naming the
    missing file."""
    sizes = []
    for path in (frames_path(prefix), index_path(prefix)):
        try:
            sizes.append(tf.io.gfile.stat(path).length)
        except tf.errors.NotFoundError:
            raise FileNotFoundError(f"{path}: no such shard file; {REPREPARE}.") from None
    return tuple(sizes)


def read_index(prefix, paths=True):
    """The checked index header of one shard: a dict of NumPy arrays (the
    columns; `offsets_at` int64 `[videos]`, where each video's offsets
    record starts in the index file).

    Raises:
        FileNotFoundError: a file of the shard is missing.
        ValueError: the index is unreadable, corrupt, of another layout or
            stale (its frames file changed); the message names the files
            and how to rewrite them.
    """
    prefix = os.fspath(prefix)
    path = index_path(prefix)
    sizes = _sizes(prefix)
    try:
        records = [
            r.numpy() for r in tf.data.TFRecordDataset(path, buffer_size=HEADER_READ_BYTES).take(1)
        ]
    except tf.errors.OpError as error:
        raise ValueError(
            f"{path}: not a readable shard index ({error.message}); {REPREPARE}."
        ) from error
    if not records:
        raise ValueError(f"{path}: an empty shard index; {REPREPARE}.")
    try:
        header = _parse_header(records[0], paths)
    except ValueError as error:
        raise ValueError(f"{path}: not a shard index ({error}); {REPREPARE}.") from error
    return _checked(prefix, header, sizes)


def _checked(prefix, header, sizes):
    """Checks a parsed index header against itself and the files' sizes."""
    path = index_path(prefix)

    def fail(problem):
        raise ValueError(f"{path}: {problem}; {REPREPARE}.")

    if int(header["layout_version"]) != LAYOUT_VERSION:
        fail(
            f"layout version {int(header['layout_version'])}, this code reads "
            f"version {LAYOUT_VERSION}"
        )
    shard = header["shard"].decode("utf-8", "replace")
    if shard != _name(prefix):
        fail(f"the index of shard {shard!r}, not of {_name(prefix)!r} (a renamed or copied file)")
    columns = {name: header[name] for name in VIDEO_COLUMNS}
    for name in ("fps", "path"):
        if name in header:
            columns[name] = header[name]
    videos = len(columns["video_id"])
    if any(len(values) != videos for values in columns.values()):
        fail("columns of different lengths (a corrupt index)")
    if np.any(columns["num_frames"] < 1):
        fail("a video without frames (a corrupt index)")
    frames_size, index_size = sizes
    if frames_size != header["frames_bytes"]:
        fail(
            f"stale: it describes a frames file of {header['frames_bytes']} bytes but "
            f"{frames_path(prefix)} has {frames_size} (the frames file changed after "
            "the index was written)"
        )
    ends = header["header_bytes"] + np.cumsum(offsets_record_bytes(columns["num_frames"]))
    if (ends[-1] if videos else header["header_bytes"]) != index_size:
        fail(
            f"{index_size} bytes, but its header describes "
            f"{ends[-1] if videos else header['header_bytes']} (a cut or corrupt index)"
        )
    columns["offsets_at"] = np.concatenate([[header["header_bytes"]], ends[:-1]]).astype(np.int64)
    return columns


def load_table(prefixes):
    """One row per video of the shards `prefixes`, their indexes checked.

    Reads the first record of each index (the per-video columns) and the
    sizes of the files, not the frame offsets: memory and time grow with
    the videos and shards, not the frames.

    Returns:
        a dict of arrays `[V]`: int32 `shard` (position in `prefixes`),
        `video_id`, `label`, `num_frames`, `height`, `width`; int64
        `offsets_at` (where the video's offsets record starts in its
        shard's index file).
    """
    prefixes = [os.fspath(p) for p in prefixes]
    try:
        return _table(_headers(prefixes))
    except _ReadOneByOne:
        return _table(read_index(p, paths=False) for p in prefixes)


class _ReadOneByOne(Exception):
    """The quick read of all headers met a problem: read shard by shard,
    for an exact error."""


def _table(headers):
    """The table of `load_table` from the checked headers, shard by shard
    (each header dropped once its columns are copied)."""
    table = {name: [] for name in ("shard",) + VIDEO_COLUMNS + ("offsets_at",)}
    for number, header in enumerate(headers):
        table["shard"].append(np.full(len(header["video_id"]), number, np.int32))
        for name in VIDEO_COLUMNS:
            table[name].append(header[name].astype(np.int32))
        table["offsets_at"].append(header["offsets_at"])
    return {
        name: (
            np.concatenate(values)
            if values
            else np.zeros(0, np.int64 if name == "offsets_at" else np.int32)
        )
        for name, values in table.items()
    }


def _headers(prefixes):
    """The checked headers of `prefixes`, in order: all read through one
    interleaved `TFRecordDataset` (each header names its shard, which
    catches a misplaced record), the files' sizes in parallel threads.

    Raises:
        _ReadOneByOne: a file is missing or unreadable, or a header is not
            its shard's.
    """
    if not prefixes:
        return
    try:
        with concurrent.futures.ThreadPoolExecutor(STAT_THREADS) as pool:
            sizes = list(pool.map(_sizes, prefixes))
    except FileNotFoundError:
        raise _ReadOneByOne() from None
    records = tf.data.Dataset.from_tensor_slices([index_path(p) for p in prefixes]).interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=HEADER_READ_BYTES).take(1),
        cycle_length=STAT_THREADS,
        num_parallel_calls=STAT_THREADS,
        deterministic=True,
    )
    count = 0
    try:
        for prefix, size, record in zip(prefixes, sizes, records.as_numpy_iterator()):
            header = _parse_header(record, paths=False)
            if header["shard"].decode("utf-8", "replace") != _name(prefix):
                raise _ReadOneByOne()
            count += 1
            yield _checked(prefix, header, size)
    except (tf.errors.OpError, _ParseError):
        raise _ReadOneByOne() from None
    if count != len(prefixes):  # an empty index
        raise _ReadOneByOne()


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
            "Fewer records than the shard index lists (the file changed "
            "after the pipeline was built); file and byte offset:",
            path,
            start,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(span)


def video_offsets(index_file, offsets_at, num_frames):
    """A video's frame offsets, int64 `[num_frames + 1]`: its record of the
    index file `index_file`, which starts at byte `offsets_at`."""
    count = tf.cast(num_frames, tf.int64) + 1
    start = tf.cast(offsets_at, tf.int64)
    record = read_records(index_file, start, start + OFFSET_BYTES * count + RECORD_FRAMING, 1)[0]
    offsets = tf.io.decode_raw(record, tf.int64, little_endian=True)
    check = tf.debugging.Assert(
        tf.equal(tf.size(offsets, out_type=tf.int64), count),
        ["A video's offsets record of the wrong size (a corrupt index):", index_file, start],
    )
    with tf.control_dependencies([check]):
        return tf.identity(offsets)


def frame_reader(prefixes):
    """A graph function `read(video, indices) -> JPEGs [len(indices)]` over
    the rows of `load_table(prefixes)` (`video`: a dict with the row's
    `shard`, `offsets_at` and `num_frames`): reads the video's offsets
    record, then the frame records from the lowest to the highest of
    `indices` (one span, one read), and picks the frames."""
    frames = tf.constant([frames_path(p) for p in prefixes], tf.string)
    indexes = tf.constant([index_path(p) for p in prefixes], tf.string)

    def read(video, indices):
        indices = tf.cast(indices, tf.int64)
        low, high = tf.reduce_min(indices), tf.reduce_max(indices)
        shard = video["shard"]
        offsets = video_offsets(indexes[shard], video["offsets_at"], video["num_frames"])
        span = read_records(frames[shard], offsets[low], offsets[high + 1], high - low + 1)
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
