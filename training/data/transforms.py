"""TensorFlow ops of training-clip augmentation: random crop windows.

The index rules and the test-time views shared with evaluation, export and
the serving client live in `clipspec.views`; this module holds what only
training does.

Example:

>>> import tensorflow as tf
>>> window = crop_window(128, 171, tf.constant([1, 2]), "center")
>>> window.numpy().tolist()
[0, 21, 128, 128]
"""

import tensorflow as tf


def crop_window(
    height,
    width,
    seed,
    augmentation="scale_jitter",
    jitter_scale=(1.0, 1.43),
    crop_area=(0.25, 1.0),
    aspect_ratio=(3 / 4, 4 / 3),
):
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
