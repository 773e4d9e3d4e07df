"""The shard layout (frame records + index): offsets, TensorFlow-only
reading (no Python in tf.data threads, any `tf.io.gfile` filesystem), and
checks of stale or corrupt indexes."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from training.data import (
    clip_dataset,
    load_manifest,
    shard_format,
    shard_paths,
    write_synthetic_dataset,
)
from training.data.shard_writer import prepare_dataset

T, S = 4, 16
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    dataset = write_synthetic_dataset(
        root / "videos", classes=3, per_class=3, frames=10, size=32, seed=2, test_fraction=0.34
    )
    prepare_dataset(
        dataset, root / "prepared", short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    return dataset, root / "prepared"


@pytest.fixture
def prepared(synthetic):
    return synthetic[1]


def copy_folder(source, target):
    shutil.copytree(source, target)
    return target


def collect(dataset):
    parts = [[t.numpy() for t in element] for element in dataset]
    return [np.concatenate(p) for p in zip(*parts)]


# --------------------------------------------------------------------------
# What prepare wrote
# --------------------------------------------------------------------------
def test_index_offsets_are_the_frame_records(prepared):
    manifest = load_manifest(prepared)
    prefixes = shard_paths(manifest, "train")
    table = shard_format.load_table(prefixes)
    read = shard_format.frame_reader(prefixes)
    for number, prefix in enumerate(prefixes):
        assert pathlib.Path(shard_format.frames_path(prefix)).is_file()
        assert pathlib.Path(shard_format.index_path(prefix)).is_file()
        records = [r.numpy() for r in tf.data.TFRecordDataset(shard_format.frames_path(prefix))]
        videos = list(shard_format.read_videos(prefix))
        assert [j for v in videos for j in v["frames"]] == records
        assert all(j.startswith(b"\xff\xd8") for j in records)
        sidecar = json.loads(pathlib.Path(f"{prefix}.json").read_text())
        assert [(v["video_id"], v["label"], v["num_frames"]) for v in videos] == [
            (v["video_id"], v["label"], v["frames"]) for v in sidecar["videos"]
        ]
        assert (
            sidecar["frames_bytes"] == pathlib.Path(shard_format.frames_path(prefix)).stat().st_size
        )
        assert (
            sidecar["index_bytes"] == pathlib.Path(shard_format.index_path(prefix)).stat().st_size
        )
        rows = np.flatnonzero(table["shard"] == number)
        ends = np.cumsum([0] + [len(j) + 16 for v in videos for j in v["frames"]])
        first = 0
        for row, video in zip(rows, videos):
            n = video["num_frames"]
            row_of = {name: tf.constant(values[row]) for name, values in table.items()}
            offsets = shard_format.video_offsets(
                shard_format.index_path(prefix), row_of["offsets_at"], n
            )
            assert offsets.numpy().tolist() == ends[first : first + n + 1].tolist()
            first += n
            for indices in ([0], [n - 1], [3, 1, 5, 3], list(range(n))[::-1]):
                got = read(row_of, tf.constant(indices))
                assert [bytes(j) for j in got.numpy()] == [video["frames"][i] for i in indices]


@pytest.mark.slow
def test_ram_filesystem_reads_like_local_disk(prepared):
    """`ram://` (a filesystem TensorFlow ships, not POSIX): the manifest,
    the indexes and the frame records are all read through tf.io.gfile."""
    remote = "ram://prepared-copy"
    tf.io.gfile.makedirs(remote)
    for path in prepared.iterdir():
        tf.io.gfile.copy(str(path), f"{remote}/{path.name}", overwrite=True)
    assert shard_paths(load_manifest(remote), "train")[0].startswith(remote + "/")
    common = dict(clip_length=T, stride=2, crop_size=S, batch_size=2, deterministic=True, seed=3)
    for mode, extra in (
        ("train", {}),
        ("train", {"augment_on": "device"}),
        ("test", {"num_clips": 2, "num_crops": 3}),
    ):
        subset = "train" if mode == "train" else "test"
        local = clip_dataset(prepared, subset, mode=mode, **common, **extra)
        ram = clip_dataset(remote, subset, mode=mode, **common, **extra)
        for a, b in zip(local, ram):
            tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    # The writer too: a shard written straight to ram:// reads back.
    prefix = "ram://written/train-00000-of-00001"
    with shard_format.ShardWriter(prefix) as writer:
        writer.add(
            [b"\xff\xd8one", b"\xff\xd8two!"],
            label=1,
            video_id=0,
            fps=25.0,
            path="a.mp4",
            height=24,
            width=32,
        )
        writer.add(
            [b"\xff\xd8three"], label=0, video_id=1, fps=30.0, path="b.mp4", height=24, width=32
        )
    videos = list(shard_format.read_videos(prefix))
    assert [v["frames"] for v in videos] == [[b"\xff\xd8one", b"\xff\xd8two!"], [b"\xff\xd8three"]]
    assert [(v["label"], v["path"], v["fps"]) for v in videos] == [
        (1, "a.mp4", 25.0),
        (0, "b.mp4", 30.0),
    ]
    table = shard_format.load_table([prefix])
    read = shard_format.frame_reader([prefix])
    second = {name: tf.constant(values[1]) for name, values in table.items()}
    assert read(second, tf.constant([0, 0])).numpy().tolist() == [b"\xff\xd8three"] * 2


def test_writer_checks_the_offsets_add_up(tmp_path, monkeypatch):
    """The offsets come from the records' sizes; the finished file must
    have the size they add up to, else nothing is kept."""
    monkeypatch.setattr(shard_format, "RECORD_FRAMING", 15)
    with pytest.raises(OSError, match="bytes after writing, but its records add up to"):
        with shard_format.ShardWriter(tmp_path / "train-00000-of-00001") as writer:
            writer.add(
                [b"\xff\xd8a", b"\xff\xd8bc"],
                label=0,
                video_id=0,
                fps=25.0,
                path="a.mp4",
                height=8,
                width=8,
            )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="a.mp4: a video needs at least one frame"):
        shard_format.ShardWriter(tmp_path / "x").add([], 0, 0, 25.0, "a.mp4", 8, 8)


# --------------------------------------------------------------------------
# No Python inside tf.data; a process with a live iterator exits
# --------------------------------------------------------------------------
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def graph_ops(dataset):
    """Every op type in the dataset's graph, nested functions included."""
    serialized = tf.raw_ops.DatasetToGraphV2(
        input_dataset=tf.data.experimental.to_variant(dataset), external_state_policy=1
    )  # ignore: we only read the op types
    graph = tf.compat.v1.GraphDef.FromString(serialized.numpy())
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.mark.slow
def test_pipeline_graphs_run_no_python(prepared):
    # The check finds Python where there is some (the old reader's kind).
    numpy_fn = tf.data.Dataset.range(3).map(
        lambda x: tf.numpy_function(lambda v: v, [x], tf.int64, stateful=False)
    )
    py_fn = tf.data.Dataset.range(3).map(lambda x: tf.py_function(lambda v: v, [x], tf.int64))
    assert graph_ops(numpy_fn) & PYTHON_OPS == {"PyFuncStateless"}
    assert graph_ops(py_fn) & PYTHON_OPS == {"EagerPyFunc"}
    for kwargs in (
        {"subset": "train"},
        {"subset": "train", "augment_on": "device"},
        {"subset": "test", "mode": "test", "num_clips": 2},
    ):
        ops = graph_ops(clip_dataset(prepared, clip_length=T, crop_size=S, **kwargs))
        assert not ops & PYTHON_OPS, (kwargs, ops & PYTHON_OPS)
        # The frames are read inside the map function, by TF's own reader.
        assert {"TFRecordDatasetV2", "DecodeJpeg", "DatasetToSingleElement"} <= ops


