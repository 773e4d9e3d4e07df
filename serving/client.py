"""Client of a TF-Serving-API model server: library and command line.

`ServingClient` wraps TF Serving's own gRPC stubs with timeouts and retries
(gRPC's own retry policy from the channel's service config: exponential
backoff on UNAVAILABLE, e.g. a server still starting or a full batching
queue). It works the same against `python -m serving.server` and the
official `tensorflow/serving` container. `classify_video` reads the model's
`ClipFormat` from its `clip_format` signature (clip length, stride, crop,
short side, views, normalisation), decodes the video with PyAV, samples the
test-time views exactly as evaluation does, sends them in Predict calls and
averages the class probabilities over the views (the video-level score).

Command line:

    python -m serving.client --server 127.0.0.1:8500 --model classreg a.mp4 b.avi
    python -m serving.client --model classreg --json a.mp4
    python -m serving.client --model classreg --explain explain_out a.mp4

Every input is answered on its own: a file that cannot be read or
classified (empty, not a video, an image renamed .avi, audio only, a
broken link, a server error for that request) is reported with the reason
— on stderr as `PATH: error: REASON`, or with `--json` as that input's
record `{"path": ..., "error": ...}` — and the next file is classified.
Answers are printed as soon as they are known (`--json`: JSON Lines, one
object per input, in input order, flushed), so an interruption or a crash
never loses the answers already computed. Exit status: 0 when every input
was classified, 1 when any failed, 2 for a usage error, 130 on Ctrl-C.

Library:

>>> client = ServingClient("127.0.0.1:8500", timeout=10)      # doctest: +SKIP
>>> client.wait_until_available("classreg")                    # doctest: +SKIP
1
>>> result = classify_video(client, "classreg", "a.mp4")       # doctest: +SKIP
>>> result.top_k[0]                                            # doctest: +SKIP
('cartwheel', 0.83)
"""

import dataclasses
import json
import sys

import grpc
import numpy as np

from clipspec import cli
from clipspec import signatures as names
from clipspec.format import ClipFormat
from serving import polling, timeline_cli

# TensorFlow and TF Serving's protos (which import it) load on first use, so
# that `--help` answers at once.
tf = cli.lazy_import("tensorflow")
classification_pb2 = cli.lazy_import("tensorflow_serving.apis.classification_pb2")
get_model_metadata_pb2 = cli.lazy_import("tensorflow_serving.apis.get_model_metadata_pb2")
get_model_status_pb2 = cli.lazy_import("tensorflow_serving.apis.get_model_status_pb2")
model_service_pb2_grpc = cli.lazy_import("tensorflow_serving.apis.model_service_pb2_grpc")
predict_pb2 = cli.lazy_import("tensorflow_serving.apis.predict_pb2")
prediction_service_pb2_grpc = cli.lazy_import("tensorflow_serving.apis.prediction_service_pb2_grpc")

DEFAULT_SERVER = "127.0.0.1:8500"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)
MAX_RETRIES = 4  # gRPC caps a retry policy at 5 attempts
DEFAULT_VIEWS_PER_REQUEST = 8
# Channel options: after a server restart the channel reconnects within
# about a second (gRPC's default backoff grows to 120 s, so a restarted
# server stayed unreachable for seconds on an existing channel); keepalive
# pings every 30 s while calls are open find a dead connection.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 0),
)


def _read_pem(path, what):
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ValueError(f"Cannot read the {what} file {path}: {error}") from None


def channel_credentials(ssl_ca=None, ssl_cert=None, ssl_key=None):
    """`grpc.ChannelCredentials` for TLS (`ssl_ca`: PEM file of the CA that
    signed the server's certificate, None: the system's roots) and mutual
    TLS (`ssl_cert` and `ssl_key`: the client's PEM certificate and key)."""
    if (ssl_cert is None) != (ssl_key is None):
        raise ValueError(
            "Mutual TLS needs both `ssl_cert` and `ssl_key` "
            f"(received ssl_cert={ssl_cert!r}, "
            f"ssl_key={ssl_key!r})."
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(ssl_ca, "CA certificate"),
        private_key=_read_pem(ssl_key, "client key"),
        certificate_chain=_read_pem(ssl_cert, "client certificate"),
    )


