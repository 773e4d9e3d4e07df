"""The `tf.data` clip pipeline over prepared shards.

`clip_dataset` reads the shards that `prepare` wrote and yields clips:

- **train mode**: per video one clip of `clip_length` frames every `stride`
  frames from a random start. The video's frame offsets are read from its
  shard's index, then only the records from the clip's first to its last
  frame, in one read (`training.data.shard_format`, TensorFlow's TFRecord
  reader: no Python in tf.data threads, any `tf.io.gfile` filesystem), and
  the clip's frames decoded; then one random window for the whole clip (scale jitter, random
  resized crop or centre), random horizontal flip, bilinear resize to
  `crop_size` (not antialiased: the window is at most a few times the crop,
  and antialiasing costs 3-4x more), `(x / 255 - mean) / std` (flip and
  normalisation fused by XLA). Yields
  `(clips float32 [B, T, S, S, 3], labels int32 [B])`.
- **train mode, `augment_on="device"`**: the host stops after decoding and
  yields uint8 frames plus the window and flip it drew; the accelerator
  does the resize, flip and normalisation in the model
  (`keras_classreg.layers.ClipAugmentation`, same results within float
  rounding). Use it when the model trains on a GPU/TPU and the CPU is the
  bottleneck: the host's work per clip drops by about half (see
  `benchmarks/input_pipeline.py`). Yields `({"frames": uint8 [B, T, C, C, 3],
  "window": int32 [B, 4], "mirror": int32 [B]}, labels)`, where `C` is the
  prepared short side and `window` is `(y, x, height, width)` inside the
  `C x C` square of each clip.
- **test mode**: per video `num_clips` uniform clips × `num_crops` crops
  (exactly `sampling.eval_views`, then normalised); each video's records
  are read in one read, the frames its views use decoded. Yields
  `(clips float32 [B, T, S, S, 3], labels int32 [B], video_ids int32 [B])`;
  the views of a video are consecutive and share its `video_id`, and videos
  come in `video_id` order (the order of the subset's list).
  `video_level_scores` averages per-view scores into per-video scores.

Short videos (fewer than `(clip_length - 1) * stride + 1` frames) loop
(`short_video="loop"`) or repeat their last frame (`"pad"`).

Randomness: every random choice is a stateless op seeded from a
`tf.data.Dataset.random` stream zipped to the videos, so `seed=…` with
`deterministic=True` gives the same clips, crops and order on every run
(and different ones each epoch), while `deterministic=False` lets parallel
stages return out of order for speed. Train mode shuffles the whole list of
videos each epoch (a stateless permutation computed row by row: no shuffle
buffer, so the first clip comes as soon for a million videos as for ten).

The dataset is `tf.distribute`-ready: batches are global batches; pass it to
`model.fit` under a strategy, or to `strategy.experimental_distribute_dataset`.

Example:

>>> from training.data import clip_dataset, video_level_scores
>>> train = clip_dataset("prepared/", "train", clip_length=16, crop_size=112,
...                      batch_size=8, repeat=True)
>>> test = clip_dataset("prepared/", "test", mode="test", num_clips=10,
...                     num_crops=3)
>>> for clips, labels, video_ids in test.take(1):
...     print(clips.shape)          # (8, 16, 112, 112, 3)
"""

import numpy as np
import tensorflow as tf

from clipspec import views as clip_views
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, SHORT_VIDEO_MODES
from training.config import AUGMENT_ON, AUGMENTATIONS
from training.data import shard_format, transforms
from training.data.manifest import load_manifest, shard_paths

DEFAULT_TEST_CLIPS = 10
DEFAULT_SHUFFLE_BUFFER = 128


def _fail(name, value, expected):
    raise ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
    )


def _int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        _fail(name, value, f"an int >= {low}")
    return int(value)


def _triple(name, value, positive):
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or (positive and min(values) <= 0):
        _fail(name, value, "3 per-channel floats" + (" > 0" if positive else ""))
    return values