def test_train_pipeline_runs_in_the_tf_data_service(prepared):
    """The tf.data service ships the dataset graph to its workers: possible
    now that the graph holds no Python function."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer()
    worker = service.WorkerServer(
        service.WorkerConfig(dispatcher_address=dispatcher.target.split("://")[1])
    )
    dataset = clip_dataset(prepared, clip_length=T, crop_size=S, batch_size=2, repeat=True).apply(
        service.distribute("distributed_epoch", dispatcher.target)
    )
    clips, labels = next(iter(dataset))
    assert clips.shape == (2, T, S, S, 3) and set(labels.numpy()) <= {0, 1, 2}
    del worker


@pytest.mark.slow
def test_a_process_holding_a_live_train_iterator_exits(prepared):
    """A module-level iterator alive at interpreter shutdown while its
    threads are busy: the process must exit by itself. (With Python inside
    tf.data threads — the old reader, without the exit hook it needed — the
    same script on 24 videos hung in the iterator's destructor in 1 of 2
    runs.)"""
    script = (
        "import os\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n"
        "from training.data import clip_dataset\n"
        f"it = iter(clip_dataset({str(prepared)!r}, clip_length=8, stride=1, "
        "crop_size=112, batch_size=4, repeat=True))\n"
        "print(next(it)[0].shape, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, timeout=120, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(4, 8, 112, 112, 3)" in done.stdout


# --------------------------------------------------------------------------
# Stale or corrupt shards
# --------------------------------------------------------------------------
def index_records(prefix):
    return [r.numpy() for r in tf.data.TFRecordDataset(shard_format.index_path(prefix))]


def rewrite_index(prefix, records=None, **changes):
    """Rewrites a shard's index: its records (default: as they are), the
    header's features `changes` replaced."""
    records = index_records(prefix) if records is None else list(records)
    example = tf.train.Example.FromString(records[0])
    for name, values in changes.items():
        feature = example.features.feature[name]
        if isinstance(values[0], bytes):
            feature.bytes_list.value[:] = values
        else:
            feature.int64_list.value[:] = values
    with tf.io.TFRecordWriter(shard_format.index_path(prefix)) as writer:
        for record in [example.SerializeToString()] + records[1:]:
            writer.write(record)


