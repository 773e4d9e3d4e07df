"""Live streams: the newest window labelled every hop, in real time.

A reader thread decodes the stream (`clipspec.stream.FrameStream`) into a
ring buffer of one window's frames (`serving.timeline.WindowCutter`).
Every `hop` seconds the main loop takes the newest window and sends it,
unless `in_flight` windows already wait for the server: then that window
is dropped and counted, so the client never falls behind the stream.
Answers are printed as they come, in order, with their latency: from the
window's newest frame decoded to the answer.

A stream that stops sending (nothing for `timeout` seconds), ends or
fails is opened again after 0.5 s, then 1, 2, 4, 8 s (`reconnects`
times; a frame received resets the count). Then it is given up: one
`error:` line. Standard input and regular files end normally; a regular
file is played at its own frame rate (as a camera would send it). Frame size
and frame rate may change mid-stream (the windows start afresh at a new
size). Window times are seconds since the first frame, across reconnects.

`LiveTimeline.summary()`: windows answered, dropped, reconnects, latency
p50/p95 — printed at the end, after a lost stream and on Ctrl-C.
"""

import collections
import concurrent.futures
import dataclasses
import os
import threading
import time

import numpy as np

import cliutil
from clipspec.decode import VideoDecodeError
from clipspec.stream import DEFAULT_TIMEOUT, STDIN, FrameStream, is_live
from serving.timeline import Labeller, WindowCutter, default_hop, request_window

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 8.0
# Timestamps that go back, or forward by more than this (seconds), are a
# discontinuity of the stream.
MAX_TIME_JUMP = 5.0
DEFAULT_LIVE_IN_FLIGHT = 2


class StreamLost(Exception):
    """The stream failed and could not be opened again."""


class FrameReader(threading.Thread):
    """Decodes `source` into `cutter` (under `lock`), reconnecting with
    bounded backoff; `error` holds the reason it gave up, None when the
    stream ended normally or `stop` was set."""

    def __init__(self, source, short_side, cutter, timeout, reconnects, on_warning):
        super().__init__(daemon=True, name="frame-reader")
        self.source, self.short_side, self.cutter = source, short_side, cutter
        self.timeout, self.reconnects = timeout, reconnects
        self.on_warning = on_warning
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.error, self.frames, self.reconnected = None, 0, 0
        self.fps = 0.0  # the stream's frame rate, once opened
        self.started = None  # monotonic time of the first frame
        # a file given as live is played at its own pace, as a camera sends
        self.pace = not is_live(source)
        self.ends_normally = os.fspath(source) == STDIN or self.pace

    def run(self):
        failures, last = 0, None
        while not self.stop.is_set():
            offset = None
            try:
                stream = FrameStream(self.source, self.short_side, self.timeout)
                for frame in stream:
                    if self.stop.is_set():
                        return
                    self.fps = stream.fps
                    if self.started is None:
                        self.started = frame.captured
                    shown = None if offset is None else frame.time + offset
                    if shown is None or not last < shown < last + MAX_TIME_JUMP:
                        # a new connection, or the timestamps jumped (the
                        # sender restarted): go on from the wall clock,
                        # never back in time
                        now = frame.captured - self.started
                        offset = (now if last is None else max(now, last + 1e-3)) - frame.time
                    frame.time += offset
                    last = frame.time
                    if self.pace and self.stop.wait(max(0, self.started + last - time.monotonic())):
                        return
                    if self.pace:
                        frame.captured = time.monotonic()
                    frame.index = self.frames
                    self.frames += 1
                    failures = 0
                    with self.lock:
                        self.cutter.push(frame)
                if self.ends_normally:
                    return
                reason = "the stream ended"
            except VideoDecodeError as error:
                reason = error.reason
            except Exception as error:  # noqa: BLE001 — any failure of the stream is retried
                reason = f"{type(error).__name__}: {cliutil.one_line(error)}"
            if failures >= self.reconnects:
                tries = f" after {failures} reconnect(s)" if failures else ""
                self.error = f"stream lost{tries}: {reason}"
                return
            delay = min(FIRST_BACKOFF * 2**failures, MAX_BACKOFF)
            failures += 1
            self.reconnected += 1
            self.on_warning(f"{reason}; reconnecting in {delay:g} s ({failures}/{self.reconnects})")
            if self.stop.wait(delay):
                return


@dataclasses.dataclass
class LiveSummary:
    windows: int
    dropped: int
    reconnects: int
    latency_p50: float
    latency_p95: float
    frames: int

    def record(self):
        """The JSON fields (seconds rounded to the millisecond)."""
        values = dataclasses.asdict(self)
        for key in ("latency_p50", "latency_p95"):
            values[key] = round(values[key], 3)
        return values

    def text(self):
        latency = (
            f"latency p50 {self.latency_p50 * 1000:.0f} ms, p95 {self.latency_p95 * 1000:.0f} ms"
            if self.windows
            else "no latency (no answer)"
        )
        return (
            f"live summary: {self.windows} windows answered, {self.dropped} dropped "
            f"(server slower than the stream), {self.reconnects} reconnect(s), "
            f"{self.frames} frames, {latency}"
        )


