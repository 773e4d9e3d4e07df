"""Random access to the frames of prepared shards: a per-shard frame index.

A shard holds whole videos, one record each, but a training clip needs only
`clip_length` of a video's frames. Reading a whole record per clip costs
more than decoding the clip (a 158-frame, 1.3 MB record: ≈ 1.3 ms of CPU to
read and parse against ≈ 3.5 ms to decode 16 frames), so the train pipeline
reads just the clip's JPEGs, at byte offsets this index gives, with one
`os.pread` per frame. The shards themselves are unchanged (still plain
TFRecords that `tf.data.TFRecordDataset` reads).

File: `<shard>.index.npz`, written by `prepare` beside each shard and built
on first use for shards prepared without one (kept in memory when the folder
is read-only). Arrays:

- `shard_bytes`: size of the shard it describes (an index whose shard
  changed size is rebuilt);
- per video, in record order: `video_id`, `label`, `num_frames`, `height`,
  `width`, `first` (row of its first frame in `frames`);
- `frames`: int64 `[F, 2]`, byte offset in the shard file and byte length
  of every JPEG (16 bytes per frame in memory while a pipeline runs).

Record CRCs are checked while the index is built, not on each clip read.

Example:

>>> from training.data import frame_index
>>> index = frame_index.load_index("prepared/train-00000-of-00001.tfrecord")
>>> index["num_frames"][:2], index["frames"][0]
(array([64, 64], dtype=int32), array([  97, 8410]))
>>> reader = frame_index.FrameReader(["prepared/train-00000-of-00001.tfrecord"])
>>> [len(j) for j in reader.read(0, 0, [0, 2])]
[8410, 8402]
"""

import atexit
import gc
import os
import zipfile

import numpy as np

INDEX_SUFFIX = ".index.npz"
INDEX_VERSION = 1
VIDEO_FIELDS = ("video_id", "label", "num_frames", "height", "width", "first")

_RECORD_OVERHEAD = 16  # TFRecord framing: length (8), its CRC (4), data CRC (4)
_DATA_START = 12


def index_path(shard):
    """The index file of a shard: `<shard>.index.npz`."""
    return f"{shard}{INDEX_SUFFIX}"


def build_index(shard):
    """Scans a shard and returns its index (a dict of NumPy arrays).

    The records are read with `tf.data.TFRecordDataset`, which checks their
    CRCs; a record's data starts 12 bytes after the end of the previous
    record (TFRecord framing), and a frame's JPEG is found right after the
    previous one inside the serialized `tf.train.Example`.

    Raises:
        ValueError: the shard is not a TFRecord file of video records (the
            message names the shard and the record).
    """
    import tensorflow as tf

    shard = os.fspath(shard)
    size = os.path.getsize(shard)
    videos = {name: [] for name in VIDEO_FIELDS}
    frames = []
    start = 0
    try:
        for number, data in enumerate(tf.data.TFRecordDataset(shard).as_numpy_iterator()):
            _index_record(shard, number, data, start + _DATA_START, videos, frames)
            start += len(data) + _RECORD_OVERHEAD
    except tf.errors.OpError as error:
        raise ValueError(f"{shard}: not a readable TFRecord shard ({error.message})") \
            from error
    if start != size:
        raise ValueError(f"{shard}: {size} bytes but its records end at byte {start}; "
                         "the file is not an uncompressed TFRecord shard.")
    index = {name: np.asarray(values, np.int32) for name, values in videos.items()}
    index["frames"] = np.asarray(frames, np.int64).reshape(-1, 2)
    index["shard_bytes"] = np.asarray(size, np.int64)
    index["version"] = np.asarray(INDEX_VERSION, np.int32)
    return index


def _index_record(shard, number, data, data_offset, videos, frames):
    from tensorflow.core.example import example_pb2

    try:
        feature = example_pb2.Example.FromString(data).features.feature
        jpegs = feature["frames"].bytes_list.value
        values = {name: feature[name].int64_list.value[0]
                  for name in ("video_id", "label", "height", "width")}
    except Exception as error:  # a protobuf DecodeError or a missing feature
        raise ValueError(f"{shard}: record {number} is not a prepared video "
                         f"({type(error).__name__}: {error})") from error
    values["num_frames"] = len(jpegs)
    values["first"] = len(frames)
    position = 0
    for jpeg in jpegs:
        # Each value follows the previous one after its 2-4 byte tag and length.
        found = data.find(jpeg, position, position + len(jpeg) + 16) if position else \
            data.find(jpeg)
        if found < 0:
            raise ValueError(f"{shard}: record {number}: frame bytes not found in place.")
        frames.append((data_offset + found, len(jpeg)))
        position = found + len(jpeg)
    for name in VIDEO_FIELDS:
        videos[name].append(values[name])


