"""The action timeline of a long video: what the model sees when.

A window is one clip of the model — `clip_length` frames every `stride`
frames, as its `ClipFormat` (read from the export) says — and one starts
every `hop` seconds (default: half a window). Frames are decoded once and
streamed (`clipspec.stream.FrameStream`): the client holds one window's
frames plus the windows in flight, whatever the video's length. Each
window goes to the server as it is, uint8 frames at the model's short
side; the export cuts the centre view exactly as evaluation does
(`clipspec.views.preprocess_clips`). Up to `in_flight` windows are sent
at once; answers come back in order.

- `WindowCutter`: frames → windows (`Window`: start, end, the clip);
- `FileTimeline`: a file → `WindowResult`s in order (probabilities,
  top classes, model version);
- `Labeller`: probabilities → top classes, with optional causal
  smoothing (the mean of the last N windows' probabilities);
- `Segmenter`: consecutive windows with the same top class → `Segment`s,
  the boundary halfway between the centres of the two windows that
  differ;
- `window_record` / `segment_record`: the JSON Lines records.

>>> from serving.predictor import make_predictor                # doctest: +SKIP
>>> predictor = make_predictor("127.0.0.1:8500")               # doctest: +SKIP
>>> for result in FileTimeline(predictor, "classreg", "a.mp4"):  # doctest: +SKIP
...     print(result.window.start, result.top_k[0])
"""

import collections
import concurrent.futures
import dataclasses
import time

import numpy as np

from clipspec import signatures as names
from clipspec.decode import VideoDecodeError
from clipspec.sampling import clip_frame_indices, clip_span
from clipspec.stream import DEFAULT_TIMEOUT, FrameStream

DEFAULT_IN_FLIGHT = 8
# Times in the records are rounded to the millisecond.
_DIGITS = 3


@dataclasses.dataclass
class Window:
    """One window: `clip` uint8 `[T, H, W, 3]` (the frames the model gets),
    `start`/`end` seconds in the video (first frame, last frame + one frame
    period), `captured` the `time.monotonic()` its newest frame was decoded
    at, `index` its number."""

    index: int
    start: float
    end: float
    clip: np.ndarray
    captured: float

    @property
    def centre(self):
        return (self.start + self.end) / 2


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive number. "
            f"Received: {name}={value!r}"
        )
    return value


class WindowCutter:
    """Frames → windows of `clip_length` frames every `stride` frames, one
    every `hop` seconds (of the frames' times).

    `add(frame)` returns the window that frame completes, or None;
    `finish()` the last window at the end of the stream: one ending at the
    last frame when the frames since the last window are not covered yet,
    or, for a stream shorter than one window, its frames sampled as the clip
    contract says for short videos (`short_video`: looped or padded).
    `newest()` is the window of the latest frames (live streams). A change
    of frame size starts the windows afresh (`restarts` counts them).
    """

    def __init__(self, clip_length, stride, hop, short_video="loop"):
        self.clip_length, self.stride = clip_length, stride
        self.span = clip_span(clip_length, stride)
        self.hop = _positive("hop", hop)
        self.short_video = short_video
        self.frames = collections.deque(maxlen=self.span)
        self.count, self.restarts = 0, 0
        self._next_start, self._covered = None, None

    def push(self, frame):
        """Adds a frame without cutting a window (live streams)."""
        if self.frames and frame.shape != self.frames[-1].shape:
            self.frames.clear()
            self.restarts += 1
        self.frames.append(frame)

    def add(self, frame):
        self.push(frame)
        if len(self.frames) < self.span:
            return None
        if self._next_start is not None and self.frames[0].time < self._next_start - 1e-6:
            return None
        return self._emit()

    def newest(self):
        """The window of the latest `span` frames (None before there are
        that many)."""
        return self._emit() if len(self.frames) == self.span else None

    def finish(self):
        if not self.frames or self.frames[-1].index == self._covered:
            return None
        return self._emit()

    def _emit(self):
        frames = list(self.frames)
        if len(frames) == self.span:
            chosen = frames[:: self.stride]
        else:
            chosen = [
                frames[i]
                for i in clip_frame_indices(
                    len(frames), self.clip_length, self.stride, 0, self.short_video
                )
            ]
        period = (frames[-1].time - frames[0].time) / (len(frames) - 1) if len(frames) > 1 else 0
        window = Window(
            index=self.count,
            start=frames[0].time,
            end=frames[-1].time + period,
            clip=np.stack([f.image for f in chosen]),
            captured=frames[-1].captured,
        )
        self.count += 1
        self._next_start = frames[0].time + self.hop
        self._covered = frames[-1].index
        return window


