"""Video decoding with PyAV (FFmpeg bindings that ship their own FFmpeg).

`decode_video` turns one video file into RGB frames, upright (a phone
video's rotation — the display matrix FFmpeg reports as `frame.rotation` —
is applied), optionally resized so that the short side has a given length.
Every way a file can be unusable (missing, empty, truncated, not a video,
an image renamed to a video name, audio only, a single frame, too damaged)
raises `VideoDecodeError` with a reason a person can act on;
`training.prepare` catches it, skips the file and reports the reason, and
the serving client and `training.explain` report it for that file alone.

Damaged videos: decoding goes on past packets FFmpeg cannot decode. A video
with decoding errors (or fewer frames than its container lists) is kept
when at least half the expected frames decoded (`PARTIAL_MIN_SHARE`; the
expected count is the container's frame count, else duration x frame rate;
when the container says neither, at least `PARTIAL_MIN_FRAMES` frames) and
at least `MIN_FRAMES`; `decode_video_details` says what was lost
(`DecodedVideo.damage`), and `prepare` lists it in the manifest. The kept
frames are the decodable ones in order: a lost frame in the middle makes
the motion skip one step there.

Example:

>>> from clipspec.decode import decode_video, VideoDecodeError
>>> try:
...     frames, fps = decode_video("clip.mp4", short_side=128)
... except VideoDecodeError as error:
...     print(error.path, error.reason)
"""

import dataclasses
import math
import os
import pathlib
import stat

import numpy as np

# The extensions the folder layout lists as videos (lower case). Files with
# other extensions are listed in the manifest as not taken, with the reason.
VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".3g2",
    ".ogv",
    ".gif",
    ".ts",
    ".mts",
    ".m2ts",
    ".vob",
    ".asf",
    ".mxf",
    ".f4v",
)
# Extensions named in the reasons for files that are not taken.
AUDIO_EXTENSIONS = (
    ".m4a",
    ".mp3",
    ".wav",
    ".aac",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".wma",
    ".aiff",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".heic")

# A clip needs motion: a single picture is not a video.
MIN_FRAMES = 2
# A damaged video is kept when at least this share of its expected frames
# decoded ...
PARTIAL_MIN_SHARE = 0.5
# ... or, when its container gives no frame count nor duration, at least
# this many frames.
PARTIAL_MIN_FRAMES = 8
# Fewer decoded frames than the container lists, without a decoding error,
# count as damage only beyond this many (edit lists and B-frames make the
# listed count differ by a frame or two in healthy files).
_COUNT_TOLERANCE = 2


