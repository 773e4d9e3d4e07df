"""A stub model server and generated videos for the timeline tests.

The stub answers TF Serving's Predict (gRPC and REST) like an export of
this project, in microseconds: its "model" gives each clip the class of
its dominant colour (`red`, `green`, `blue`: the mean of each channel,
normalised), so a video whose colour changes at known times has a known
timeline. It also answers the `clip_format`, `class_names` and `explain`
signatures. `delay` seconds per `serving_default` call make it slower than
a stream; `legacy_clip_format` makes its `clip_format` signature that of an
export of keras-classreg < 0.3 (no input, a scalar). Like TF Serving, its
REST front end refuses a Predict without inputs.
"""

import concurrent.futures
import contextlib
import http.server
import json
import re
import threading
import time

import grpc
import numpy as np

from clipspec import signatures as names
from clipspec.format import ClipFormat
from serving import predict_wire

CLASSES = ("red", "green", "blue")
COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}
CLIP_FORMAT = ClipFormat(clip_length=4, stride=2, crop_size=16, short_side=16, class_names=CLASSES)
VERSION = 3


def colour_probabilities(clips):
    """float32 `[N, 3]`: each clip's mean colour, normalised to sum 1."""
    means = np.asarray(clips, np.float32).mean(axis=(1, 2, 3)) + 1.0
    return (means / means.sum(axis=1, keepdims=True)).astype(np.float32)


class BadInput(ValueError):
    """A request whose inputs do not fit the signature (INVALID_ARGUMENT)."""


class StubModel:
    """What the stub answers, by signature (inputs/outputs as arrays)."""

    def __init__(self, delay=0.0, legacy_clip_format=False):
        self.delay, self.calls, self.shapes = delay, 0, []
        self.legacy_clip_format = legacy_clip_format
        self._lock = threading.Lock()

    def answer(self, signature, inputs):
        signature = signature or names.SERVING
        if signature == names.CLIP_FORMAT:
            text = CLIP_FORMAT.to_json().encode()
            if self.legacy_clip_format:
                if inputs:
                    raise BadInput(f"input tensor alias not found in signature: {set(inputs)}")
                return {"clip_format": np.array(text, dtype=object)}
            if set(inputs) != {names.CLIP_FORMAT_QUERY_INPUT}:
                raise BadInput(f"expected the input 'query', got {set(inputs)}")
            found = np.empty(len(inputs[names.CLIP_FORMAT_QUERY_INPUT]), dtype=object)
            found[:] = [text] * len(found)
            return {"clip_format": found}
        if signature == names.CLASS_NAMES:
            index = np.asarray(inputs[names.CLASS_INDEX_INPUT]).ravel()
            found = np.empty(len(index), dtype=object)
            found[:] = [CLASSES[int(i)].encode() for i in index]
            return {"class_name": found}
        clips = np.asarray(inputs[names.CLIPS_INPUT])
        with self._lock:
            self.calls += 1
            self.shapes.append(clips.shape)
        if self.delay:
            time.sleep(self.delay)
        probabilities = colour_probabilities(clips)
        if signature == names.SERVING:
            return {"probabilities": probabilities}
        if signature == names.EXPLAIN:
            n, t = clips.shape[:2]
            size = CLIP_FORMAT.crop_size
            maps = np.linspace(0, 1, n * 2 * t * size * size, dtype=np.float32)
            best = probabilities.argmax(axis=1).astype(np.int32)
            blocks = np.empty(2, dtype=object)
            blocks[:] = [b"stage1", b"stage2"]
            return {
                "maps": maps.reshape(n, 2, t, size, size),
                "class_index": best,
                "predicted_class": best,
                "probabilities": probabilities,
                "block_classes": np.stack([best, best], axis=1),
                "block_confidences": np.full((n, 2), 0.5, np.float32),
                "block_names": np.stack([blocks] * n),
            }
        raise KeyError(signature)


def _encode_response(outputs, version=VERSION):
    """A PredictResponse's bytes (the stub's own encoder: the wire module
    encodes requests; a response is the same map at field 1)."""
    parts = []
    for name, value in outputs.items():
        entry = predict_wire._bytes_field(1, name.encode()) + predict_wire._bytes_field(
            2, predict_wire.encode_tensor(value)
        )
        parts.append(predict_wire._bytes_field(1, entry))
    spec = predict_wire.encode_model_spec("stub", version)
    parts.append(predict_wire._bytes_field(2, spec))
    return b"".join(parts)


