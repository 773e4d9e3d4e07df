"""Video decoding with PyAV (FFmpeg bindings that ship their own FFmpeg).

`decode_video` turns one video file into RGB frames, optionally resized so
that the short side has a given length. Every way a file can be unusable
(missing, empty, truncated, not a video, audio only, a single frame, a
decoding error) raises `VideoDecodeError` with a reason a person can act on;
`training.prepare` catches it, skips the file and reports the reason.

Example:

>>> from clipspec.decode import decode_video, VideoDecodeError
>>> try:
...     frames, fps = decode_video("clip.mp4", short_side=128)
... except VideoDecodeError as error:
...     print(error.path, error.reason)
"""

import os
import pathlib

import numpy as np

# The extensions the folder layout lists as videos (lower case).
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg",
    ".flv", ".wmv", ".3gp", ".ogv",
)

# A clip needs motion: a single picture is not a video.
MIN_FRAMES = 2


class VideoDecodeError(Exception):
    """A video file that cannot be used, with the reason.

    Attributes:
        path: the file, as a string.
        reason: what is wrong with it, in words (no traceback needed).
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # picklable across worker processes
        return (VideoDecodeError, (self.path, self.reason))


def resized_shape(height, width, short_side):
    """`(height, width)` after scaling the short side to `short_side`.

    The aspect ratio is kept; the long side is rounded to the nearest pixel,
    halves up (integer arithmetic, the same in `transforms.short_side_shape`).

    >>> resized_shape(240, 320, 128)
    (128, 171)
    """
    if short_side is None:
        return int(height), int(width)
    height, width, short_side = int(height), int(width), int(short_side)
    short = min(height, width)

    def scaled(side):
        return max(1, (2 * side * short_side + short) // (2 * short))

    if height <= width:
        return short_side, scaled(width)
    return scaled(height), short_side


def _check_file(path):
    if not os.path.lexists(path):
        raise VideoDecodeError(path, "no such file")
    if not os.path.exists(path):
        raise VideoDecodeError(path, "broken symbolic link (its target does not exist)")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "not readable (permission denied)")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise VideoDecodeError(path, f"unreadable: {error.strerror or error}") from error
    if size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _fps(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value < 1000:
                return value
    return 0.0


def decode_video(path, short_side=None, max_frames=None):
    """Decodes a video file into RGB frames.

    Args:
        path: the video file (any container/codec FFmpeg reads: mp4, avi,
            mkv, webm …). Containers whose metadata is not UTF-8 (old DivX
            `.avi` files) are read; the bad metadata is ignored.
        short_side: if given, every frame is resized (FFmpeg's area filter
            when shrinking, bicubic when enlarging) so that its shorter side
            is `short_side` pixels, keeping the aspect ratio.
        max_frames: if given, decode at most this many frames from the start.

    Returns:
        `(frames, fps)`: `frames` a `uint8` array `[T, H, W, 3]` (RGB) with
        `T >= 2`; `fps` the stream's frame rate (0.0 when the file does not
        say).

    Raises:
        VideoDecodeError: for a missing, unreadable, empty, truncated or
            corrupt file, a file that is not a video, a file with no video
            stream (audio only) or with fewer than 2 frames.
        ValueError: for invalid `short_side` / `max_frames` values.
    """
    if short_side is not None and (isinstance(short_side, bool)
                                   or not isinstance(short_side, (int, np.integer))
                                   or short_side < 1):
        raise ValueError(
            "Invalid value for argument `short_side`. Expected None or a "
            f"positive int. Received: short_side={short_side!r}"
        )
    if max_frames is not None and (isinstance(max_frames, bool)
                                   or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < MIN_FRAMES):
        raise ValueError(
            "Invalid value for argument `max_frames`. Expected None or an int "
            f">= {MIN_FRAMES}. Received: max_frames={max_frames!r}"
        )
    import av  # imported here so that the module loads without PyAV

    path = os.fspath(pathlib.Path(path))
    _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise VideoDecodeError(
            path, f"not a video FFmpeg can read (truncated, corrupt or not a "
                  f"media file): {_ffmpeg_message(error)}"
        ) from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoDecodeError(path, f"cannot open: {error}") from error
    frames = []
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoDecodeError(
                path, f"no video stream (the file has {', '.join(kinds)} "
                      "streams only)"
            )
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        size = None
        try:
            for frame in container.decode(stream):
                if size is None:
                    size = resized_shape(frame.height, frame.width, short_side)
                    same = (size == (frame.height, frame.width))
                    interpolation = (
                        "AREA" if short_side is not None
                        and short_side < min(frame.height, frame.width)
                        else "BICUBIC"
                    )
                if same:
                    array = frame.to_ndarray(format="rgb24")
                else:
                    array = frame.to_ndarray(
                        format="rgb24", width=size[1], height=size[0],
                        interpolation=interpolation,
                    )
                if array.shape[:2] != size:
                    raise VideoDecodeError(
                        path, f"frame {len(frames)} has size "
                              f"{array.shape[1]}x{array.shape[0]}, the first "
                              f"had {size[1]}x{size[0]} (resolution changes "
                              "mid-stream are not supported)"
                    )
                frames.append(array)
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as error:
            raise VideoDecodeError(
                path, f"corrupt video data after {len(frames)} decoded "
                      f"frames: {_ffmpeg_message(error)}"
            ) from error
    finally:
        container.close()
    if len(frames) < MIN_FRAMES:
        raise VideoDecodeError(
            path, f"only {len(frames)} decodable frame"
                  f"{'' if len(frames) == 1 else 's'}; a video needs at least "
                  f"{MIN_FRAMES}"
        )
    return np.stack(frames), fps


def _ffmpeg_message(error):
    text = getattr(error, "strerror", None) or str(error)
    return text.strip() or type(error).__name__


def decode_to_jpeg(path, short_side=None, jpeg_quality=90, max_frames=None):
    """Decodes a video and JPEG-encodes its frames (what `prepare` stores).

    Returns:
        a dict: `jpegs` (list of bytes), `fps`, `height`, `width`, `frames`,
        `decode_seconds` (PyAV decode + resize), `encode_seconds` (JPEG).

    Raises:
        VideoDecodeError: as `decode_video`.
    """
    import io
    import time

    from PIL import Image

    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) \
            or not 1 <= jpeg_quality <= 100:
        raise ValueError(
            "Invalid value for argument `jpeg_quality`. Expected an int between "
            f"1 and 100. Received: jpeg_quality={jpeg_quality!r}"
        )
    start = time.perf_counter()
    frames, fps = decode_video(path, short_side=short_side, max_frames=max_frames)
    decoded = time.perf_counter()
    jpegs = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=int(jpeg_quality))
        jpegs.append(buffer.getvalue())
    return {
        "jpegs": jpegs, "fps": fps, "height": int(frames.shape[1]),
        "width": int(frames.shape[2]), "frames": int(frames.shape[0]),
        "decode_seconds": decoded - start,
        "encode_seconds": time.perf_counter() - decoded,
    }


def try_decode_to_jpeg(path, short_side=None, jpeg_quality=90, max_frames=None):
    """`decode_to_jpeg` that never raises: failures come back as
    `{"error": reason}` (a worker-process entry point for `prepare`)."""
    try:
        return decode_to_jpeg(path, short_side, jpeg_quality, max_frames)
    except VideoDecodeError as error:
        return {"error": error.reason}
    except MemoryError:
        return {"error": "out of memory while decoding (limit the frames with "
                         "max_frames / --max-frames)"}
    except Exception as error:  # noqa: BLE001 — one bad file must not stop a run
        return {"error": f"unexpected {type(error).__name__} while decoding: {error}"}