@dataclasses.dataclass
class WindowResult:
    """A window's answer: `probabilities` float32 `[K]`, `top_k` `[(class,
    probability)]` best first, the `model_version` that answered and when
    (`answered`, `time.monotonic()`)."""

    window: Window
    probabilities: np.ndarray
    top_k: list
    model_version: int
    answered: float

    @property
    def label(self):
        return self.top_k[0][0]

    @property
    def latency(self):
        """Seconds from the window's newest frame decoded to the answer."""
        return self.answered - self.window.captured


def request_window(predictor, model, clip, version=None):
    """`(probabilities [K], version)` of one clip from `serving_default`."""
    outputs, served = predictor.predict_with_version(
        model,
        {names.CLIPS_INPUT: clip[None]},
        signature=names.SERVING,
        version=version,
        output_filter=(names.PROBABILITIES_OUTPUT,),
    )
    return np.asarray(outputs[names.PROBABILITIES_OUTPUT], np.float32)[0], served


class Labeller:
    """Turns a window's probabilities into a `WindowResult` (class names
    read once from the model), optionally smoothed: with `smooth` N > 1, a
    window's probabilities are the mean of its own and the N - 1 previous
    windows' (causal: it delays a change by about (N - 1) / 2 hops)."""

    def __init__(self, predictor, model, top_k=5, smooth=1):
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
            raise ValueError(
                "Invalid value for argument `smooth`. Expected a positive int. "
                f"Received: smooth={smooth!r}"
            )
        self.predictor, self.model = predictor, model
        self.top_k = _positive("top_k", top_k)
        self._names = None
        self._recent = collections.deque(maxlen=smooth)

    def names(self, num_classes, version):
        if self._names is None or len(self._names) != num_classes:
            self._names = self.predictor.class_names(self.model, range(num_classes), version)
        return self._names

    def __call__(self, window, probabilities, version, answered):
        if self._recent.maxlen > 1:
            self._recent.append(probabilities)
            probabilities = np.mean(self._recent, axis=0).astype(np.float32)
        class_names = self.names(len(probabilities), version)
        best = np.argsort(-probabilities, kind="stable")[: self.top_k]
        return WindowResult(
            window,
            probabilities,
            [(class_names[i], float(probabilities[i])) for i in best],
            version,
            answered,
        )


def default_hop(clip_format, fps):
    """Half a window in seconds at `fps` (25 when unknown)."""
    span = clip_span(clip_format.clip_length, clip_format.stride)
    return span / (fps or 25.0) / 2