def _pair(name, value, low, high):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        a = b = None
    if a is None or not low < a <= b <= high:
        _fail(name, value, f"a pair (min, max) with {low} < min <= max <= {high}")
    return a, b


def clip_dataset(
    manifest_or_dir,
    subset="train",
    mode="train",
    clip_length=16,
    stride=2,
    crop_size=112,
    batch_size=8,
    num_clips=None,
    num_crops=1,
    mean=DEFAULT_MEAN,
    std=DEFAULT_STD,
    deterministic=False,
    seed=None,
    shuffle=None,
    repeat=False,
    augmentation="scale_jitter",
    flip=True,
    short_video="loop",
    shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
    drop_remainder=None,
    jitter_scale=(1.0, 1.43),
    crop_area=(0.25, 1.0),
    aspect_ratio=(3 / 4, 4 / 3),
    augment_on="host",
):
    """A `tf.data.Dataset` of normalised clips from prepared shards.

    Args:
        manifest_or_dir: the prepared folder, its `manifest.json` or a dict
            from `load_manifest`.
        subset: which subset's shards to read (`"train"`, `"test"`, …).
        mode: `"train"` (one random augmented clip per video) or `"test"`
            (`num_clips` × `num_crops` fixed views per video).
        clip_length: frames per clip (T).
        stride: step between the clip's frames in the video.
        crop_size: side S of the square output frames.
        batch_size: global batch size.
        num_clips: test mode: uniform temporal clips per video (default 10).
        num_crops: test mode: 1 (centre) or 3 (along the long side).
        mean, std: per-channel normalisation of [0, 1] pixels.
        deterministic: fixed order and seeds (default seed 0); slower.
        seed: int seed of shuffling and augmentation (None: random unless
            deterministic).
        shuffle: shuffle files and videos (default: True in train mode).
        repeat: repeat forever (for `steps_per_epoch` training).
        augmentation: train mode: `"scale_jitter"` (short side resized to
            `U(jitter_scale) * crop_size`, random square crop),
            `"random_resized_crop"` (area `crop_area`, aspect `aspect_ratio`)
            or `"center"` (largest centre square; no spatial randomness).
        flip: train mode: random horizontal flips.
        short_video: `"loop"` or `"pad"` for videos shorter than a clip.
        shuffle_buffer: test mode with `shuffle=True`: videos (rows of the
            shard indexes, not their frames) held for shuffling; train mode
            shuffles the whole video list.
        drop_remainder: drop a last partial batch (default: True in train
            mode, so batches have a static size; False in test mode).
        jitter_scale, crop_area, aspect_ratio: see `augmentation`.
        augment_on: train mode: `"host"` (the CPU resizes, flips and
            normalises) or `"device"` (the host yields uint8 frames, window
            and flip for `keras_classreg.layers.ClipAugmentation`; needs
            square windows: `scale_jitter` or `center`).

    Returns:
        train mode: `(clips [B,T,S,S,3] float32, labels [B] int32)`, or with
        `augment_on="device"` `({"frames", "window", "mirror"}, labels)`;
        test mode: `(clips, labels, video_ids [B] int32)`.
    """
    if mode not in ("train", "test"):
        _fail("mode", mode, "'train' or 'test'")
    clip_length = _int("clip_length", clip_length)
    stride = _int("stride", stride)
    crop_size = _int("crop_size", crop_size, 8)
    batch_size = _int("batch_size", batch_size)
    mean = _triple("mean", mean, positive=False)
    std = _triple("std", std, positive=True)
    if short_video not in SHORT_VIDEO_MODES:
        _fail("short_video", short_video, "'loop' or 'pad'")
    if augmentation not in AUGMENTATIONS:
        _fail("augmentation", augmentation, f"one of {', '.join(AUGMENTATIONS)}")
    if augment_on not in AUGMENT_ON:
        _fail("augment_on", augment_on, "'host' or 'device'")
    if augment_on == "device" and mode == "train" and augmentation == "random_resized_crop":
        _fail(
            "augmentation",
            augmentation,
            "'scale_jitter' or 'center' with "
            "augment_on='device' (its windows are squares within the short side)",
        )
    if mode == "test":
        num_clips = _int("num_clips", DEFAULT_TEST_CLIPS if num_clips is None else num_clips)
        if isinstance(num_crops, bool) or num_crops not in (1, 3):
            _fail("num_crops", num_crops, "1 or 3")
    jitter_scale = _pair("jitter_scale", jitter_scale, 0.0, 10.0)
    crop_area = _pair("crop_area", crop_area, 0.0, 1.0)
    aspect_ratio = _pair("aspect_ratio", aspect_ratio, 0.0, 10.0)
    shuffle = (mode == "train") if shuffle is None else bool(shuffle)
    shuffle_buffer = _int("shuffle_buffer", shuffle_buffer)
    drop_remainder = (mode == "train") if drop_remainder is None else bool(drop_remainder)
    if seed is None and deterministic:
        seed = 0
    if seed is not None:
        seed = _int("seed", seed, 0)

    manifest = load_manifest(manifest_or_dir)
    prefixes = shard_paths(manifest, subset)
    if manifest["subsets"][subset].get("videos", 1) == 0:
        raise ValueError(
            f"Subset {subset!r} of {manifest['root']} has no videos "
            "(all were skipped; see the manifest's 'skipped')."
        )
    table = shard_format.load_table(prefixes)
    reader = shard_format.frame_reader(prefixes)
    videos = len(table["video_id"])
    video_at = _row_reader(table)
    options = tf.data.Options()
    options.deterministic = bool(deterministic) or mode == "test"
    ordered = options.deterministic
    normalise = _normaliser(mean, std)
    if mode == "train":
        canvas = _canvas_side(manifest, table) if augment_on == "device" else None
        rows = _epochs(videos, seed, shuffle, repeat)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        train_clip = _train_clip_fn(
            reader,
            clip_length,
            stride,
            crop_size,
            augmentation,
            flip,
            short_video,
            jitter_scale,
            crop_area,
            aspect_ratio,
            normalise,
            canvas,
        )
        dataset = tf.data.Dataset.zip((rows, seeds)).map(
            lambda row, seed: train_clip(video_at(row), seed),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=ordered,
        )
    else:
        # Rows in shard order: videos come in video_id order.
        dataset = tf.data.Dataset.range(videos)
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        test_views = _test_views_fn(
            reader, clip_length, stride, crop_size, num_clips, num_crops, short_video, normalise
        )
        dataset = dataset.map(
            lambda row: test_views(video_at(row)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).unbatch()
    dataset = dataset.batch(
        batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=ordered,
    )
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _row_reader(table):
    """`video_at(row)`: the row's fields from the video table, held once as
    tensors (a few ints per video; the frame offsets stay on disk)."""
    columns = {name: tf.constant(values) for name, values in table.items()}

    def video_at(row):
        return {name: tf.gather(values, row) for name, values in columns.items()}

    return video_at


# Folded into the epoch's random key, so the permutation's key differs
# from the clips' seeds drawn from the same stream.
_PERMUTATION_SALT = 0x5EED


def _epochs(videos, seed, shuffle, repeat):
    """Rows `0 .. videos - 1`, each epoch a new permutation of all of them
    when `shuffle` (`tf.random.experimental.index_shuffle`: a stateless
    permutation computed row by row, no buffer holding the list), forever
    when `repeat`."""
    if not shuffle:
        rows = tf.data.Dataset.range(videos)
        return rows.repeat() if repeat else rows
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    keys = keys if repeat else keys.take(1)
    last = tf.constant(max(videos - 1, 0), tf.int64)

    def epoch(key):
        key = tf.random.experimental.stateless_fold_in(key, _PERMUTATION_SALT)
        return tf.data.Dataset.range(videos).map(
            lambda row: tf.random.experimental.index_shuffle(row, key, last)
        )

    return keys.flat_map(epoch)


def _canvas_side(manifest, table):
    """The side of the square that device-augmented clips carry: the
    prepared short side, which every frame must have."""
    side = manifest.get("short_side")
    short = np.minimum(table["height"], table["width"])
    if side is None or np.any(short != side):
        raise ValueError(
            f"augment_on='device' needs frames whose short side is the prepared "
            f"short side; {manifest['root']} has short_side={side!r} and frames "
            f"with short sides {sorted(set(short.tolist()))[:5]}. Prepare with "
            "--short-side N, or use augment_on='host'."
        )
    return int(side)


def _normaliser(mean, std):
    """`(pixels, mirror=False) -> (x / 255 - mean) / std`, flipped if `mirror`.

    XLA-compiled: the cast, flip, scale and offset fused into one pass over
    the clip, instead of four TensorFlow ops that each read and write the
    whole clip (`python -m benchmarks.input_pipeline` measures the
    pipeline's clips/s; docs/benchmarks/input_pipeline.md).
    """
    scale = tf.constant([1.0 / (255.0 * s) for s in std], tf.float32)
    offset = tf.constant([m / s for m, s in zip(mean, std)], tf.float32)

    @tf.function(jit_compile=True)
    def normalise(pixels, mirror=False):
        pixels = tf.cast(pixels, tf.float32)
        pixels = tf.where(mirror, tf.reverse(pixels, axis=[-2]), pixels)
        # (x / 255 - mean) / std  ==  x * scale - offset
        return pixels * scale - offset

    return normalise


def _decode(jpegs, length=None):
    """Decodes a vector of JPEGs to uint8 `[N, h, w, 3]`; with a static
    `length` the loop is unrolled.

    Whole frames are decoded, then sliced: `tf.io.decode_and_crop_jpeg`
    saves no work, since JPEG's entropy decoding runs over the whole frame
    either way, and it was slower than a full decode and a slice on this
    pipeline's frame sizes (`benchmarks.input_pipeline` measures the
    pipeline as it is).
    """
    decode = lambda j: tf.io.decode_jpeg(j, channels=3)  # noqa: E731
    if length is not None:
        return tf.stack([decode(jpegs[i]) for i in range(length)])
    return tf.map_fn(decode, jpegs, fn_output_signature=tf.uint8, parallel_iterations=16)


def _train_clip_fn(
    reader,
    clip_length,
    stride,
    crop_size,
    augmentation,
    flip,
    short_video,
    jitter_scale,
    crop_area,
    aspect_ratio,
    normalise,
    canvas=None,
):
    """The train-mode map function over rows of the video table; with a
    `canvas` side it returns device-augmentation inputs instead of clips."""

    def train_clip(video, seed):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        num_frames = video["num_frames"]
        last = clip_views.max_start(num_frames, clip_length, stride)
        start = tf.random.stateless_uniform([], seeds[0], 0, last + 1, dtype=tf.int32)
        indices = clip_views.clip_indices(num_frames, clip_length, stride, start, short_video)
        window = transforms.crop_window(
            video["height"],
            video["width"],
            seeds[1],
            augmentation,
            jitter_scale=jitter_scale,
            crop_area=crop_area,
            aspect_ratio=aspect_ratio,
        )
        jpegs = reader(video, indices)
        frames = _decode(tf.ensure_shape(jpegs, [clip_length]), clip_length)
        mirror = (tf.random.stateless_uniform([], seeds[2]) < 0.5) if flip else tf.constant(False)
        if canvas is not None:
            frames, window = transforms.canvas_square(frames, window, canvas)
            inputs = {
                "frames": tf.ensure_shape(frames, [clip_length, canvas, canvas, 3]),
                "window": window,
                "mirror": tf.cast(mirror, tf.int32),
            }
            return inputs, video["label"]
        frames = frames[:, window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
        clip = clip_views.resize(frames, crop_size, crop_size, antialias=False)
        clip = tf.ensure_shape(clip, [clip_length, crop_size, crop_size, 3])
        clip = tf.ensure_shape(normalise(clip, mirror), [clip_length, crop_size, crop_size, 3])
        return clip, video["label"]

    return train_clip


def _test_views_fn(
    reader, clip_length, stride, crop_size, num_clips, num_crops, short_video, normalise
):
    count = num_clips * num_crops

    def video_views(video):
        indices = clip_views.eval_indices(
            video["num_frames"], clip_length, stride, num_clips, short_video
        )
        unique, positions = tf.unique(tf.reshape(indices, [-1]))
        # The records from the first to the last frame used, in one read;
        # each used frame decoded once.
        pool = _decode(reader(video, unique))
        clips = clip_views.views_from_pool(
            pool, tf.reshape(positions, [num_clips, clip_length]), crop_size, num_crops
        )
        clips = tf.ensure_shape(clips, [count, clip_length, crop_size, crop_size, 3])
        clips = tf.ensure_shape(normalise(clips), [count, clip_length, crop_size, crop_size, 3])
        return (clips, tf.fill([count], video["label"]), tf.fill([count], video["video_id"]))

    return video_views


def video_level_scores(view_scores, video_ids):
    """Averages per-view scores into per-video scores.

    Args:
        view_scores: `[N, K]` scores (e.g. probabilities) of N views.
        video_ids: `[N]` ints, the video of each view (test-mode
            `clip_dataset`'s third element).

    Returns:
        `(ids [M], scores [M, K])`: the distinct video ids in ascending order
        and the mean score of each video's views.

    >>> ids, scores = video_level_scores([[1., 0.], [0., 1.], [1., 1.]], [4, 4, 2])
    >>> ids.tolist(), scores.tolist()
    ([2, 4], [[1.0, 1.0], [0.5, 0.5]])
    """
    scores = np.asarray(view_scores, np.float64)
    ids = np.asarray(video_ids).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(ids):
        raise ValueError(
            f"Expected view_scores [N, K] and video_ids [N]; received shapes "
            f"{scores.shape} and {ids.shape}."
        )
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(unique), scores.shape[1]))
    np.add.at(sums, inverse, scores)
    counts = np.bincount(inverse, minlength=len(unique))
    return unique, (sums / counts[:, None]).astype(np.float32)