def write_index(shard, index=None):
    """Builds (unless given) and writes `<shard>.index.npz`; returns the index."""
    index = build_index(shard) if index is None else index
    path = index_path(shard)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **index)
    os.replace(tmp, path)
    return index


def load_index(shard, write=True):
    """The index of `shard`, read from `<shard>.index.npz` when it is current,
    else built (and written there when `write` and the folder allows)."""
    shard = os.fspath(shard)
    path = index_path(shard)
    try:
        with np.load(path) as stored:
            index = {name: stored[name] for name in stored.files}
        if (int(index.get("version", -1)) == INDEX_VERSION
                and int(index["shard_bytes"]) == os.path.getsize(shard)
                and all(name in index for name in VIDEO_FIELDS + ("frames",))):
            return index
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # absent, unreadable or stale: rebuild below
    index = build_index(shard)
    if write:
        try:
            write_index(shard, index)
        except OSError:
            pass  # a read-only folder: use the index from memory
    return index


def video_table(shards, write=True):
    """One row per video of `shards`: `shard` (position in `shards`) plus
    the per-video fields of their indexes, as int32 arrays; and the frame
    tables (one `[F, 2]` array per shard)."""
    table = {name: [] for name in ("shard",) + VIDEO_FIELDS}
    frame_tables = []
    for number, shard in enumerate(shards):
        index = load_index(shard, write)
        frame_tables.append(index["frames"])
        table["shard"].append(np.full(len(index["video_id"]), number, np.int32))
        for name in VIDEO_FIELDS:
            table[name].append(index[name])
    return {name: np.concatenate(values).astype(np.int32)
            for name, values in table.items()}, frame_tables


def _release_iterators():
    """Destroys the live `tf.data` iterators while Python can still run.

    The train pipeline calls Python (`FrameReader.read`) from tf.data's
    threads. An iterator still referenced when the interpreter shuts down
    (e.g. `it = iter(dataset)` at module level) is otherwise destroyed
    during finalization, when those threads can no longer take the GIL,
    and its destructor waits for them forever: the process hangs at exit.
    Registered with `atexit` by the first `FrameReader`.
    """
    from tensorflow.python.data.ops import iterator_ops

    for obj in gc.get_objects():
        if isinstance(obj, iterator_ops.OwnedIterator):
            obj._iterator_resource = None  # the iterator's only handle
    gc.collect()


_exit_hook_registered = False


class FrameReader:
    """Reads frames' JPEG bytes straight from shard files (`os.pread`).

    `read(shard, first, indices)` → object array of `bytes`, the JPEGs of
    frames `indices` of the video whose first frame is row `first` of shard
    number `shard`'s frame table. Thread-safe; used through
    `tf.numpy_function` by the train pipeline (the first reader registers an
    exit hook that releases live tf.data iterators, see
    `_release_iterators`).
    """

    def __init__(self, shards, frame_tables=None):
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(_release_iterators)
            _exit_hook_registered = True
        self.shards = [os.fspath(s) for s in shards]
        if frame_tables is None:
            frame_tables = [load_index(s)["frames"] for s in self.shards]
        self.frame_tables = frame_tables

    def read(self, shard, first, indices):
        rows = self.frame_tables[int(shard)][int(first) + np.asarray(indices, np.int64)]
        out = np.empty(len(rows), dtype=object)
        descriptor = os.open(self.shards[int(shard)], os.O_RDONLY)
        try:
            for i, (offset, length) in enumerate(rows):
                out[i] = os.pread(descriptor, int(length), int(offset))
                if len(out[i]) != length or not out[i].startswith(b"\xff\xd8"):
                    shard_path = self.shards[int(shard)]
                    raise OSError(
                        f"{shard_path}: no JPEG at byte {offset}: the shard changed "
                        f"after {index_path(shard_path)} was built; delete that "
                        "file (it is rebuilt on the next run) or re-run prepare."
                    )
        finally:
            os.close(descriptor)
        return out
