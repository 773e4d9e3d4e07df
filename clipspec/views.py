"""TensorFlow ops of the clip contract: clip indices, test-time views and the
export's preprocessing — one implementation for every consumer.

- Graph versions of the index rules of `clipspec.sampling` (same integer
  arithmetic, tested against the NumPy versions): `clip_indices`,
  `max_start`, `eval_starts`, `eval_indices`.
- `views_from_pool`: the test-time views of a video (frames resized so the
  short side is the crop size, bilinear + antialiased, rounded to uint8;
  one centre crop or three along the long side). The data pipeline's test
  mode, `clipspec.sampling.eval_views` (used by the serving client) and the
  export's preprocessing all call it, so a clip is cut the same way
  everywhere.
- `preprocess_clips`: uint8 clips of any length and frame size → the
  model's normalised float input (inside the exported SavedModel).

Example:

>>> import tensorflow as tf
>>> clip_indices(tf.constant(5), 4, 2, tf.constant(0)).numpy()
array([0, 2, 4, 1], dtype=int32)
"""

import tensorflow as tf

RESIZE_METHOD = "bilinear"


# ----------------------------------------------------------------------
# Frame indices (graph versions of clipspec.sampling)
# ----------------------------------------------------------------------
def clip_indices(num_frames, clip_length, stride, start, short_video="loop"):
    """Graph version of `sampling.clip_frame_indices` (int32 `[clip_length]`)."""
    num_frames = tf.cast(num_frames, tf.int32)
    indices = tf.cast(start, tf.int32) + tf.range(clip_length, dtype=tf.int32) * stride
    return _wrap(indices, num_frames, short_video)


def max_start(num_frames, clip_length, stride):
    """Graph version of `sampling.max_clip_start`."""
    span = (clip_length - 1) * stride + 1
    return tf.maximum(tf.cast(num_frames, tf.int32) - span, 0)