def retry_service_config(retries, backoff, retry_codes=RETRY_CODES):
    """The gRPC service config (JSON) of a channel that retries every method
    on `retry_codes`: `retries` extra attempts, exponential backoff from
    `backoff` seconds (gRPC draws each delay at random below the current
    backoff, which doubles every attempt, capped at 10 s)."""
    if not retries:
        return None
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],  # every service and method of the channel
                    "retryPolicy": {
                        "maxAttempts": retries + 1,
                        "initialBackoff": f"{backoff:.3f}s",
                        "maxBackoff": "10s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": [code.name for code in retry_codes],
                    },
                }
            ]
        }
    )


class ServingClient:
    """TF Serving's Predict / Classify / GetModelMetadata / GetModelStatus
    with a deadline per call and retries.

    Retries are gRPC's own (the channel's service-config retry policy), so
    they also cover calls made through the stubs directly.

    Args:
        server: `host:port` of the gRPC endpoint.
        timeout: seconds per call, retries included (gRPC deadline).
        retries: extra attempts on `retry_codes` (default UNAVAILABLE),
            at most 4 (gRPC's limit is 5 attempts).
        backoff: the first retry's maximum delay in seconds; doubled every
            retry (gRPC picks each delay at random below it).
        max_message_bytes: largest request/response this client accepts.
        ssl: use TLS (implied by any of the `ssl_*` files).
        ssl_ca: PEM file of the CA of the server's certificate (default:
            the system's roots).
        ssl_cert, ssl_key: the client's PEM certificate and key (mutual TLS,
            a server with `client_verify`).
        ssl_target_name: the name the server's certificate is checked
            against, when it is not the host of `server`.
    """

    def __init__(
        self,
        server=DEFAULT_SERVER,
        timeout=30.0,
        retries=3,
        backoff=0.5,
        max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        retry_codes=RETRY_CODES,
        ssl=False,
        ssl_ca=None,
        ssl_cert=None,
        ssl_key=None,
        ssl_target_name=None,
    ):
        if not isinstance(server, str) or ":" not in server:
            raise ValueError(
                "Invalid value for argument `server`. Expected 'host:port'. "
                f"Received: server={server!r}"
            )
        if timeout is not None and not timeout > 0:
            raise ValueError(
                "Invalid value for argument `timeout`. Expected "
                f"a positive number. Received: timeout={timeout!r}"
            )
        if (
            isinstance(retries, bool)
            or not isinstance(retries, int)
            or not 0 <= retries <= MAX_RETRIES
        ):
            raise ValueError(
                "Invalid value for argument `retries`. Expected "
                f"an int from 0 to {MAX_RETRIES}. Received: "
                f"retries={retries!r}"
            )
        if not backoff > 0:
            raise ValueError(
                "Invalid value for argument `backoff`. Expected "
                f"a positive number. Received: backoff={backoff!r}"
            )
        self.server, self.timeout = server, timeout
        self.retries, self.backoff = retries, float(backoff)
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.enable_retries", 1 if retries else 0),
            *CHANNEL_OPTIONS,
        ]
        config = retry_service_config(retries, self.backoff, tuple(retry_codes))
        if config is not None:
            options.append(("grpc.service_config", config))
        if ssl_target_name:
            options.append(("grpc.ssl_target_name_override", ssl_target_name))
        if ssl or ssl_ca or ssl_cert or ssl_key:
            self._channel = grpc.secure_channel(
                server, channel_credentials(ssl_ca, ssl_cert, ssl_key), options=options
            )
        else:
            self._channel = grpc.insecure_channel(server, options=options)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._class_names = {}
        self._clip_formats = {}

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw calls -----------------------------------------------------
    def call(self, method, request, timeout=None):
        """Calls a stub method (e.g. `"Predict"`); returns the response or
        raises the `grpc.RpcError` of the last attempt."""
        stub = (
            self._models
            if method in ("GetModelStatus", "HandleReloadConfigRequest")
            else self._predictions
        )
        return getattr(stub, method)(request, timeout=timeout or self.timeout)

    # -- TF Serving API ------------------------------------------------
    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` is an array (sent as `clips`) or a dict of
        arrays; returns a dict of NumPy arrays."""
        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, model, version, signature)
        if not isinstance(inputs, dict):
            inputs = {names.CLIPS_INPUT: inputs}
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        request.output_filter.extend(output_filter)
        response = self.call("Predict", request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def predict_response(self, request):
        """Predict with a ready `PredictRequest` (returns the response)."""
        return self.call("Predict", request)

    def classify(self, model, examples, signature=names.CLASSIFY, version=None):
        """Classify `tf.train.Example`s; returns, per example, a list of
        `(label, score)`."""
        request = classification_pb2.ClassificationRequest()
        _model_spec(request.model_spec, model, version, signature)
        request.input.example_list.examples.extend(examples)
        response = self.call("Classify", request)
        return [
            [(c.label, c.score) for c in result.classes]
            for result in response.result.classifications
        ]

    def metadata(self, model, version=None):
        """GetModelMetadata: `(version, {signature name: SignatureDef})`."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        _model_spec(request.model_spec, model, version)
        request.metadata_field.append("signature_def")
        response = self.call("GetModelMetadata", request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return response.model_spec.version.value, dict(signatures.signature_def)

    def status(self, model, version=None):
        """GetModelStatus: list of `(version, state, error code, message)`
        with state and code as names (`"AVAILABLE"`, `"OK"`)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, model, version)
        response = self.call("GetModelStatus", request)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [
            (
                s.version,
                states.Name(s.state),
                _STATUS_BY_NUMBER.get(s.status.error_code, grpc.StatusCode.UNKNOWN).name,
                s.status.error_message,
            )
            for s in response.model_version_status
        ]

    def wait_until_available(self, model, timeout=60.0, version=None):
        """Waits until a version of `model` is AVAILABLE; returns its number."""
        return polling.wait_until_available(
            self.status,
            model,
            self.server,
            timeout,
            version,
            errors=grpc.RpcError,
            describe=lambda error: f"{error.code().name}: {error.details()}",
        )

    # -- helpers for this project's exports ----------------------------
    def clip_format(self, model, version=None):
        """The model's `ClipFormat`, from its `clip_format` signature
        (cached per model and version).

        Exports made before that signature existed give a format built from
        the `predict_normalized` input shape with the defaults (stride 2,
        Kinetics mean/std, 10 clips x 1 crop), class names left empty.
        """
        key = (model, version)
        if key not in self._clip_formats:
            try:
                outputs = self.predict(model, {}, signature=names.CLIP_FORMAT, version=version)
                text = outputs["clip_format"]
                text = text.item() if hasattr(text, "item") else text
                clip_format = ClipFormat.from_json(
                    text.decode("utf-8") if isinstance(text, bytes) else text,
                    f"model {model!r} clip_format signature",
                )
            except Exception as error:
                if not self._is_missing_signature(error):
                    raise
                clip_format = self._legacy_clip_format(model, version)
            self._clip_formats[key] = clip_format
        return self._clip_formats[key]

    @staticmethod
    def _is_missing_signature(error):
        # TF Serving: FAILED_PRECONDITION 'Serving signature key "..." not found'
        return isinstance(error, grpc.RpcError) and error.code() in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    def _legacy_clip_format(self, model, version):
        _, signatures = self.metadata(model, version)
        signature = signatures.get(names.PREDICT_NORMALIZED)
        dims = (
            [d.size for d in signature.inputs[names.CLIPS_INPUT].tensor_shape.dim]
            if signature is not None and names.CLIPS_INPUT in signature.inputs
            else []
        )
        if len(dims) != 5 or min(dims[1:4]) < 1 or dims[2] != dims[3]:
            raise ValueError(
                f"Model {model!r} exposes neither its clip format (no "
                f"'{names.CLIP_FORMAT}' signature) nor its input size (no "
                f"'{names.PREDICT_NORMALIZED}' signature): it was not exported "
                "by `python -m training.export`."
            )
        return ClipFormat(clip_length=dims[1], crop_size=dims[2])

    def class_names(self, model, indices, version=None):
        """Names of class `indices` (the export's `class_names` signature),
        cached per model."""
        cache = self._class_names.setdefault((model, version), {})
        missing = sorted({int(i) for i in indices} - set(cache))
        if missing:
            found = self.predict(
                model,
                {names.CLASS_INDEX_INPUT: np.array(missing, np.int32)},
                signature=names.CLASS_NAMES,
                version=version,
            )["class_name"]
            cache.update({i: n.decode() for i, n in zip(missing, found)})
        return [cache[int(i)] for i in indices]


def _model_spec(spec, model, version=None, signature=None):
    spec.name = model
    if version is not None:
        spec.version.value = int(version)
    if signature:
        spec.signature_name = signature


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


# ----------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------
@dataclasses.dataclass
class VideoPrediction:
    """What `classify_video` returns for one video."""

    path: str
    top_k: list  # [(class name, mean probability)], best first
    probabilities: np.ndarray  # float32 [K], mean over the views
    num_views: int
    num_frames: int
    fps: float
    model_version: int

    def to_json(self):
        return {
            "path": self.path,
            "top_k": [
                {"class": name, "score": round(float(score), 6)} for name, score in self.top_k
            ],
            "num_views": self.num_views,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "model_version": self.model_version,
        }


def video_views(path, clip_format):
    """Decodes `path` (PyAV, at the format's short side) and samples the
    test-time views exactly as evaluation does: uint8
    `[num_clips * num_crops, T, S, S, 3]`, the decoded frame count and fps."""
    from clipspec.decode import decode_video
    from clipspec.sampling import eval_views

    frames, fps = decode_video(path, short_side=clip_format.short_side)
    views = np.asarray(
        eval_views(
            frames,
            clip_format.clip_length,
            clip_format.stride,
            clip_format.crop_size,
            clip_format.num_clips,
            clip_format.num_crops,
            clip_format.short_video,
        ),
        np.uint8,
    )
    return views, len(frames), float(fps)


def model_clip_format(client, model, version=None, **overrides):
    """The model's `ClipFormat` (from the server) with `overrides`
    (`clip_length`, `crop_size`, `stride`, `num_clips`, `num_crops`,
    `short_side`; `None` values are ignored)."""
    return client.clip_format(model, version).replace(**overrides)


def classify_video(
    client,
    model,
    path,
    top_k=5,
    version=None,
    views_per_request=DEFAULT_VIEWS_PER_REQUEST,
    **overrides,
):
    """Classifies one video file through the server.

    The clips are cut as the model's `ClipFormat` says (read from the
    server; `overrides` change fields, see `model_clip_format`). The views
    go in Predict calls of up to `views_per_request` clips
    (`serving_default`; after the first call the version it answered with is
    requested, so a version swap mid-video cannot mix models); the
    video-level score is the mean of the views' probabilities.
    """
    from clipspec.decode import check_video_file

    check_video_file(path)  # before asking the server anything
    if (
        isinstance(views_per_request, bool)
        or not isinstance(views_per_request, int)
        or views_per_request < 1
    ):
        raise ValueError(
            "Invalid value for argument `views_per_request`. Expected a "
            f"positive int. Received: views_per_request={views_per_request!r}"
        )
    clip_format = model_clip_format(client, model, version, **overrides)
    views, num_frames, fps = video_views(path, clip_format)
    chunks, served = [], version
    for start in range(0, len(views), views_per_request):
        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, model, served, names.SERVING)
        request.inputs[names.CLIPS_INPUT].CopyFrom(
            tf.make_tensor_proto(views[start : start + views_per_request])
        )
        request.output_filter.append("probabilities")
        response = client.predict_response(request)
        chunks.append(tf.make_ndarray(response.outputs["probabilities"]))
        served = response.model_spec.version.value or served
    mean = np.concatenate(chunks).mean(axis=0)
    best = np.argsort(-mean, kind="stable")[:top_k]
    class_names = client.class_names(model, best, version=served)
    return VideoPrediction(
        path=path,
        top_k=[(name, float(mean[i])) for name, i in zip(class_names, best)],
        probabilities=mean.astype(np.float32),
        num_views=len(views),
        num_frames=num_frames,
        fps=fps,
        model_version=served,
    )


def request_explanation(client, model, path, out_dir, version=None, name=None, **overrides):
    """Asks the export's `explain` signature for the per-block class-evidence
    maps of the video's centre clip (for the model's top class) and writes
    `<name>_explain.png`, `<name>_<block>.gif` and `<name>_explain.json` to
    `out_dir` (as `python -m training.explain` does; `name` defaults to the
    file's stem, see `clipspec.explanation_files.output_names` for several
    videos). Returns the summary (per-block guesses, written files)."""
    from clipspec.decode import check_video_file
    from clipspec.explanation_files import write_explanation
    from keras_classreg.explanations import Explanation

    check_video_file(path)
    overrides.update(num_clips=1, num_crops=1)
    clip_format = model_clip_format(client, model, version, **overrides)
    views, _, fps = video_views(path, clip_format)
    request = predict_pb2.PredictRequest()
    _model_spec(request.model_spec, model, version, names.EXPLAIN)
    request.inputs[names.CLIPS_INPUT].CopyFrom(tf.make_tensor_proto(views))
    response = client.predict_response(request)
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    if "block_names" not in outputs:
        raise ValueError(
            f"Model {model!r}: the '{names.EXPLAIN}' signature returned no `block_names`."
        )
    served = response.model_spec.version.value or version
    num_classes = outputs["probabilities"].shape[-1]
    class_names = client.class_names(model, range(num_classes), version=served)
    explanation = Explanation.from_outputs(outputs, outputs["block_names"][0])
    return write_explanation(
        explanation, views[0], class_names, out_dir, path, fps=fps / clip_format.stride, name=name
    )


# ----------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------
def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m serving.client",
        description=(
            "Classify video files with a model served over TF Serving's "
            "gRPC API (python -m serving.server or the tensorflow/serving "
            "container). Each video is decoded, sampled into test-time "
            "views (uniform clips x crops), sent in one Predict request, and "
            "the view probabilities are averaged."
        ),
        epilog="Example: python -m serving.client --server 127.0.0.1:8500 "
        "--model classreg video1.mp4 video2.avi --json",
    )
    parser.add_argument(
        "videos", nargs="+", help="Video files (anything FFmpeg decodes: mp4, avi, mkv, webm, ...)."
    )
    parser.add_argument(
        "--server",
        default=None,
        help=f"host:port of the gRPC server (with --rest: of "
        f"the REST API). Default: {DEFAULT_SERVER} (with "
        "--rest: 127.0.0.1:8501).",
    )
    parser.add_argument(
        "--rest",
        action="store_true",
        help="Talk to TF Serving's REST API instead of gRPC (serving.rest_client).",
    )
    parser.add_argument("--model", required=True, help="Model name on the server (MODEL_NAME).")
    parser.add_argument(
        "--version", type=int, default=None, help="Model version (default: the latest served)."
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="Classes to print per video. Default: 5."
    )
    fmt = parser.add_argument_group(
        "clip format (default: the model's own, read from its clip_format "
        "signature; these override it)"
    )
    fmt.add_argument("--clip-length", type=int, default=None, help="Frames per clip.")
    fmt.add_argument("--crop-size", type=int, default=None, help="Crop size in pixels.")
    fmt.add_argument(
        "--stride", type=int, default=None, help="Temporal stride between sampled frames."
    )
    fmt.add_argument(
        "--num-clips", type=int, default=None, help="Uniformly spaced clips per video."
    )
    fmt.add_argument(
        "--num-crops",
        type=int,
        default=None,
        choices=(1, 3),
        help="Spatial crops per clip (1: centre; 3: along the long side).",
    )
    fmt.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="Decode frames at this short side before cropping.",
    )
    parser.add_argument(
        "--views-per-request",
        type=int,
        default=DEFAULT_VIEWS_PER_REQUEST,
        help="Clips per Predict request (keeps requests "
        "under the message size limit). Default: "
        f"{DEFAULT_VIEWS_PER_REQUEST}.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="Seconds per request, retries included. Default: 30.",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        choices=range(MAX_RETRIES + 1),
        metavar="0-4",
        help="Retries on UNAVAILABLE, with exponential backoff (gRPC's retry policy). Default: 3.",
    )
    tls = parser.add_argument_group("TLS (a server started with --ssl_config_file; gRPC only)")
    tls.add_argument(
        "--ssl",
        action="store_true",
        help="Use TLS, trusting the system's CAs (implied by --ssl-ca, --ssl-cert, --ssl-key).",
    )
    tls.add_argument(
        "--ssl-ca",
        metavar="PEM",
        default=None,
        help="CA certificate that signed the server's certificate (its custom CA).",
    )
    tls.add_argument(
        "--ssl-cert",
        metavar="PEM",
        default=None,
        help="Client certificate (mutual TLS: the server's client_verify).",
    )
    tls.add_argument(
        "--ssl-key", metavar="PEM", default=None, help="Client private key (with --ssl-cert)."
    )
    tls.add_argument(
        "--ssl-server-name",
        metavar="NAME",
        default=None,
        help="Check the server's certificate against this name instead of the host of --server.",
    )
    parser.add_argument(
        "--explain",
        metavar="DIR",
        default=None,
        help="Also request the 'explain' signature for each "
        "video's centre clip and save its per-block class-"
        "evidence pictures (PNG grid, GIF, JSON) in DIR (with "
        "--timeline: per window, and an overlay video).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print JSON Lines instead of text: one object "
        "per input, in input order, printed as soon as it "
        "is known; a failed input's object has 'path' and "
        "'error'.",
    )
    timeline_cli.add_arguments(parser)
    return parser


def _failure(error):
    """The reason an input failed, in one line (no traceback)."""
    from clipspec.decode import VideoDecodeError

    rest = sys.modules.get("serving.rest_client")
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, VideoDecodeError):
        return error.reason
    if isinstance(error, (OSError, ValueError)) or (
        rest is not None and isinstance(error, rest.RestError)
    ):
        return cli.one_line(error)
    return f"{type(error).__name__}: {cli.one_line(error)}"


def _emit(record, as_json):
    if as_json:
        print(cli.dumps_json(record, indent=None), flush=True)


def _print_text(path, result, explanation):
    print(
        f"{cli.printable(path)} (model version {result.model_version}, {result.num_views} views):"
    )
    for name, score in result.top_k:
        print(f"  {score:7.4f}  {name}")
    if explanation is not None:
        for block in explanation["blocks"]:
            print(f"  {block['block']}: guess {block['guess']} ({block['confidence']:.2f})")
        print(
            "  explanation: " + ", ".join(cli.printable(f) for f in explanation["files"].values())
        )
    sys.stdout.flush()


@cli.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    if timeline_cli.wanted(args):
        return timeline_cli.run(args)
    from clipspec.explanation_files import output_names

    failures = 0
    tls = dict(
        ssl=args.ssl,
        ssl_ca=args.ssl_ca,
        ssl_cert=args.ssl_cert,
        ssl_key=args.ssl_key,
        ssl_target_name=args.ssl_server_name,
    )
    if args.rest:
        from serving.rest_client import DEFAULT_REST_SERVER, RestClient

        if any(tls.values()):
            return cli.fail(
                "the TLS options are for gRPC; the REST API has no TLS (as in TF Serving)"
            )
        make, server, tls = RestClient, args.server or DEFAULT_REST_SERVER, {}
    else:
        make, server = ServingClient, args.server or DEFAULT_SERVER
    try:
        client = make(server, timeout=args.timeout, retries=args.retries, **tls)
    except ValueError as error:
        return cli.fail(error)
    stems = output_names(args.videos)
    overrides = dict(
        clip_length=args.clip_length,
        crop_size=args.crop_size,
        stride=args.stride,
        short_side=args.short_side,
    )
    with client:
        for path in args.videos:
            # One input's failure, whatever it is, is that input's answer;
            # the next input is classified all the same.
            try:
                result = classify_video(
                    client,
                    args.model,
                    path,
                    top_k=args.top_k,
                    version=args.version,
                    views_per_request=args.views_per_request,
                    num_clips=args.num_clips,
                    num_crops=args.num_crops,
                    **overrides,
                )
                explanation = (
                    None
                    if args.explain is None
                    else request_explanation(
                        client,
                        args.model,
                        path,
                        args.explain,
                        version=result.model_version,
                        name=stems[path],
                        **overrides,
                    )
                )
            except Exception as error:  # noqa: BLE001 — reported for this input
                failures += 1
                message = _failure(error)
                _emit({"path": path, "error": message}, args.json)
                if not args.json:
                    print(
                        f"{cli.printable(path)}: error: {cli.printable(message)}",
                        file=sys.stderr,
                        flush=True,
                    )
                continue
            record = result.to_json()
            if explanation is not None:
                record["explanation"] = explanation
            _emit(record, args.json)
            if not args.json:
                _print_text(path, result, explanation)
    if failures and not args.json:
        print(f"{failures} of {len(args.videos)} input(s) failed.", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