def predict_video_scores(model, dataset):
    """Runs `model` on a test-mode `clip_dataset` and averages per video.

    Args:
        model: a Keras model (called with `training=False`) or any callable
            mapping a batch of clips to scores `[B, K]`.
        dataset: `clip_dataset(..., mode="test")`.

    Returns:
        a dict with `video_ids [M]`, `labels [M]`, `scores [M, K]` (mean of
        the views' outputs) and `views` (views per video).
    """
    import keras

    if isinstance(model, keras.layers.Layer):
        call = lambda clips: model(clips, training=False)  # noqa: E731
    else:
        call = model
    outputs, labels, ids = [], [], []
    for element in dataset:
        if len(element) != 3:
            raise ValueError(
                "predict_video_scores needs a test-mode clip_dataset (clips, labels, video_ids)."
            )
        clips, label, video_id = element
        outputs.append(np.asarray(call(clips)))
        labels.append(label.numpy())
        ids.append(video_id.numpy())
    if not outputs:
        raise ValueError("The dataset is empty.")
    ids = np.concatenate(ids)
    labels = np.concatenate(labels)
    video_ids, scores = video_level_scores(np.concatenate(outputs), ids)
    first = {v: labels[i] for i, v in reversed(list(enumerate(ids)))}
    return {
        "video_ids": video_ids,
        "labels": np.array([first[v] for v in video_ids]),
        "scores": scores,
        "views": np.bincount(np.searchsorted(video_ids, ids)),
    }