class VideoDecodeError(Exception):
    """A video file that cannot be used, with the reason.

    Attributes:
        path: the file, as a string.
        reason: what is wrong with it, in words (no traceback needed).
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # picklable across worker processes
        return (VideoDecodeError, (self.path, self.reason))


@dataclasses.dataclass
class DecodedVideo:
    """What `decode_video_details` returns.

    Attributes:
        frames: uint8 `[T, H, W, 3]` RGB, upright, `T >= 2`.
        fps: the stream's frame rate (0.0 when the file does not say).
        rotation: degrees the stored pictures were turned counter-clockwise
            to show them upright (0, 90, 180 or 270).
        expected_frames: the frames the container lists, else duration x
            fps; None when unknown.
        listed_frames: the frame count the container states (mp4, avi
            ...), None when it states none (the expected count is then an
            estimate).
        errors: packets FFmpeg could not decode (their frames are lost).
        first_error: where the first one happened and FFmpeg's message.
        capped: decoding stopped at `max_frames`.
    """

    frames: np.ndarray
    fps: float
    rotation: int = 0
    expected_frames: int = None
    listed_frames: int = None
    errors: int = 0
    first_error: str = None
    capped: bool = False

    @property
    def short(self):
        """Fewer frames decoded than the container states (not counting a
        `max_frames` cap, nor a frame or two of difference)."""
        return bool(
            not self.capped
            and self.listed_frames
            and len(self.frames) < self.listed_frames - _COUNT_TOLERANCE
        )

    @property
    def damage(self):
        """None for an intact video; else a dict (`decoded`, `expected`,
        `errors`, `reason`) describing the frames lost."""
        decoded = len(self.frames)
        if not self.errors and not self.short:
            return None
        parts = []
        if self.errors:
            parts.append(f"{self.errors} undecodable packet(s), the first {self.first_error}")
        if self.short:
            parts.append(f"{decoded} of the {self.listed_frames} frames the container lists")
        return {
            "decoded": decoded,
            "expected": self.expected_frames,
            "errors": self.errors,
            "reason": "damaged video, kept: " + "; ".join(parts),
        }


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


def _file_kind(mode):
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_video_file(path):
    """Raises `VideoDecodeError` (missing, broken link, a folder, a FIFO,
    unreadable, empty) before any decoding; None for a plausible file."""
    _check_file(os.fspath(path))


def _check_file(path):
    if not os.path.lexists(path):
        raise VideoDecodeError(path, "no such file")
    if not os.path.exists(path):
        raise VideoDecodeError(path, "broken symbolic link (its target does not exist)")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    try:
        info = os.stat(path)
    except OSError as error:
        raise VideoDecodeError(path, f"unreadable: {error.strerror or error}") from error
    if not stat.S_ISREG(info.st_mode):
        raise VideoDecodeError(path, f"{_file_kind(info.st_mode)}, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "not readable (permission denied)")
    if info.st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _fps(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value < 1000:
                return value
    return 0.0


def _listed_frames(stream):
    return int(stream.frames) if stream.frames and stream.frames > 0 else None


def _expected_frames(container, stream, fps):
    if _listed_frames(stream):
        return _listed_frames(stream)
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    if seconds and fps and seconds > 0:
        return max(1, int(round(seconds * fps)))
    return None


def _image_format(container, path):
    """A reason when FFmpeg reads the file as a still image, else None."""
    name = container.format.name or ""
    if not (name.endswith("_pipe") or name in ("image2", "image2pipe")):
        return None
    kind = name.removesuffix("_pipe").upper()
    if name.startswith("image2"):
        stream = container.streams.video[0] if container.streams.video else None
        kind = stream.codec_context.name.upper() if stream is not None else "still"
    extension = os.path.splitext(path)[1] or "(no extension)"
    return (
        f"a {kind} image, not a video (FFmpeg reads it as {name}; the "
        f"file name ends in {extension})"
    )


def _turns(frame):
    """Quarter turns counter-clockwise that show `frame` upright."""
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(float(rotation) / 90.0)) % 4


def _check_args(short_side, max_frames):
    if short_side is not None and (
        isinstance(short_side, bool)
        or not isinstance(short_side, (int, np.integer))
        or short_side < 1
    ):
        raise ValueError(
            "Invalid value for argument `short_side`. Expected None or a "
            f"positive int. Received: short_side={short_side!r}"
        )
    if max_frames is not None and (
        isinstance(max_frames, bool)
        or not isinstance(max_frames, (int, np.integer))
        or max_frames < MIN_FRAMES
    ):
        raise ValueError(
            "Invalid value for argument `max_frames`. Expected None or an int "
            f">= {MIN_FRAMES}. Received: max_frames={max_frames!r}"
        )


def _open(path):
    import av  # imported here so that the module loads without PyAV

    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise VideoDecodeError(
            path,
            f"not a video FFmpeg can read (truncated, corrupt or not a "
            f"media file): {_ffmpeg_message(error)}",
        ) from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoDecodeError(path, f"cannot open: {error}") from error


class FrameConverter:
    """PyAV video frames → upright RGB uint8 arrays `[H, W, 3]` whose short
    side (as shown) is `short_side` (None: the stored size). The rotation
    and scaling are worked out again whenever a frame's size or rotation
    differs from the previous one's (a stream may change resolution).
    One scaler (PyAV's `VideoReformatter`) serves every frame, several times
    faster than one per frame: convert from one thread at a time."""

    def __init__(self, short_side=None):
        self.short_side, self._key = short_side, None
        self.turns, self.size = 0, None
        self._reformatter = None

    def __call__(self, frame):
        return self.later(frame)[1]()

    def later(self, frame):
        """`(shape, convert)`: the `[H, W, 3]` shape `frame` converts to, and
        a function that converts it when called, with the settings of this
        frame's size (a consumer may convert only the frames it uses)."""
        turns = _turns(frame)
        key = (frame.height, frame.width, turns)
        if key != self._key:
            self._key, self.turns = key, turns
            shown = (frame.height, frame.width) if turns % 2 == 0 else (frame.width, frame.height)
            self.size = resized_shape(*shown, self.short_side)
            self._stored = self.size if turns % 2 == 0 else self.size[::-1]
            self._same = self._stored == (frame.height, frame.width)
            self._interpolation = (
                "AREA"
                if self.short_side is not None and self.short_side < min(frame.height, frame.width)
                else "BICUBIC"
            )
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        reformat, stored = self._reformatter.reformat, self._stored
        scaling = {} if self._same else {"interpolation": self._interpolation}

        def convert():
            array = reformat(frame, stored[1], stored[0], "rgb24", **scaling).to_ndarray()
            return np.rot90(array, turns) if turns else array

        return (*self.size, 3), convert


class _Frames:
    """Collects upright RGB frames of one size from decoded PyAV frames."""

    def __init__(self, path, short_side, max_frames):
        self.path, self.max_frames = path, max_frames
        self.arrays, self.size, self.turns = [], None, 0
        self.convert = FrameConverter(short_side)

    @property
    def full(self):
        return self.max_frames is not None and len(self.arrays) >= self.max_frames

    def add(self, frame):
        array = self.convert(frame)
        if self.size is None:
            self.size, self.turns = array.shape[:2], self.convert.turns
        if array.shape[:2] != self.size:
            raise VideoDecodeError(
                self.path,
                f"frame {len(self.arrays)} has size "
                f"{array.shape[1]}x{array.shape[0]}, the first had "
                f"{self.size[1]}x{self.size[0]} (resolution changes "
                "mid-stream are not supported)",
            )
        self.arrays.append(array)


def decode_video_details(path, short_side=None, max_frames=None):
    """`decode_video` with what it found: a `DecodedVideo` (frames, fps,
    rotation applied, frames expected, decoding errors).

    Raises:
        VideoDecodeError: as `decode_video`.
        ValueError: for invalid `short_side` / `max_frames` values.
    """
    import av

    _check_args(short_side, max_frames)
    path = os.fspath(pathlib.Path(path))
    _check_file(path)
    container = _open(path)
    frames = _Frames(path, short_side, max_frames)
    errors, first_error = 0, None
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoDecodeError(
                path, f"no video stream (the file has {', '.join(kinds)} streams only)"
            )
        image = _image_format(container, path)
        if image is not None:
            raise VideoDecodeError(path, image)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        expected = _expected_frames(container, stream, fps)
        packets = container.demux(stream)
        while not frames.full:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as error:  # the container itself is damaged
                errors += 1
                first_error = first_error or (
                    f"after frame {len(frames.arrays)}: {_ffmpeg_message(error)}"
                )
                break
            try:
                decoded = stream.decode(packet)
            except av.error.FFmpegError as error:  # lose this packet, go on
                errors += 1
                first_error = first_error or (
                    f"after frame {len(frames.arrays)}: {_ffmpeg_message(error)}"
                )
                continue
            for frame in decoded:
                frames.add(frame)
                if frames.full:
                    break
    finally:
        container.close()
    result = DecodedVideo(
        frames=frames.arrays,
        fps=fps,
        rotation=90 * frames.turns,
        expected_frames=expected,
        listed_frames=_listed_frames(stream),
        errors=errors,
        first_error=first_error,
        capped=frames.full,
    )
    _check_enough(path, result, max_frames)
    result.frames = np.stack(frames.arrays)
    return result


def _check_enough(path, result, max_frames):
    count = len(result.frames)
    expected = result.expected_frames
    if expected is not None and max_frames is not None:
        expected = min(expected, max_frames)
    damaged = result.errors or result.short
    if damaged and not result.capped:
        needed = max(
            MIN_FRAMES, math.ceil(PARTIAL_MIN_SHARE * expected) if expected else PARTIAL_MIN_FRAMES
        )
        if count < needed:
            listed = (
                f"of the {expected} expected"
                if expected
                else "(the container gives no frame count)"
            )
            what = (
                f"corrupt video data: {result.errors} undecodable "
                f"packet(s), the first {result.first_error}"
                if result.errors
                else "truncated video"
            )
            raise VideoDecodeError(
                path,
                f"{what}; only {count} frame{'' if count == 1 else 's'} "
                f"{listed} decodable, a damaged video needs at least "
                f"{needed}",
            )
    if count < MIN_FRAMES:
        raise VideoDecodeError(
            path,
            f"only {count} decodable frame{'' if count == 1 else 's'}; "
            f"a video needs at least {MIN_FRAMES}",
        )


def decode_video(path, short_side=None, max_frames=None):
    """Decodes a video file into upright RGB frames.

    Args:
        path: the video file (any container/codec FFmpeg reads: mp4, avi,
            mkv, webm, gif, ts …), as a str (any name the OS allows: a
            non-UTF-8 name decoded with `os.fsdecode` works) or a path.
            Containers whose metadata is not UTF-8 (old DivX `.avi` files)
            are read; the bad metadata is ignored.
        short_side: if given, every frame is resized (FFmpeg's area filter
            when shrinking, bicubic when enlarging) so that its shorter side
            — as shown, after rotation — is `short_side` pixels, keeping the
            aspect ratio.
        max_frames: if given, decode at most this many frames from the start.

    Returns:
        `(frames, fps)`: `frames` a `uint8` array `[T, H, W, 3]` (RGB,
        rotated upright as the file's display matrix says) with `T >= 2`;
        `fps` the stream's frame rate (0.0 when the file does not say).

    Raises:
        VideoDecodeError: for a missing, unreadable, empty, truncated or
            corrupt file (see the module docstring for damaged videos), a
            file that is not a video (an image, text), a file with no video
            stream (audio only) or with fewer than 2 frames.
        ValueError: for invalid `short_side` / `max_frames` values.
    """
    result = decode_video_details(path, short_side, max_frames)
    return result.frames, result.fps


def probe_video(path):
    """Checks cheaply that `path` is a usable video: decodes its first
    `MIN_FRAMES` frames. Returns None, or raises `VideoDecodeError` with the
    reason (what `prepare` uses to draw a split from usable videos only)."""
    decode_video_details(path, short_side=None, max_frames=MIN_FRAMES)


def _ffmpeg_message(error):
    text = getattr(error, "strerror", None) or str(error)
    return text.strip() or type(error).__name__


def decode_to_jpeg(path, short_side=None, jpeg_quality=90, max_frames=None):
    """Decodes a video and JPEG-encodes its frames (what `prepare` stores).

    Returns:
        a dict: `jpegs` (list of bytes), `fps`, `height`, `width`, `frames`,
        `decode_seconds` (PyAV decode + resize), `encode_seconds` (JPEG),
        `rotation` (degrees turned upright) and `damage` (None, or what
        `DecodedVideo.damage` says).

    Raises:
        VideoDecodeError: as `decode_video`.
    """
    import io
    import time

    from PIL import Image

    if (
        isinstance(jpeg_quality, bool)
        or not isinstance(jpeg_quality, (int, np.integer))
        or not 1 <= jpeg_quality <= 100
    ):
        raise ValueError(
            "Invalid value for argument `jpeg_quality`. Expected an int between "
            f"1 and 100. Received: jpeg_quality={jpeg_quality!r}"
        )
    start = time.perf_counter()
    video = decode_video_details(path, short_side=short_side, max_frames=max_frames)
    frames = video.frames
    decoded = time.perf_counter()
    jpegs = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=int(jpeg_quality))
        jpegs.append(buffer.getvalue())
    return {
        "jpegs": jpegs,
        "fps": video.fps,
        "height": int(frames.shape[1]),
        "width": int(frames.shape[2]),
        "frames": int(frames.shape[0]),
        "decode_seconds": decoded - start,
        "encode_seconds": time.perf_counter() - decoded,
        "rotation": video.rotation,
        "damage": video.damage,
    }


def _guarded(function, *args):
    try:
        return function(*args)
    except VideoDecodeError as error:
        return {"error": error.reason}
    except MemoryError:
        return {
            "error": "out of memory while decoding (limit the frames with "
            "max_frames / --max-frames)"
        }
    except Exception as error:  # noqa: BLE001 — one bad file must not stop a run
        return {"error": f"unexpected {type(error).__name__} while decoding: {error}"}


def try_decode_to_jpeg(path, short_side=None, jpeg_quality=90, max_frames=None):
    """`decode_to_jpeg` that never raises: failures come back as
    `{"error": reason}` (a worker-process entry point for `prepare`)."""
    return _guarded(decode_to_jpeg, path, short_side, jpeg_quality, max_frames)


def try_probe_video(path):
    """`probe_video` that never raises: `{}` for a usable video, else
    `{"error": reason}` (a worker-process entry point for `prepare`)."""
    return _guarded(lambda p: probe_video(p) or {}, path)