def eval_starts(num_frames, clip_length, stride, num_clips):
    """Graph version of `sampling.eval_clip_starts` (int32 `[num_clips]`)."""
    last = max_start(num_frames, clip_length, stride)
    if num_clips == 1:
        return tf.reshape(last // 2, [1])
    i = tf.range(num_clips, dtype=tf.int32)
    return (2 * i * last + num_clips - 1) // (2 * (num_clips - 1))


def eval_indices(num_frames, clip_length, stride, num_clips, short_video="loop"):
    """Graph version of `sampling.eval_clip_indices` (`[num_clips, clip_length]`)."""
    num_frames = tf.cast(num_frames, tf.int32)
    starts = eval_starts(num_frames, clip_length, stride, num_clips)
    indices = starts[:, None] + tf.range(clip_length, dtype=tf.int32)[None, :] * stride
    return _wrap(indices, num_frames, short_video)


def _wrap(indices, num_frames, short_video):
    if short_video == "loop":
        return tf.math.floormod(indices, num_frames)
    return tf.minimum(indices, num_frames - 1)


# ----------------------------------------------------------------------
# Resizing and views
# ----------------------------------------------------------------------
def short_side_shape(height, width, short_side):
    """`(height, width)` with the short side scaled to `short_side`; the long
    side rounded half up (same rule as `clipspec.decode.resized_shape`)."""
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    short = tf.minimum(height, width)

    def scaled(side):
        return tf.maximum((2 * side * short_side + short) // (2 * short), 1)

    return (
        tf.where(height <= width, short_side, scaled(height)),
        tf.where(height <= width, scaled(width), short_side),
    )


def resize(images, height, width, antialias=True):
    """Bilinear resize of `[N, h, w, 3]` to float32 `[N, height, width, 3]`.

    `antialias=True` (the test views) low-pass filters when shrinking;
    `False` (train clips, 3-4x cheaper) is plain bilinear interpolation.
    """
    return tf.image.resize(
        images, tf.stack([height, width]), method=RESIZE_METHOD, antialias=antialias
    )


def to_uint8(images):
    """Round and clip float pixels to uint8."""
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


def resize_short_side(frames, side):
    """uint8 frames `[N, h, w, 3]` with the short side resized to `side`
    (antialiased bilinear, rounded to uint8); unchanged when it already is."""
    shape = tf.shape(frames)
    height, width = short_side_shape(shape[1], shape[2], side)
    return tf.cond(
        tf.logical_and(tf.equal(height, shape[1]), tf.equal(width, shape[2])),
        lambda: tf.cast(frames, tf.uint8),
        lambda: to_uint8(resize(frames, height, width)),
    )


def views_from_pool(pool, positions, crop_size, num_crops):
    """Test views from a pool of frames.

    Args:
        pool: `[U, h, w, 3]` frames (uint8).
        positions: int `[num_clips, T]`, indices into `pool`.
        crop_size: side of the crops; the pool is first resized so that its
            short side is `crop_size`.
        num_crops: 1 (centre) or 3 (start, centre, end of the long side).

    Returns:
        uint8 `[num_clips * num_crops, T, crop_size, crop_size, 3]`.
    """
    resized = resize_short_side(pool, crop_size)
    shape = tf.shape(resized)
    clips = tf.gather(resized, positions)  # [C, T, H, W, 3]
    free_y, free_x = shape[1] - crop_size, shape[2] - crop_size
    if num_crops == 1:
        offsets = [(free_y // 2, free_x // 2)]
    else:
        # The short side equals crop_size, so only the long side has room.
        offsets = [(f * free_y // 2, f * free_x // 2) for f in (0, 1, 2)]
    crops = [clips[:, :, y : y + crop_size, x : x + crop_size, :] for y, x in offsets]
    views = tf.stack(crops, axis=1)  # [C, num_crops, T, S, S, 3]
    t = tf.shape(positions)[1]
    return tf.reshape(views, [-1, t, crop_size, crop_size, 3])


def views_from_frames(frames, indices, crop_size, num_crops):
    """Test views of decoded `frames` `[N, h, w, 3]` for clip `indices` `[C, T]`
    (only the frames the clips use are resized)."""
    indices = tf.convert_to_tensor(indices, tf.int32)
    unique, positions = tf.unique(tf.reshape(indices, [-1]))
    pool = tf.gather(tf.convert_to_tensor(frames, tf.uint8), unique)
    return views_from_pool(pool, tf.reshape(positions, tf.shape(indices)), crop_size, num_crops)


def normalize(pixels, mean, std):
    """`(x / 255 - mean) / std` per channel, float32."""
    mean = tf.constant([float(m) for m in mean], tf.float32)
    std = tf.constant([float(s) for s in std], tf.float32)
    return (tf.cast(pixels, tf.float32) / 255.0 - mean) / std


def preprocess_clips(clips, clip_format):
    """uint8 clips of any length and frame size → the model's float input.

    Time: centre crop to `clip_length` consecutive frames (the client sent
    frames already sampled at the stride), or, for shorter clips, frame
    indices `floor(i * t / T)` (each frame repeated). Space: one centre view
    exactly as `views_from_pool` cuts it (short side resized to the crop
    size, antialiased, rounded to uint8; clips already `S x S` are used as
    they are). Then `(x / 255 - mean) / std`.

    Args:
        clips: uint8 tensor `[N, t, h, w, 3]` with N, t, h, w >= 1.
        clip_format: the model's `ClipFormat`.

    Returns:
        float32 tensor `[N, T, S, S, 3]`.
    """
    length, size = clip_format.clip_length, clip_format.crop_size
    clips = tf.convert_to_tensor(clips)
    shape = tf.shape(clips)
    check = tf.debugging.assert_positive(
        shape[:4],
        message="`clips` must hold at least one clip of at least one frame "
        "of at least 1x1 pixels (shape [N, T, H, W, 3]); received (N, T, H, W)",
    )
    with tf.control_dependencies([check]):
        clips = tf.identity(clips)
    frames = shape[1]
    start = tf.maximum((frames - length) // 2, 0)
    steps = tf.range(length)
    index = tf.where(frames >= length, start + steps, steps * frames // length)
    clips = tf.gather(clips, index, axis=1)
    pool = tf.reshape(clips, tf.stack([-1, shape[2], shape[3], 3]))
    positions = tf.reshape(tf.range(tf.shape(pool)[0]), [-1, length])
    views = views_from_pool(pool, positions, size, num_crops=1)
    return normalize(views, clip_format.mean, clip_format.std)
