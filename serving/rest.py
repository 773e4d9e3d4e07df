"""TF Serving's REST API (`--rest_api_port`), on the shared request handlers.

The URLs, JSON formats, messages and HTTP status codes of TF Serving's
`http_rest_api_handler.cc` and `util/json_tensor.cc`:

- `GET /v1/models/NAME[/versions/N | /labels/L]`: model status
  (GetModelStatusResponse as JSON);
- `GET /v1/models/NAME[/versions/N | /labels/L]/metadata`: signatures;
- `POST /v1/models/NAME[/versions/N | /labels/L]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format, answered as
  `{"predictions": [...]}`) or `{"inputs": ...}` (columnar, answered as
  `{"outputs": ...}`); binary strings as `{"b64": "..."}`, and outputs whose
  name ends in `_bytes` are written that way;
- `POST ...:classify` / `...:regress` with `{"examples": [{feature: value,
  ...}], "context": {...}}`, answered as `{"results": ...}`;
- failures: `{"error": "message"}` with TF Serving's HTTP code for the
  status (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404,
  UNAVAILABLE 503, DEADLINE_EXCEEDED 504, ...).

The HTTP server is waitress (pure Python, no dependencies, a production
WSGI server with a thread pool — the model of TF Serving's REST threads —,
request-size limits and clean shutdown); this module is the WSGI
application (routing, TF Serving's `http_rest_api_handler.cc`) and the
HTTP server; the JSON <-> tensor conversion is `serving.json_tensor` and
`serving.json_examples`.
"""

import logging
import re
import threading
import urllib.parse

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.dispatch import Dispatcher
from serving.errors import ServingError, invalid_argument, limit_message
from serving.json_examples import classification_json, examples_from_json, regression_json
from serving.json_tensor import (
    dumps,
    fill_signature,
    parse_json,
    predict_inputs_from_json,
    predict_json,
)
from serving.limits import JSON_BYTES_PER_BODY_BYTE
from serving.metadata import SIGNATURE_DEF_FIELD

_LOG = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)

# http_server.cc's ToHTTPStatusCode.
HTTP_STATUS = {
    grpc.StatusCode.OK: "200 OK",
    grpc.StatusCode.CANCELLED: "499 Client Closed Request",
    grpc.StatusCode.UNKNOWN: "500 Internal Server Error",
    grpc.StatusCode.INVALID_ARGUMENT: "400 Bad Request",
    grpc.StatusCode.DEADLINE_EXCEEDED: "504 Gateway Timeout",
    grpc.StatusCode.NOT_FOUND: "404 Not Found",
    grpc.StatusCode.ALREADY_EXISTS: "409 Conflict",
    grpc.StatusCode.PERMISSION_DENIED: "403 Forbidden",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "429 Too Many Requests",
    grpc.StatusCode.FAILED_PRECONDITION: "400 Bad Request",
    grpc.StatusCode.ABORTED: "409 Conflict",
    grpc.StatusCode.OUT_OF_RANGE: "400 Bad Request",
    grpc.StatusCode.UNIMPLEMENTED: "501 Not Implemented",
    grpc.StatusCode.INTERNAL: "500 Internal Server Error",
    grpc.StatusCode.UNAVAILABLE: "503 Service Unavailable",
    grpc.StatusCode.DATA_LOSS: "500 Internal Server Error",
    grpc.StatusCode.UNAUTHENTICATED: "401 Unauthorized",
}
_JSON = [("Content-Type", "application/json")]
_CORS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
]


