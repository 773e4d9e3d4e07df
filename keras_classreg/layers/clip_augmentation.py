"""`ClipAugmentation`: crop, resize, flip and normalise clips on the device."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_classreg")
class ClipAugmentation(keras.layers.Layer):
    """Crops a window of each clip, resizes it, mirrors it, normalises it.

    The accelerator-side half of a video input pipeline: the host decodes
    frames and draws the random window and flip
    (`training.data.clip_dataset(..., augment_on="device")`); this layer
    turns them into the model's input, so the CPU does not spend its time
    resampling and normalising float clips.

    For each clip, the window `(y, x, height, width)` of every frame is
    resized to `crop_size x crop_size` by bilinear interpolation with
    half-pixel centres and no antialiasing — the same samples as
    `tf.image.resize(window, (crop_size, crop_size), antialias=False)` —
    mirrored left-right when `mirror` is 1, and mapped to
    `(x / 255 - mean) / std`. The resampling is two small matrix products
    per frame (separable interpolation weights, two non-zeros per row).

    Inputs: a dict with `"frames"` (`[B, T, H, W, C]`, any real or integer
    dtype, pixels in [0, 255]), `"window"` (int `[B, 4]`, inside `H x W`)
    and `"mirror"` (int or bool `[B]`).
    Output: float `[B, T, crop_size, crop_size, C]` (the layer's compute
    dtype).

    Args:
        crop_size: side of the output frames.
        mean, std: per-channel normalisation of [0, 1] pixels.

    Example:

    >>> import numpy as np
    >>> layer = ClipAugmentation(crop_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    >>> frames = np.arange(8 * 8, dtype="uint8").reshape(1, 1, 8, 8, 1)
    >>> frames = np.repeat(frames, 3, axis=-1)
    >>> out = layer({"frames": frames, "window": np.array([[0, 0, 8, 8]]),
    ...              "mirror": np.array([0])})
    >>> tuple(out.shape)
    (1, 1, 4, 4, 3)
    """

    def __init__(self, crop_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(
                "Invalid value for argument `crop_size`. Expected a positive int. "
                f"Received: crop_size={crop_size!r}"
            )
        if len(mean) != len(std) or min(float(s) for s in std) <= 0:
            raise ValueError(
                "Invalid value for arguments `mean`/`std`. Expected one value per "
                f"channel each, std > 0. Received: mean={mean!r}, std={std!r}"
            )
        self.crop_size = crop_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def build(self, input_shape):
        channels = input_shape["frames"][-1]
        if channels is not None and channels != len(self.mean):
            raise ValueError(
                f"ClipAugmentation has {len(self.mean)} mean/std values but its "
                f"frames have {channels} channels (input shape "
                f"{input_shape['frames']})."
            )
        super().build(input_shape)

    def _weights(self, start, size, limit, reverse=None):
        """`[B, S, limit]` interpolation weights of the output positions
        along one axis (TensorFlow's half-pixel bilinear rule)."""
        steps = ops.arange(self.crop_size, dtype="float32")
        if reverse is not None:  # mirrored outputs read the window backwards
            steps = ops.where(reverse[:, None], self.crop_size - 1 - steps, steps)
        else:
            steps = ops.broadcast_to(steps, (ops.shape(size)[0], self.crop_size))
        size = ops.cast(size, "float32")[:, None]
        position = ops.maximum((steps + 0.5) * (size / self.crop_size) - 0.5, 0.0)
        low = ops.floor(position)
        fraction = position - low
        low = ops.cast(low, "int32")
        high = ops.minimum(low + 1, ops.cast(size, "int32") - 1)
        start = ops.cast(start, "int32")[:, None]
        return (
            ops.one_hot(start + low, limit) * (1.0 - fraction)[..., None]
            + ops.one_hot(start + high, limit) * fraction[..., None]
        )

    def call(self, inputs):
        frames = ops.cast(inputs["frames"], "float32")
        window = ops.cast(inputs["window"], "int32")
        mirror = ops.cast(ops.reshape(inputs["mirror"], (-1,)), "bool")
        height, width = ops.shape(frames)[2], ops.shape(frames)[3]
        rows = self._weights(window[:, 0], window[:, 2], height)
        cols = self._weights(window[:, 1], window[:, 3], width, reverse=mirror)
        out = ops.einsum("bsh,bthwc->btswc", rows, frames)
        out = ops.einsum("brw,btswc->btsrc", cols, out)
        scale = ops.convert_to_tensor([1.0 / (255.0 * s) for s in self.std], "float32")
        offset = ops.convert_to_tensor([m / s for m, s in zip(self.mean, self.std)], "float32")
        return ops.cast(out * scale - offset, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, time = input_shape["frames"][:2]
        return (batch, time, self.crop_size, self.crop_size, input_shape["frames"][-1])

    def get_config(self):
        config = super().get_config()
        config.update(crop_size=self.crop_size, mean=list(self.mean), std=list(self.std))
        return config