@pytest.mark.slow
def test_stale_and_corrupt_indexes_are_named(prepared, tmp_path):
    folder = copy_folder(prepared, tmp_path / "copy")
    first, second = shard_paths(load_manifest(folder), "train")[:2]
    frames, index = shard_format.frames_path(first), shard_format.index_path(first)
    pristine = {p: pathlib.Path(p).read_bytes() for p in (frames, index)}

    def restore():
        for path, data in pristine.items():
            pathlib.Path(path).write_bytes(data)

    def fails(error, pattern):
        with pytest.raises(error, match=pattern) as info:
            clip_dataset(folder, clip_length=T, crop_size=S)
        assert "python -m training.prepare" in str(info.value)
        restore()

    size = len(pristine[frames])
    with open(frames, "ab") as handle:  # the frames file changed
        handle.write(b"more")
    fails(
        ValueError,
        rf"{index}: stale: it describes a frames file of {size} bytes "
        rf"but {frames} has {size + 4}",
    )
    pathlib.Path(index).write_bytes(b"not a TFRecord file")
    fails(ValueError, f"{index}: not a readable shard index")
    shutil.copy(shard_format.index_path(second), index)
    fails(
        ValueError,
        f"{index}: the index of shard '{pathlib.Path(second).name}', "
        f"not of '{pathlib.Path(first).name}'",
    )
    records = index_records(first)
    rewrite_index(first, records[:-1])  # cut: a video's offsets record lost
    fails(ValueError, f"{index}: {len(pristine[index]) - len(records[-1]) - 16} bytes, but its ")
    rewrite_index(first, records + records[-1:])  # one offsets record too many
    fails(ValueError, "its header describes .* .a cut or corrupt index")
    pathlib.Path(index).write_bytes(b"")
    fails(ValueError, "an empty shard index")
    num_frames = tf.train.Example.FromString(records[0]).features.feature["num_frames"]
    rewrite_index(first, num_frames=[0] + list(num_frames.int64_list.value[1:]))
    fails(ValueError, "a video without frames .a corrupt index")
    rewrite_index(first, label=[1])
    fails(ValueError, "columns of different lengths .a corrupt index")
    rewrite_index(first, layout_version=[2])
    fails(ValueError, "layout version 2, this code reads version 3")
    pathlib.Path(index).unlink()
    fails(FileNotFoundError, "shard file.s. of subset 'train' are missing")
    # Changed after the pipeline was built: the record CRCs catch it.
    # Clips of all 10 frames: every record of the shard is read.
    dataset = clip_dataset(folder, clip_length=10, stride=1, crop_size=S, batch_size=1)
    data = bytearray(pristine[frames])
    data[len(data) // 2] ^= 0xFF
    pathlib.Path(frames).write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError, match="corrupted record"):
        for _ in dataset:
            pass
    restore()
    last = size - len(list(shard_format.read_videos(first))[-1]["frames"][-1]) - 16
    os.truncate(frames, last + 5)  # cut short inside its last record's length
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Fewer records than the shard index lists"
    ):
        for _ in dataset:
            pass
    restore()
    # An offsets record changed after the build: its CRC catches it.
    data = bytearray(pristine[index])
    data[-10] ^= 0xFF
    pathlib.Path(index).write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError, match="corrupted record"):
        for _ in dataset:
            pass
    restore()