def _decode_request(data):
    """`(signature, {input: array}, version)` of a PredictRequest."""
    signature, inputs, version = None, {}, None
    for number, _, value in predict_wire._fields(data):
        if number == 1:
            for spec_number, _, spec in predict_wire._fields(value):
                if spec_number == 3:
                    signature = bytes(spec).decode()
                elif spec_number == 2:
                    version = next(v for n, _, v in predict_wire._fields(spec) if n == 1)
        elif number == 2:
            fields = {n: v for n, _, v in predict_wire._fields(value)}
            inputs[bytes(fields[1]).decode()] = predict_wire.decode_tensor(fields.get(2, b""))
    return signature, inputs, version


@contextlib.contextmanager
def grpc_stub(model=None):
    """A stub gRPC server on 127.0.0.1: yields `(address, StubModel)`."""
    model = model or StubModel()

    def predict(request, context):
        signature, inputs, _ = _decode_request(request)
        try:
            return _encode_response(model.answer(signature, inputs))
        except KeyError:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no signature {signature}")
        except BadInput as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", model
    finally:
        server.stop(0)


@contextlib.contextmanager
def rest_stub(model=None):
    """A stub REST server on 127.0.0.1: yields `(address, StubModel)`."""
    from serving.rest_json import from_json, json_value

    def _rest_value(array):
        # TF Serving writes strings as text (base64 only for "*_bytes" outputs)
        if array.dtype == object:
            return np.vectorize(lambda b: b.decode(), otypes=[object])(array).tolist()
        return json_value(array)

    model = model or StubModel()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            state = {"version": str(VERSION), "state": "AVAILABLE"}
            state["status"] = {"error_code": "OK", "error_message": ""}
            self._send(200, {"model_version_status": [state]})

        def do_POST(self):
            if not re.fullmatch(r"/v1/models/stub/versions/\d+:predict", self.path):
                return self._send(404, {"error": f"no such path {self.path}"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            inputs = {k: from_json(v) for k, v in body.get("inputs", {}).items()}
            if not inputs:  # TF Serving's REST API's words
                signature = body.get("signature_name")
                error = f"Failed to get input map for signature: {signature}"
                return self._send(400, {"error": error})
            try:
                outputs = model.answer(body.get("signature_name"), inputs)
            except KeyError:
                return self._send(400, {"error": "no such signature"})
            except BadInput as error:
                return self._send(400, {"error": str(error)})
            values = {k: _rest_value(v) for k, v in outputs.items()}
            if len(values) == 1:
                values = next(iter(values.values()))
            self._send(200, {"outputs": values})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", model
    finally:
        server.shutdown()
        server.server_close()


def write_video(path, frames, fps=10, codec="libx264", container=None):
    """Encodes uint8 `[H, W, 3]` frames (all of one size) as a video file."""
    import av

    with av.open(str(path), "w", format=container) as output:
        stream = None
        for image in frames:
            if stream is None:
                stream = output.add_stream(codec, rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)


def write_colour_video(path, parts, fps=10, size=(48, 32), codec="libx264", container=None):
    """A video of solid colours: `parts` `[(seconds, colour name)]`, in
    order. Returns the times (s) at which the colour changes."""
    width, height = size

    def frames():
        for seconds, colour in parts:
            image = np.zeros((height, width, 3), np.uint8) + np.array(COLOURS[colour], np.uint8)
            yield from [image] * int(round(seconds * fps))

    write_video(path, frames(), fps, codec, container)
    return list(np.cumsum([seconds for seconds, _ in parts[:-1]]).astype(float))


def free_port(kind="udp"):
    """A free port on 127.0.0.1 (UDP or TCP)."""
    import socket

    with socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    ) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_udp_bound(port, process, timeout=60.0):
    """Waits until some socket is bound to UDP `port` on this machine (the
    client under test listening; read from /proc/net/udp and udp6), so that
    a test starts its stream only then, however slowly the client started.
    Fails when `process` ends first or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table) as rows:
                    next(rows)  # the header
                    if any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows):
                        return
            except OSError:
                continue
        if process.poll() is not None:
            raise AssertionError(f"the client ended (exit {process.returncode}) before listening")
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on UDP port {port} within {timeout} s")


def stream_colours_udp(port, parts, fps=25, size=(48, 32), stop=None, modes=None):
    """Sends MPEG-TS to udp://127.0.0.1:`port` in real time: solid colours
    `parts` `[(seconds, colour name)]`; `modes` `{part index: ((w, h),
    fps)}` changes the resolution and frame rate from that part on. Stops
    early when `stop` (an Event) is set."""
    from serving.live import send_realtime

    def frames():
        for part, (seconds, colour) in enumerate(parts):
            (width, height), rate = (modes or {}).get(part, (size, fps))
            image = np.zeros((height, width, 3), np.uint8) + np.array(COLOURS[colour], np.uint8)
            for _ in range(int(round(seconds * rate))):
                yield image, rate

    return send_realtime(f"udp://127.0.0.1:{port}?pkt_size=1316", frames(), fps, stop)