class RestApp:
    """The WSGI application of TF Serving's REST API.

    Args:
        handlers: the shared `serving.handlers.Handlers`.
        timeout_seconds: each request's deadline (`--rest_api_timeout_in_ms`).
        cors: add CORS headers (`--rest_api_enable_cors_support`).
        metrics_path: serve `handlers.metrics` in Prometheus' format here
            (`--monitoring_config_file`), or None.
    """

    def __init__(self, handlers, timeout_seconds=30.0, cors=False, metrics_path=None, threads=8):
        self.handlers = handlers
        self.timeout_seconds = timeout_seconds
        self.cors = cors
        self.metrics_path = metrics_path
        # API calls run in the dispatcher's threads while the HTTP thread
        # waits until the deadline (a call still running then is answered
        # 504 and cancelled).
        self.dispatcher = Dispatcher(handlers, "REST", threads, "rest-call")

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        raw = environ.get("REQUEST_URI") or urllib.parse.quote(environ.get("PATH_INFO", ""))
        path = raw.split("?", 1)[0]
        if self.metrics_path and path == self.metrics_path and self.handlers.metrics is not None:
            body = self.handlers.metrics.render().encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
        if not _API_PATH.fullmatch(path):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b""]
        try:
            body = (
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                if method == "POST"
                else b""
            )
            if method == "OPTIONS":
                origin = environ.get("HTTP_ORIGIN", "")
                if not re.search(r"https?://", origin):
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "Origin header is missing in CORS preflight",
                    )
                output = b""
            else:
                output = self._bounded(method, path, body)
            code = grpc.StatusCode.OK
        except ServingError as error:
            code = error.code
            output = dumps({"error": error.message})
        except Exception as error:  # noqa: BLE001 (answer, keep serving)
            _LOG.error(
                "REST request failed: %s: %s", type(error).__name__, limit_message(error, 300)
            )
            code = grpc.StatusCode.INTERNAL
            output = dumps({"error": limit_message(f"internal error: {error}")})
        headers = list(_JSON) + (list(_CORS) if self.cors else [])
        headers.append(("Content-Length", str(len(output))))
        start_response(HTTP_STATUS.get(code, "500 Internal Server Error"), headers)
        return [output]

    def _bounded(self, method, path, body):
        """`process` in the dispatcher's threads, waited for until the
        deadline (`--rest_api_timeout_in_ms`): 504 then, and the call is
        cancelled (dropped if it has not started)."""
        context = self._open(body)
        job = self.dispatcher.submit(context, lambda c: self._process(method, path, body, c))
        return self.dispatcher.result(context, job)

    def close(self):
        self.dispatcher.close()

    # ------------------------------------------------------------------
    def process(self, method, path, body):
        """One API call (HttpRestApiHandler::ProcessRequest) -> JSON bytes,
        in the calling thread."""
        context = self._open(body)
        try:
            return self._process(method, path, body, context)
        finally:
            context.release()

    def _open(self, body):
        """The request's context: a JSON body reserves the worst case of
        parsing it (`serving.limits.JSON_BYTES_PER_BODY_BYTE` per byte) in
        the server's memory budget before it is parsed."""
        return self.dispatcher.open(
            self.timeout_seconds or None, JSON_BYTES_PER_BODY_BYTE * len(body), "JSON body"
        )

    def _process(self, method, path, body, context):
        match = None
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
        if match is None:
            raise invalid_argument(f"Malformed request: {method} {path}")
        name, version, label, action = match.groups()
        name = urllib.parse.unquote(name) if name else ""
        label = urllib.parse.unquote(label) if label else None
        if method == "POST":
            if action == "predict":
                return self._predict(name, version, label, body, context)
            if action == "classify":
                request = classification_pb2.ClassificationRequest()
                _fill_spec(request.model_spec, name, version, label)
                examples_from_json(body, request)
                response = self.handlers.classify(request, context)
                return classification_json(response.result)
            if action == "regress":
                request = regression_pb2.RegressionRequest()
                _fill_spec(request.model_spec, name, version, label)
                examples_from_json(body, request)
                response = self.handlers.regress(request, context)
                return regression_json(response.result)
            raise invalid_argument(f"Malformed request: {method} {path}")
        if not name:
            raise invalid_argument("Missing model name in request.")
        if action is not None and action != "metadata":
            raise invalid_argument(f"Malformed request: {method} {path}")
        if action == "metadata":
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            request.metadata_field.append(SIGNATURE_DEF_FIELD)
            _fill_spec(request.model_spec, name, version, label)
            return metadata_json(self.handlers.get_model_metadata(request, context))
        request = get_model_status_pb2.GetModelStatusRequest()
        _fill_spec(request.model_spec, name, version, label)
        return _message_json(self.handlers.get_model_status(request, context))

    def _predict(self, name, version, label, body, context):
        request = predict_pb2.PredictRequest()
        _fill_spec(request.model_spec, name, version, label)
        document = parse_json(body)
        fill_signature(document, request)
        columnar = []

        def inputs_from(infos):  # once the handler has resolved the model
            columnar.append(
                predict_inputs_from_json(document, infos, request, context.max_request_bytes)
            )

        response = self.handlers.predict(request, context, inputs_from=inputs_from)
        return predict_json(response.outputs, columnar[0])


def _fill_spec(spec, name, version, label):
    spec.name = name
    if version is not None and label is not None:
        raise invalid_argument(
            f"Both model version ({version}) and model version label ({label}) cannot be supplied."
        )
    if version is not None:
        try:
            spec.version.value = int(version)
        except ValueError:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.") from None
    if label is not None:
        spec.version_label = label


def _message_json(message):
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    ).encode()


def metadata_json(response):
    """GetModelMetadataResponse as TF Serving writes it (the `Any` unpacked
    to its SignatureDefMap)."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    if SIGNATURE_DEF_FIELD not in response.metadata or not response.metadata[
        SIGNATURE_DEF_FIELD
    ].Unpack(signatures):
        raise ServingError(
            grpc.StatusCode.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'."
        )
    options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return dumps(
        {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signatures, **options)},
        }
    )


# ----------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------
class RestServer:
    """TF Serving's REST API on `host:port` in a background thread.

    Args:
        app: the `RestApp`.
        host, port: where to listen (port 0: any free port, see `.port`).
        threads: request threads (`--rest_api_num_threads`).
        max_body_bytes: larger request bodies get 413.
    """

    def __init__(self, app, host, port, threads=8, max_body_bytes=None):
        from waitress.server import create_server

        kwargs = {} if max_body_bytes is None else {"max_request_body_size": max_body_bytes}
        try:
            self._server = create_server(
                app, host=host, port=port, threads=threads, ident="classreg", **kwargs
            )
        except OSError as error:
            raise OSError(f"Cannot listen on {host}:{port} for the REST API: {error}") from None
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="rest-server", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.close()
        self._thread.join(10)
        close = getattr(self._server.application, "close", None)
        if close is not None:
            close()


__all__ = ["HTTP_STATUS", "RestApp", "RestServer", "metadata_json"]