class FileTimeline:
    """The windows of a video file (or any finite source), answered in order.

    Iterating yields `WindowResult`s as they are known. Frames are decoded
    once; at most `in_flight` windows wait for the server at a time, so
    memory stays at one window's frames plus `in_flight` clips.

    Args:
        predictor: a `serving.predictor` client.
        model, version: the served model (the version that answers the first
            window is requested for every other, so a version swap cannot mix
            models).
        source: the video.
        hop: seconds between window starts (default: half a window).
        top_k: classes per window.
        smooth: windows averaged (see `Labeller`).
        in_flight: windows sent before the first answer is awaited.
        timeout: seconds to wait for the source (see `FrameStream`).
        overrides: `clip_length`, `stride`, `short_side` instead of the
            model's.
    """

    def __init__(
        self,
        predictor,
        model,
        source,
        version=None,
        hop=None,
        top_k=5,
        smooth=1,
        in_flight=DEFAULT_IN_FLIGHT,
        timeout=DEFAULT_TIMEOUT,
        **overrides,
    ):
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise ValueError(
                "Invalid value for argument `in_flight`. Expected a positive int. "
                f"Received: in_flight={in_flight!r}"
            )
        if hop is not None:
            _positive("hop", hop)
        self.predictor, self.model, self.version = predictor, model, version
        self.source, self.hop, self.in_flight = source, hop, in_flight
        self.labeller = Labeller(predictor, model, top_k, smooth)
        self.timeout, self.overrides = timeout, overrides
        self.clip_format = self.cutter = self.stream = None

    def _windows(self):
        self.clip_format = self.predictor.clip_format(self.model, self.version).replace(
            **self.overrides
        )
        self.stream = FrameStream(self.source, self.clip_format.short_side, self.timeout)
        frames = iter(self.stream)
        first = next(frames, None)
        if first is None:
            raise VideoDecodeError(self.source, "no decodable frame")
        hop = self.hop or default_hop(self.clip_format, self.stream.fps)
        self.cutter = WindowCutter(
            self.clip_format.clip_length, self.clip_format.stride, hop, self.clip_format.short_video
        )
        for frame in _chain(first, frames):
            window = self.cutter.add(frame)
            if window is not None:
                yield window
        last = self.cutter.finish()
        if last is not None:
            yield last

    def __iter__(self):
        windows = self._windows()
        first = next(windows, None)
        if first is None:
            return
        probabilities, version = request_window(
            self.predictor, self.model, first.clip, self.version
        )
        self.version = version
        yield self.labeller(first, probabilities, version, time.monotonic())
        pending = collections.deque()
        with concurrent.futures.ThreadPoolExecutor(self.in_flight) as pool:
            try:
                for window in windows:
                    if len(pending) >= self.in_flight:
                        yield self._answer(*pending.popleft())
                    future = pool.submit(
                        request_window, self.predictor, self.model, window.clip, version
                    )
                    pending.append((window, future))
                while pending:
                    yield self._answer(*pending.popleft())
            finally:
                for _, future in pending:
                    future.cancel()

    def _answer(self, window, future):
        probabilities, version = future.result()
        return self.labeller(window, probabilities, version, time.monotonic())


def _chain(first, rest):
    yield first
    yield from rest


@dataclasses.dataclass
class Segment:
    """Consecutive windows with the same top class: `start`/`end` seconds,
    `label`, `probability` (the mean over its windows) and `windows`."""

    start: float
    end: float
    label: str
    probability: float
    windows: int


class Segmenter:
    """Merges consecutive window results with the same top class.

    `add(result)` returns the segment that result closes (its label
    differs from the running one), or None; `finish()` the last one. A
    boundary lies halfway between the centres of the last window of one
    segment and the first of the next; the first segment starts with the
    first window, the last ends with the last window.
    """

    def __init__(self):
        self._label = None
        self._start = self._last = None
        self._sum, self._count = 0.0, 0

    def add(self, result):
        window, label = result.window, result.label
        closed = None
        if self._label is not None and label != self._label:
            boundary = (self._last.centre + window.centre) / 2
            closed = Segment(
                self._start, boundary, self._label, self._sum / self._count, self._count
            )
            self._start, self._sum, self._count = boundary, 0.0, 0
        if self._label is None:
            self._start = window.start
        self._label, self._last = label, window
        self._sum += result.top_k[0][1]
        self._count += 1
        return closed

    def finish(self):
        if self._label is None:
            return None
        segment = Segment(
            self._start, self._last.end, self._label, self._sum / self._count, self._count
        )
        self._label = None
        return segment


def window_record(source, result, live=False):
    """The JSON Lines record of a window (`"kind": "window"`)."""
    window = result.window
    record = {
        "source": source,
        "kind": "window",
        "start": round(window.start, _DIGITS),
        "end": round(window.end, _DIGITS),
        "top_k": [{"class": name, "probability": round(p, 6)} for name, p in result.top_k],
        "index": window.index,
        "model_version": result.model_version,
    }
    if live:
        record["latency"] = round(result.latency, _DIGITS)
    return record


def segment_record(source, segment):
    """The JSON Lines record of a segment (`"kind": "segment"`)."""
    return {
        "source": source,
        "kind": "segment",
        "start": round(segment.start, _DIGITS),
        "end": round(segment.end, _DIGITS),
        "class": segment.label,
        "probability": round(segment.probability, 6),
        "windows": segment.windows,
    }


__all__ = [
    "DEFAULT_IN_FLIGHT",
    "FileTimeline",
    "Labeller",
    "Segment",
    "Segmenter",
    "Window",
    "WindowCutter",
    "WindowResult",
    "default_hop",
    "request_window",
    "segment_record",
    "window_record",
]
