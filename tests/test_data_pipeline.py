"""Clip sampling rules, the tf.data clip pipeline and test-time views."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from clipspec import sampling, views
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD
from training.data import (
    clip_dataset,
    load_manifest,
    predict_video_scores,
    shard_format,
    shard_paths,
    video_level_scores,
    write_synthetic_dataset,
)
from training.data.layouts import VideoDataset, VideoItem
from training.data.shard_writer import prepare_dataset
from training.data.synthetic import write_video
from training.distribute import make_strategy

T, STRIDE, S = 4, 2, 24


# --------------------------------------------------------------------------
# Sampling rules
# --------------------------------------------------------------------------
def test_clip_frame_indices_hand_computed():
    assert sampling.clip_frame_indices(20, 4, 3, 5).tolist() == [5, 8, 11, 14]
    assert sampling.clip_frame_indices(5, 4, 2, 0).tolist() == [0, 2, 4, 1]
    assert sampling.clip_frame_indices(5, 4, 2, 0, "pad").tolist() == [0, 2, 4, 4]
    assert sampling.clip_frame_indices(1, 3, 1, 0).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"Expected an int in \[0, 5\). Received: start=5"):
        sampling.clip_frame_indices(5, 4, 2, 5)
    with pytest.raises(ValueError, match="Expected 'loop' or 'pad'"):
        sampling.clip_frame_indices(5, 4, 2, 0, "mirror")


def test_test_clip_starts_hand_computed():
    # span = 7; last start = 13.
    assert sampling.eval_clip_starts(20, 4, 2, 1) == [6]
    assert sampling.eval_clip_starts(20, 4, 2, 2) == [0, 13]
    assert sampling.eval_clip_starts(20, 4, 2, 3) == [0, 7, 13]  # 6.5 rounds up
    assert sampling.eval_clip_starts(20, 4, 2, 5) == [0, 3, 7, 10, 13]
    assert sampling.eval_clip_starts(5, 4, 2, 3) == [0, 0, 0]  # short video
    with pytest.raises(ValueError, match="Received: num_clips=0"):
        sampling.eval_clip_starts(20, 4, 2, 0)


@pytest.mark.slow
def test_graph_sampling_matches_numpy():
    for n, length, stride, mode in itertools.product(
        (1, 2, 7, 16, 31, 40), (1, 4, 8), (1, 2, 3), ("loop", "pad")
    ):
        last = sampling.max_clip_start(n, length, stride)
        assert int(views.max_start(n, length, stride)) == last
        for start in {0, last // 2, last, n - 1}:
            got = views.clip_indices(n, length, stride, start, mode).numpy()
            want = sampling.clip_frame_indices(n, length, stride, start, mode)
            assert got.tolist() == want.tolist(), (n, length, stride, start, mode)
        for clips in (1, 2, 3, 10):
            got = views.eval_indices(n, length, stride, clips, mode).numpy()
            want = sampling.eval_clip_indices(n, length, stride, clips, mode)
            assert got.tolist() == want.tolist(), (n, length, stride, clips, mode)


def test_test_views_crops_hand_computed():
    # Frames already at the crop's short side: resizing is the identity, so
    # the crops are plain slices. Pixel = 10 * frame index + column.
    n, h, w = 9, 8, 14
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:] = 10 * np.arange(n)[:, None, None, None] + np.arange(w)[None, None, :, None]
    views = sampling.eval_views(
        frames, clip_length=3, stride=2, crop_size=8, num_clips=2, num_crops=3
    )
    assert views.shape == (6, 3, 8, 8, 3) and views.dtype == np.uint8
    starts = [0, 4]  # last start = 9 - 5 = 4
    offsets = [0, 3, 6]  # start, centre, end of the long side
    for v, (start, offset) in enumerate(itertools.product(starts, offsets)):
        expected = frames[[start, start + 2, start + 4], :, offset : offset + 8]
        np.testing.assert_array_equal(views[v], expected)
    centre = sampling.eval_views(frames, 3, 2, 8, num_clips=1, num_crops=1)
    np.testing.assert_array_equal(centre[0], frames[[2, 4, 6], :, 3:11])
    # Portrait frames: crops run along the height.
    tall = np.ascontiguousarray(frames.transpose(0, 2, 1, 3))
    views = sampling.eval_views(tall, 3, 2, 8, num_clips=1, num_crops=3)
    np.testing.assert_array_equal(views[2], tall[[2, 4, 6], 6:14, :])
    with pytest.raises(ValueError, match="Expected 1 or 3. Received: num_crops=2"):
        sampling.eval_views(frames, 3, 2, 8, num_crops=2)


def test_test_views_resize_matches_tf_image_resize():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(6, 30, 40, 3), dtype=np.uint8)
    views = sampling.eval_views(frames, 2, 1, 12, num_clips=1, num_crops=1)
    # Short side 30 -> 12: long side 40 -> 16; centre crop of width 12 at 2.
    resized = tf.image.resize(frames, (12, 16), antialias=True).numpy()
    expected = np.clip(np.round(resized), 0, 255).astype(np.uint8)[[2, 3], :, 2:14]
    np.testing.assert_array_equal(views[0], expected)


def test_short_side_shape_rules_agree():
    from clipspec.decode import resized_shape

    for h, w, side in [
        (240, 320, 128),
        (320, 240, 128),
        (256, 340, 112),
        (3, 5, 2),
        (100, 150, 20),
        (7, 7, 3),
        (480, 854, 128),
    ]:
        got = tuple(int(v) for v in views.short_side_shape(h, w, side))
        assert got == resized_shape(h, w, side), (h, w, side)
    assert resized_shape(3, 5, 2) == (2, 3)  # 5 * 2 / 3 = 3.33 -> 3
    assert resized_shape(4, 6, 3) == (3, 5)  # 6 * 3 / 4 = 4.5 -> 5 (halves up)


def test_video_level_scores_hand_computed():
    ids, scores = video_level_scores(
        [[0.2, 0.8], [0.4, 0.6], [1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], [7, 7, 3, 3, 7]
    )
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(scores, [[0.5, 0.5], [0.3, 0.7]], rtol=1e-6)
    with pytest.raises(ValueError, match="Expected view_scores"):
        video_level_scores([[1.0]], [1, 2])


# --------------------------------------------------------------------------
# The pipeline on prepared synthetic videos
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    dataset = write_synthetic_dataset(
        root / "videos", classes=3, per_class=3, frames=12, size=48, seed=1, test_fraction=0.34
    )
    # A short video (5 frames) to exercise looping.
    short = root / "videos" / "left" / "short.mp4"
    write_video(short, np.random.default_rng(2).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8))
    items = dataset.items + [VideoItem(str(short), 0, "clockwise", "test")]
    dataset = VideoDataset(items, dataset.class_names)
    prepare_dataset(
        dataset, root / "prepared", short_side=32, workers=0, videos_per_shard=2, progress=False
    )
    return root / "prepared"


def shard_frames(prepared, subset):
    """{video_id: (uint8 frames decoded with tf.io.decode_jpeg, label)}."""
    out = {}
    for prefix in shard_paths(load_manifest(prepared), subset):
        for video in shard_format.read_videos(prefix):
            frames = np.stack([tf.io.decode_jpeg(j).numpy() for j in video["frames"]])
            out[video["video_id"]] = (frames, video["label"])
    return out


def collect(dataset, limit=None):
    parts = [[t.numpy() for t in batch] for batch in dataset.take(limit or -1)]
    return [np.concatenate(p) for p in zip(*parts)]


@pytest.mark.slow
def test_train_clips_shapes_dtypes_and_pixels(prepared):
    manifest = load_manifest(prepared)
    train_videos = manifest["subsets"]["train"]["videos"]
    data = clip_dataset(
        prepared,
        "train",
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=3,
        augmentation="center",
        flip=False,
        deterministic=True,
        seed=0,
    )
    clips, labels = collect(data)
    assert clips.shape == (train_videos // 3 * 3, T, S, S, 3)
    assert clips.dtype == np.float32 and labels.dtype == np.int32
    assert set(labels.tolist()) <= {0, 1, 2}
    # Each clip is the centre square (32x32 of 32x32) of some strided run of
    # frames, resized to S and normalised: find its start independently.
    videos = list(shard_frames(prepared, "train").values())
    for clip, label in zip(clips, labels):
        matches = []
        for frames, video_label in videos:
            for start in range(len(frames) - (T - 1) * STRIDE):
                run = frames[start : start + T * STRIDE : STRIDE]
                want = tf.image.resize(run, (S, S)).numpy()
                want = (want / 255.0 - DEFAULT_MEAN) / DEFAULT_STD
                if np.abs(want - clip).max() < 1e-4:
                    matches.append(video_label)
        assert label in matches


@pytest.mark.slow
def test_train_randomness_and_determinism(prepared):
    def first_batches(**kwargs):
        data = clip_dataset(
            prepared, "train", clip_length=T, stride=STRIDE, crop_size=S, batch_size=2, **kwargs
        )
        return collect(data, 2)

    a = first_batches(deterministic=True, seed=7)
    b = first_batches(deterministic=True, seed=7)
    c = first_batches(deterministic=True, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # Each pass over a dataset (epoch) draws new clips, reproducibly.
    data = clip_dataset(
        prepared,
        "train",
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=2,
        deterministic=True,
        seed=7,
    )
    epoch1, epoch2 = collect(data, 2), collect(data, 2)
    assert np.array_equal(epoch1[0], a[0]) and not np.array_equal(epoch1[0], epoch2[0])
    # Without a seed, two datasets differ.
    assert not np.array_equal(first_batches()[0], first_batches()[0])


def test_train_flip_and_crop_are_per_clip(prepared):
    """With one video and many draws: every clip is that video's (possibly
    mirrored) crop; both orientations and several crop sizes occur."""
    data = clip_dataset(
        prepared,
        "train",
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=1,
        shuffle=False,
        repeat=True,
        seed=3,
        deterministic=True,
        augmentation="center",
    )
    videos = shard_frames(prepared, "train")
    first_id = min(videos)
    frames = videos[first_id][0]
    runs = [frames[s : s + T * STRIDE : STRIDE] for s in range(len(frames) - (T - 1) * STRIDE)]
    plain = [
        ((tf.image.resize(r, (S, S)).numpy() / 255.0 - DEFAULT_MEAN) / DEFAULT_STD) for r in runs
    ]
    seen = set()
    count = len(videos)
    for i, (clip, _) in enumerate(data.take(count * 12)):
        if i % count:
            continue  # only the first video of each pass
        clip = clip.numpy()[0]
        for want in plain:
            if np.abs(clip - want).max() < 1e-4:
                seen.add("plain")
            if np.abs(clip - want[:, :, ::-1]).max() < 1e-4:
                seen.add("flipped")
    assert seen == {"plain", "flipped"}


@pytest.mark.slow
def test_test_mode_views_grouping_and_scores(prepared):
    manifest = load_manifest(prepared)
    videos = shard_frames(prepared, "test")
    data = clip_dataset(
        prepared,
        "test",
        mode="test",
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=4,
        num_clips=2,
        num_crops=3,
    )
    clips, labels, ids = collect(data)
    assert manifest["subsets"]["test"]["videos"] == len(videos)
    assert clips.shape == (6 * len(videos), T, S, S, 3)
    # The views of a video are consecutive, six of them, with its label.
    assert ids.tolist() == [v for v in sorted(videos) for _ in range(6)]
    for video_id, (frames, label) in videos.items():
        mine = ids == video_id
        assert set(labels[mine].tolist()) == {label}
        want = sampling.normalize(sampling.eval_views(frames, T, STRIDE, S, 2, 3))
        np.testing.assert_allclose(clips[mine], want, atol=1e-5)
    # The short video (5 frames < span 7) loops: its frames 0, 2, 4, 1.
    short_id = max(videos)
    frames = videos[short_id][0]
    assert len(frames) == 5
    want = sampling.normalize(sampling.eval_views(frames[[0, 2, 4, 1]], T, 1, S, 1, 1))
    np.testing.assert_allclose(clips[ids == short_id][1], want[0], atol=1e-5)

    # Video-level scores: mean over the views of a "model".
    def brightness(batch):
        mean = tf.reduce_mean(batch, axis=[1, 2, 3, 4])
        return tf.stack([mean, -mean], axis=1)

    model_scores = predict_video_scores(brightness, data)
    ids_by_hand, scores_by_hand = video_level_scores(brightness(clips).numpy(), ids)
    assert model_scores["video_ids"].tolist() == ids_by_hand.tolist() == sorted(videos)
    np.testing.assert_allclose(model_scores["scores"], scores_by_hand, rtol=1e-5)
    np.testing.assert_allclose(
        model_scores["scores"][:, 0], [clips[ids == v].mean() for v in sorted(videos)], rtol=1e-4
    )
    assert model_scores["labels"].tolist() == [videos[v][1] for v in sorted(videos)]
    assert model_scores["views"].tolist() == [6] * len(videos)


@pytest.mark.slow
def test_keras_model_and_distribution(prepared):
    data = clip_dataset(
        prepared,
        "train",
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=4,
        repeat=True,
        seed=0,
    )
    # the process's shared strategy: two MirroredStrategy objects in one
    # process reuse collective instance keys and abort each other's all-reduce
    strategy = make_strategy()
    assert strategy.num_replicas_in_sync == 2
    distributed = strategy.experimental_distribute_dataset(data)
    clips, labels = next(iter(distributed))
    local = strategy.experimental_local_results(clips)
    assert [tuple(c.shape) for c in local] == [(2, T, S, S, 3)] * 2

    @tf.function
    def count(labels):
        return strategy.reduce("SUM", strategy.run(lambda y: tf.size(y), args=(labels,)), axis=None)

    assert int(count(labels)) == 4
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((T, S, S, 3)),
                keras.layers.GlobalAveragePooling3D(),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_clip_dataset_argument_errors(prepared, tmp_path):
    with pytest.raises(ValueError, match="Subset 'val' is not in the manifest"):
        clip_dataset(prepared, "val")
    with pytest.raises(ValueError, match="Expected 'train' or 'test'. Received: mode='eval'"):
        clip_dataset(prepared, mode="eval")
    with pytest.raises(ValueError, match="Expected 1 or 3. Received: num_crops=2"):
        clip_dataset(prepared, "test", mode="test", num_crops=2)
    with pytest.raises(ValueError, match=r"Received: std=\(0.2, 0.0, 0.2\)"):
        clip_dataset(prepared, std=(0.2, 0.0, 0.2))
    with pytest.raises(FileNotFoundError, match="no such manifest"):
        clip_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        clip_dataset(tmp_path)


# --------------------------------------------------------------------------
# Device-side augmentation
# --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("augmentation", ["scale_jitter", "center"])
def test_device_augmentation_equals_host_augmentation(prepared, augmentation):
    from keras_classreg import ClipAugmentation

    common = dict(
        clip_length=T,
        stride=STRIDE,
        crop_size=S,
        batch_size=2,
        augmentation=augmentation,
        deterministic=True,
        seed=5,
    )
    host = collect(clip_dataset(prepared, "train", **common))
    device = list(clip_dataset(prepared, "train", augment_on="device", **common))
    layer = ClipAugmentation(S, DEFAULT_MEAN, DEFAULT_STD)
    inputs = device[0][0]
    assert inputs["frames"].dtype == tf.uint8 and inputs["frames"].shape == (2, T, 32, 32, 3)
    assert inputs["window"].dtype == tf.int32 and inputs["window"].shape == (2, 4)
    assert inputs["mirror"].dtype == tf.int32 and inputs["mirror"].shape == (2,)
    clips = np.concatenate([layer(x).numpy() for x, _ in device])
    labels = np.concatenate([y.numpy() for _, y in device])
    np.testing.assert_array_equal(labels, host[1])
    np.testing.assert_allclose(clips, host[0], atol=1e-4)


def test_device_augmentation_argument_errors(prepared, tmp_path):
    with pytest.raises(ValueError, match="Expected 'host' or 'device'. Received: augment_on='gpu'"):
        clip_dataset(prepared, augment_on="gpu")
    with pytest.raises(ValueError, match="'scale_jitter' or 'center' with augment_on='device'"):
        clip_dataset(prepared, augment_on="device", augmentation="random_resized_crop")
    manifest = load_manifest(prepared)
    unsized = dict(manifest, short_side=None)
    with pytest.raises(ValueError, match="augment_on='device' needs frames whose short side"):
        clip_dataset(unsized, augment_on="device")


def test_train_epochs_are_permutations_of_every_video():
    """Train mode's order: each epoch every video exactly once, a new order
    each epoch and each iteration, the same for the same seed."""
    from training.data.pipeline import _epochs

    rows = [int(r) for r in _epochs(50, seed=3, shuffle=True, repeat=True).take(150)]
    epochs = [rows[i : i + 50] for i in (0, 50, 100)]
    assert all(sorted(epoch) == list(range(50)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(50))
    once = _epochs(50, seed=3, shuffle=True, repeat=False)
    first, second = [[int(r) for r in once] for _ in range(2)]
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    assert first == [int(r) for r in _epochs(50, seed=3, shuffle=True, repeat=False)]
    assert [int(r) for r in _epochs(5, seed=None, shuffle=False, repeat=False)] == list(range(5))