class LiveTimeline:
    """Labels a live stream (see the module docstring).

    `run(on_result)` calls `on_result(WindowResult)` for every answer, in
    order, until the stream ends (returns) or is lost (`StreamLost`);
    Ctrl-C propagates as `KeyboardInterrupt` (the summary stays available).
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
        in_flight=DEFAULT_LIVE_IN_FLIGHT,
        timeout=DEFAULT_TIMEOUT,
        reconnects=5,
        on_warning=None,
        **overrides,
    ):
        self.predictor, self.model, self.source = predictor, model, source
        self.version, self.in_flight = version, in_flight
        self.labeller = Labeller(predictor, model, top_k, smooth)
        self.clip_format = predictor.clip_format(model, version).replace(**overrides)
        self.chosen_hop = hop
        self.cutter = WindowCutter(
            self.clip_format.clip_length,
            self.clip_format.stride,
            hop or default_hop(self.clip_format, None),
            self.clip_format.short_video,
        )
        self.reader = FrameReader(
            source,
            self.clip_format.short_side,
            self.cutter,
            timeout,
            reconnects,
            on_warning or (lambda message: None),
        )
        self.latencies, self.dropped = [], 0

    @property
    def hop(self):
        """Seconds between windows: as given, else half a window at the
        stream's frame rate (25 fps until it is known)."""
        return self.chosen_hop or default_hop(self.clip_format, self.reader.fps)

    def summary(self):
        latencies = np.array(self.latencies or [0.0])
        return LiveSummary(
            windows=len(self.latencies),
            dropped=self.dropped,
            reconnects=self.reader.reconnected,
            latency_p50=float(np.percentile(latencies, 50)),
            latency_p95=float(np.percentile(latencies, 95)),
            frames=self.reader.frames,
        )

    def _newest(self, last_index):
        """`(window, index of its newest frame)`, None without a new frame."""
        with self.reader.lock:
            frames = self.cutter.frames
            if len(frames) < self.cutter.span or frames[-1].index == last_index:
                return None, last_index
            return self.cutter.newest(), frames[-1].index

    def run(self, on_result):
        self.reader.start()
        pending = collections.deque()
        last_index, tick = None, time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.in_flight) as pool:
            try:
                while True:
                    while pending and pending[0][1].done():
                        self._answer(*pending.popleft(), on_result)
                    if not self.reader.is_alive() and not pending:
                        break
                    if self.reader.is_alive():
                        window, last_index = self._newest(last_index)
                        if window is not None:
                            if len(pending) >= self.in_flight:
                                self.dropped += 1
                            else:
                                future = pool.submit(self._request, window.clip)
                                pending.append((window, future))
                    tick += self.hop
                    wait = tick - time.monotonic()
                    if wait < 0:  # behind (a slow machine): start again from now
                        tick, wait = time.monotonic(), 0
                    if pending:
                        concurrent.futures.wait([pending[0][1]], timeout=wait)
                        wait = tick - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
            finally:
                self.reader.stop.set()
                for _, future in pending:
                    future.cancel()
        if self.reader.error is not None:
            raise StreamLost(self.reader.error)

    def _request(self, clip):
        probabilities, version = request_window(self.predictor, self.model, clip, self.version)
        return probabilities, version, time.monotonic()

    def _answer(self, window, future, on_result):
        probabilities, version, answered = future.result()
        self.version = self.version or version
        result = self.labeller(window, probabilities, version, answered)
        self.latencies.append(result.latency)
        on_result(result)


def send_realtime(url, frames, fps=25, stop=None, container="mpegts", codec="libx264"):
    """Encodes `frames` and sends them to `url` (e.g.
    `udp://127.0.0.1:5000?pkt_size=1316`) in real time: a loopback stream
    to try `--live` without a camera (and the tests' and benchmark's
    stream).

    `frames` are uint8 `[H, W, 3]` arrays sent at `fps` frames per second,
    or `(array, fps)` pairs with their own rate. A frame of another size or
    rate starts a new stream, as a camera changing mode does. Stops early
    when `stop` (a `threading.Event`) is set. Returns the frames sent."""
    import av

    output = stream = current = None
    due, count = time.monotonic(), 0
    try:
        for item in frames:
            image, rate = item if isinstance(item, tuple) else (item, fps)
            if stop is not None and stop.is_set():
                break
            mode = (image.shape[0], image.shape[1], rate)
            if mode != current:
                if output is not None:
                    _flush(output, stream)
                current = mode
                output = av.open(url, "w", format=container)
                stream = output.add_stream(codec, rate=round(rate))
                stream.height, stream.width, stream.pix_fmt = mode[0], mode[1], "yuv420p"
                stream.options = {
                    "tune": "zerolatency",
                    "preset": "ultrafast",
                    "g": str(round(rate) // 5 or 1),
                }
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                output.mux(packet)
            due += 1.0 / rate
            count += 1
    finally:
        if output is not None:
            _flush(output, stream)
    return count


def _flush(output, stream):
    for packet in stream.encode():
        output.mux(packet)
    output.close()


__all__ = ["LiveSummary", "LiveTimeline", "StreamLost", "send_realtime"]
