"""Frames of a video file or a live stream, one at a time (PyAV), in bounded
memory.

`clipspec.decode.decode_video` returns every frame of a file at once: right
for a clip, impossible for an hour of video or a camera. `stream_frames`
yields the frames as they are decoded — upright, at the short side asked
(`decode.FrameConverter`, the rules of `decode_video`) — each with its time
in the video (seconds from the first frame, from its timestamp) and the
moment it was decoded (`time.monotonic()`: a live frame's capture time as
this process sees it). A frame is converted (colours, scaling) only when
its `image` is first used, so frames no one uses cost their decoding only.
Nothing is kept: memory does not grow with the video's length.

Sources: a file, or anything FFmpeg opens — `rtsp://`, `http(s)://`,
`udp://`, `tcp://`, a capture device (`/dev/video0`, through FFmpeg's
`v4l2`), `-` for standard input. `is_live(source)` says which are live
(anything that is not a regular file). A stream that does not open, sends
no frame within `timeout` seconds, or is not a video raises
`VideoDecodeError` with the reason; a packet FFmpeg cannot decode is
skipped and counted (`FrameStream.errors`). The frame size may change
mid-stream (each frame is scaled on its own; the consumer sees the new
size).

>>> stream = FrameStream("clip.mp4", short_side=128)           # doctest: +SKIP
>>> for frame in stream:                                        # doctest: +SKIP
...     print(frame.time, frame.image.shape)
"""

import os
import stat
import sys
import time

from clipspec.decode import (
    FrameConverter,
    VideoDecodeError,
    _ffmpeg_message,
    _fps,
    _image_format,
    check_video_file,
)

# Seconds to open a stream and to wait for each packet, by default.
DEFAULT_TIMEOUT = 10.0
STDIN = "-"
_DEVICE_FORMATS = {"linux": "v4l2", "darwin": "avfoundation"}


class StreamFrame:
    """One decoded frame: `image` uint8 `[H, W, 3]` (`shape`), `time`
    seconds from the stream's first frame, `captured` the
    `time.monotonic()` it was decoded at, `index` its number (from 0).

    `image` is an array, or a function that makes it (with `shape` given):
    then the frame is converted (colours, scaling) on first use of `image`,
    so a frame no one uses costs its decoding only.
    """

    __slots__ = ("_image", "shape", "time", "captured", "index")

    def __init__(self, image, time, captured, index, shape=None):
        self._image, self.time, self.captured, self.index = image, time, captured, index
        self.shape = tuple(image.shape if shape is None else shape)

    @property
    def image(self):
        if callable(self._image):
            self._image = self._image()
        return self._image

    def __repr__(self):
        return f"StreamFrame(index={self.index}, time={self.time:.3f}, shape={self.shape})"


def is_live(source):
    """Whether `source` is a live stream: a URL (other than `file:`), `-`,
    or a path that exists and is not a regular file (a device, a FIFO)."""
    source = os.fspath(source)
    if source == STDIN:
        return True
    if "://" in source:
        return not source.startswith("file:")
    try:
        return not stat.S_ISREG(os.stat(source).st_mode)
    except OSError:
        return False


def _device_format(source):
    if source.startswith("/dev/"):
        return _DEVICE_FORMATS.get(sys.platform)
    return None


class FrameStream:
    """Iterates the frames of `source` (see the module docstring).

    Args:
        source: a file, URL, device or `-` (standard input).
        short_side: scale frames so their short side (as shown) is this;
            None keeps the stored size.
        timeout: seconds to open the source and to wait for each packet
            (None: FFmpeg's own, which waits forever on a silent stream).
        options: FFmpeg options of the input (`{"rtsp_transport": "tcp"}`).
    """

    def __init__(self, source, short_side=None, timeout=DEFAULT_TIMEOUT, options=None):
        self.source = os.fspath(source)
        self.short_side, self.timeout = short_side, timeout
        self.options = dict(options or {})
        self.fps, self.errors, self.frames = 0.0, 0, 0
        self.first_error = None

    def _open(self):
        import av

        source = self.source
        if source == STDIN:
            source = "pipe:0"
        elif "://" not in source and not is_live(source):
            check_video_file(source)
        kwargs = {"metadata_errors": "ignore", "options": self.options}
        if self.timeout is not None:
            kwargs["timeout"] = (self.timeout, self.timeout)
        device = _device_format(source)
        if device is not None:
            kwargs["format"] = device
        try:
            return av.open(source, **kwargs)
        except av.error.ExitError:  # the timeout's interrupt
            raise VideoDecodeError(self.source, f"no answer within {self.timeout:g} s") from None
        except av.error.FFmpegError as error:
            raise VideoDecodeError(
                self.source, f"cannot open as a video: {_ffmpeg_message(error)}"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise VideoDecodeError(self.source, f"cannot open: {error}") from None

    def __iter__(self):
        import av

        container = self._open()
        try:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["no"]
                raise VideoDecodeError(
                    self.source, f"no video stream (it has {', '.join(kinds)} streams only)"
                )
            image = _image_format(container, self.source)
            if image is not None:
                raise VideoDecodeError(self.source, image)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self.fps = _fps(stream)
            convert = FrameConverter(self.short_side)
            first, packets = None, container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.ExitError:
                    raise VideoDecodeError(
                        self.source,
                        f"no data for {self.timeout:g} s after frame {self.frames}",
                    ) from None
                except av.error.FFmpegError as error:
                    if self.frames == 0:
                        raise VideoDecodeError(
                            self.source, f"not a video FFmpeg can read: {_ffmpeg_message(error)}"
                        ) from None
                    self._lost(error)
                    return
                try:
                    decoded = stream.decode(packet)
                except av.error.FFmpegError as error:  # lose this packet, go on
                    self._lost(error)
                    continue
                for frame in decoded:
                    seconds = frame.time
                    if seconds is None:
                        seconds = self.frames / self.fps if self.fps else 0.0
                    if first is None:
                        first = seconds
                    shape, later = convert.later(frame)
                    yield StreamFrame(later, seconds - first, time.monotonic(), self.frames, shape)
                    self.frames += 1
        finally:
            container.close()

    def _lost(self, error):
        self.errors += 1
        self.first_error = self.first_error or (
            f"after frame {self.frames}: {_ffmpeg_message(error)}"
        )


__all__ = ["DEFAULT_TIMEOUT", "FrameStream", "StreamFrame", "is_live"]
