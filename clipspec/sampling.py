"""Which frames make a clip, and the test-time views of a video.

These helpers are shared by the `tf.data` pipeline (`clip_dataset`, whose
graph versions of the same rules live in `clipspec.views` and are tested
against these) and by the serving client, so that a clip built from a video
file in the client is the clip the model was evaluated on.

Rules:

- A clip is `clip_length` frames taken every `stride` frames from `start`:
  `start, start + stride, …` — it spans `(clip_length - 1) * stride + 1`
  frames.
- A **short video** (fewer frames than that span) is **looped**: frame
  indices wrap around (`index % num_frames`), so the clip replays the video
  from its start. `short_video="pad"` repeats the last frame instead.
- Test clips: `num_clips` starts spread uniformly over the possible starts
  `[0, num_frames - span]` (first and last included); one clip is the centre
  clip. For a short video every start is 0.
- Test crops: frames are resized so that the short side is `crop_size`
  (bilinear, antialiased, rounded to uint8), then cropped to
  `crop_size x crop_size`: one centre crop, or three crops along the long
  side (start, centre, end). Views are ordered clip-major:
  `[clip0/crop0, clip0/crop1, clip0/crop2, clip1/crop0, …]`.

Example:

>>> import numpy as np
>>> from clipspec.sampling import clip_frame_indices, eval_clip_starts
>>> clip_frame_indices(10, 4, 2, 0).tolist()
[0, 2, 4, 6]
>>> clip_frame_indices(5, 4, 2, 0).tolist()          # short: loops
[0, 2, 4, 1]
>>> eval_clip_starts(40, 8, 2, 3)
[0, 13, 25]
"""

import numpy as np

from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, SHORT_VIDEO_MODES


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive int. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def _check_mode(short_video):
    if short_video not in SHORT_VIDEO_MODES:
        raise ValueError(
            "Invalid value for argument `short_video`. Expected 'loop' or "
            f"'pad'. Received: short_video={short_video!r}"
        )


def clip_span(clip_length, stride):
    """Number of video frames a clip covers: `(clip_length - 1) * stride + 1`."""
    return (_positive_int("clip_length", clip_length) - 1) * _positive_int("stride", stride) + 1


def max_clip_start(num_frames, clip_length, stride):
    """The last start at which a clip fits in the video (0 when it never fits)."""
    return max(_positive_int("num_frames", num_frames) - clip_span(clip_length, stride), 0)


def clip_frame_indices(num_frames, clip_length, stride, start, short_video="loop"):
    """The frame indices of one clip.

    Args:
        num_frames: frames in the video (>= 1).
        clip_length: frames in the clip.
        stride: step between clip frames.
        start: first frame, `0 <= start < num_frames`.
        short_video: `"loop"` (indices wrap around) or `"pad"` (indices past
            the end repeat the last frame).

    Returns:
        `np.ndarray` of `clip_length` ints in `[0, num_frames)`.
    """
    num_frames = _positive_int("num_frames", num_frames)
    clip_length = _positive_int("clip_length", clip_length)
    stride = _positive_int("stride", stride)
    _check_mode(short_video)
    if (
        isinstance(start, bool)
        or not isinstance(start, (int, np.integer))
        or not 0 <= start < num_frames
    ):
        raise ValueError(
            "Invalid value for argument `start`. Expected an int in "
            f"[0, {num_frames}). Received: start={start!r}"
        )
    indices = int(start) + np.arange(clip_length, dtype=np.int64) * stride
    if short_video == "loop":
        return indices % num_frames
    return np.minimum(indices, num_frames - 1)


def eval_clip_starts(num_frames, clip_length, stride, num_clips):
    """Uniform test-clip starts: `num_clips` ints in `[0, max_clip_start]`.

    One clip is centred (`max_start // 2`); more clips are spread evenly from
    the first start to the last, rounded half up.
    """
    num_clips = _positive_int("num_clips", num_clips)
    last = max_clip_start(num_frames, clip_length, stride)
    if num_clips == 1:
        return [last // 2]
    return [(2 * i * last + num_clips - 1) // (2 * (num_clips - 1)) for i in range(num_clips)]


def eval_clip_indices(num_frames, clip_length, stride, num_clips, short_video="loop"):
    """`[num_clips, clip_length]` frame indices of the test clips."""
    starts = eval_clip_starts(num_frames, clip_length, stride, num_clips)
    return np.stack(
        [clip_frame_indices(num_frames, clip_length, stride, s, short_video) for s in starts]
    )


def eval_views(
    frames, clip_length, stride, crop_size, num_clips=1, num_crops=1, short_video="loop"
):
    """The test-time views of a decoded video.

    Args:
        frames: `uint8` array `[T, H, W, 3]` (e.g. from `decode_video`).
        clip_length, stride: clip sampling (see the module docstring).
        crop_size: side of the square crops.
        num_clips: uniform temporal clips.
        num_crops: 1 (centre) or 3 (along the long side).
        short_video: `"loop"` or `"pad"`.

    Returns:
        `uint8` array `[num_clips * num_crops, clip_length, crop_size,
        crop_size, 3]`, clip-major; the same views as `clip_dataset(...,
        mode="test")` builds (before normalisation) from the same frames.

    Example:

    >>> views = eval_views(np.zeros((30, 128, 170, 3), np.uint8), 16, 2, 112,
    ...                    num_clips=2, num_crops=3)
    >>> views.shape
    (6, 16, 112, 112, 3)
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            "Invalid value for argument `frames`. Expected a uint8 array "
            f"[T, H, W, 3]. Received: shape={frames.shape}, dtype={frames.dtype}"
        )
    crop_size = _positive_int("crop_size", crop_size)
    _check_num_crops(num_crops)
    indices = eval_clip_indices(len(frames), clip_length, stride, num_clips, short_video)
    from clipspec import views

    return views.views_from_frames(frames, indices, crop_size, num_crops).numpy()


def _check_num_crops(num_crops):
    if isinstance(num_crops, bool) or num_crops not in (1, 3):
        raise ValueError(
            "Invalid value for argument `num_crops`. Expected 1 or 3. "
            f"Received: num_crops={num_crops!r}"
        )


def normalize(clips, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    """`uint8` clips `[..., 3]` → float32 `(x / 255 - mean) / std`."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return ((np.asarray(clips, np.float32) / 255.0 - mean) / std).astype(np.float32)