def in_memory_reader(prefixes):
    """A reader with every JPEG of the shards in memory, from `read_videos`
    (Python, eager): what the lazy reader must give."""
    jpegs, starts = [], {}
    for number, prefix in enumerate(prefixes):
        for video in shard_format.read_videos(prefix):
            starts[number, video["video_id"]] = len(jpegs)
            jpegs += video["frames"]
    table = shard_format.load_table(prefixes)
    first = tf.constant(
        [starts[int(s), int(v)] for s, v in zip(table["shard"], table["video_id"])], tf.int64
    )
    row_of = {
        (int(s), int(o)): row for row, (s, o) in enumerate(zip(table["shard"], table["offsets_at"]))
    }
    rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant([s * 2**32 + o for s, o in row_of], tf.int64),
            tf.constant(list(row_of.values()), tf.int64),
        ),
        -1,
    )
    jpegs = tf.constant(jpegs)

    def read(video, indices):
        key = tf.cast(video["shard"], tf.int64) * 2**32 + tf.cast(video["offsets_at"], tf.int64)
        return tf.gather(jpegs, tf.gather(first, rows.lookup(key)) + tf.cast(indices, tf.int64))

    return read


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {"subset": "train", "shuffle": True, "seed": 4},
        {"subset": "train", "augment_on": "device", "seed": 1},
        {"subset": "test", "mode": "test", "num_clips": 3, "num_crops": 3},
    ],
    ids=["train", "device", "test"],
)
def test_the_lazy_reader_gives_the_clips_of_an_in_memory_reader(prepared, monkeypatch, kwargs):
    """The clips read per clip from the index and the frames file equal the
    clips of a reader holding every frame in memory (same pipeline, seeds
    and order)."""
    common = dict(clip_length=T, stride=2, crop_size=S, batch_size=2, deterministic=True)

    def batches(dataset):
        return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]

    lazy = batches(clip_dataset(prepared, **common, **kwargs))
    monkeypatch.setattr(shard_format, "frame_reader", in_memory_reader)
    reference = batches(clip_dataset(prepared, **common, **kwargs))
    assert len(lazy) == len(reference) > 0
    for a, b in zip(lazy, reference):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
