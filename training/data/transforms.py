"""TensorFlow ops of the clip pipeline: frame indices, crops, resizing.

Graph versions of the rules in `training.data.sampling` (same integer
arithmetic, tested against the NumPy versions) plus the resize/crop code that
both `clip_dataset(mode="test")` and `sampling.test_views` run, so that the
two give identical views.

Example:

>>> import tensorflow as tf
>>> from training.data import transforms
>>> transforms.clip_indices(tf.constant(5), 4, 2, tf.constant(0)).numpy()
array([0, 2, 4, 1], dtype=int32)
"""

import tensorflow as tf

RESIZE_METHOD = "bilinear"


def clip_indices(num_frames, clip_length, stride, start, short_video="loop"):
    """Graph version of `sampling.clip_frame_indices` (int32 `[clip_length]`)."""
    num_frames = tf.cast(num_frames, tf.int32)
    indices = tf.cast(start, tf.int32) + tf.range(clip_length, dtype=tf.int32) * stride
    if short_video == "loop":
        return tf.math.floormod(indices, num_frames)
    return tf.minimum(indices, num_frames - 1)


def max_start(num_frames, clip_length, stride):
    """Graph version of `sampling.max_clip_start`."""
    span = (clip_length - 1) * stride + 1
    return tf.maximum(tf.cast(num_frames, tf.int32) - span, 0)


def test_starts(num_frames, clip_length, stride, num_clips):
    """Graph version of `sampling.test_clip_starts` (int32 `[num_clips]`)."""
    last = max_start(num_frames, clip_length, stride)
    if num_clips == 1:
        return tf.reshape(last // 2, [1])
    i = tf.range(num_clips, dtype=tf.int32)
    return (2 * i * last + num_clips - 1) // (2 * (num_clips - 1))


def test_indices(num_frames, clip_length, stride, num_clips, short_video="loop"):
    """Graph version of `sampling.test_clip_indices` (`[num_clips, clip_length]`)."""
    num_frames = tf.cast(num_frames, tf.int32)
    starts = test_starts(num_frames, clip_length, stride, num_clips)
    indices = starts[:, None] + tf.range(clip_length, dtype=tf.int32)[None, :] * stride
    if short_video == "loop":
        return tf.math.floormod(indices, num_frames)
    return tf.minimum(indices, num_frames - 1)


def short_side_shape(height, width, short_side):
    """`(height, width)` with the short side scaled to `short_side`; the long
    side rounded half up (same rule as `decode.resized_shape`)."""
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    short = tf.minimum(height, width)

    def scaled(side):
        return tf.maximum((2 * side * short_side + short) // (2 * short), 1)

    return (tf.where(height <= width, short_side, scaled(height)),
            tf.where(height <= width, scaled(width), short_side))


def resize(images, height, width, antialias=True):
    """Bilinear resize of `[N, h, w, 3]` to float32 `[N, height, width, 3]`.

    `antialias=True` (the test views) low-pass filters when shrinking;
    `False` (train clips, 3-4x cheaper) is plain bilinear interpolation.
    """
    return tf.image.resize(images, tf.stack([height, width]),
                           method=RESIZE_METHOD, antialias=antialias)


def to_uint8(images):
    """Round and clip float pixels to uint8."""
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


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
    shape = tf.shape(pool)
    height, width = short_side_shape(shape[1], shape[2], crop_size)
    resized = to_uint8(resize(pool, height, width))
    clips = tf.gather(resized, positions)  # [C, T, H, W, 3]
    free_y, free_x = height - crop_size, width - crop_size
    if num_crops == 1:
        offsets = [(free_y // 2, free_x // 2)]
    else:
        # The short side equals crop_size, so only the long side has room.
        offsets = [(f * free_y // 2, f * free_x // 2) for f in (0, 1, 2)]
    crops = [clips[:, :, y:y + crop_size, x:x + crop_size, :] for y, x in offsets]
    views = tf.stack(crops, axis=1)  # [C, num_crops, T, S, S, 3]
    t = tf.shape(positions)[1]
    return tf.reshape(views, [-1, t, crop_size, crop_size, 3])


def test_views_from_frames(frames, indices, crop_size, num_crops):
    """Test views of decoded `frames` `[N, h, w, 3]` for clip `indices` `[C, T]`."""
    indices = tf.convert_to_tensor(indices, tf.int32)
    unique, positions = tf.unique(tf.reshape(indices, [-1]))
    pool = tf.gather(tf.convert_to_tensor(frames, tf.uint8), unique)
    return views_from_pool(pool, tf.reshape(positions, tf.shape(indices)),
                           crop_size, num_crops)


def crop_window(height, width, seed, augmentation="scale_jitter",
                jitter_scale=(1.0, 1.43), crop_area=(0.25, 1.0),
                aspect_ratio=(3 / 4, 4 / 3)):
    """A random crop window `[y, x, h, w]` (int32) in an `height x width` frame.

    `scale_jitter`: the frame's short side is (virtually) resized to
    `s = u * crop_size`, `u ~ U(jitter_scale)`, and a random square
    `crop_size` crop is taken: on the original frame that is a square of side
    `short / u` at a uniform random position.
    `random_resized_crop`: Inception-style box covering `crop_area` of the
    frame with aspect ratio in `aspect_ratio` (10 attempts, then the whole
    frame); the box is later resized to `crop_size x crop_size`.
    `center`: a square centre crop of side `short`.
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    short = tf.minimum(height, width)
    if augmentation == "random_resized_crop":
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([height, width, 3]),
            bounding_boxes=tf.zeros([1, 0, 4]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=aspect_ratio,
            area_range=crop_area,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return tf.stack([begin[0], begin[1], size[0], size[1]])
    if augmentation == "center":
        side = short
        return tf.stack([(height - side) // 2, (width - side) // 2, side, side])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scale = tf.random.stateless_uniform([], seeds[0], jitter_scale[0], jitter_scale[1])
    side = tf.cast(tf.math.floor(tf.cast(short, tf.float32) / scale), tf.int32)
    side = tf.clip_by_value(side, 1, short)
    y = tf.random.stateless_uniform([], seeds[1], 0, height - side + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[2], 0, width - side + 1, dtype=tf.int32)
    return tf.stack([y, x, side, side])


def canvas_square(frames, window, side):
    """The `side x side` square of `frames` `[T, h, w, 3]` (short side
    `side`) that holds the square crop `window` `[y, x, h, w]`, and the
    window's position inside that square (for device-side augmentation)."""
    shape = tf.shape(frames)
    y = tf.minimum(window[0], shape[1] - side)
    x = tf.minimum(window[1], shape[2] - side)
    square = tf.slice(frames, tf.stack([0, y, x, 0]), tf.stack([-1, side, side, -1]))
    return square, tf.stack([window[0] - y, window[1] - x, window[2], window[3]])


# Library functions, not tests (see sampling.py).
for _function in (test_starts, test_indices, test_views_from_frames):
    _function.__test__ = False
del _function
