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
request-size limits and clean shutdown); this module is only the WSGI
application and the JSON <-> tensor conversion.
"""

import base64
import binascii
import concurrent.futures
import json
import logging
import re
import threading
import urllib.parse

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.errors import ServingError, invalid_argument, limit_message
from serving.handlers import RequestContext
from serving.limits import JSON_BYTES_PER_BODY_BYTE, check_request_bytes
from serving.models import SIGNATURE_DEF_FIELD
from serving.tensors import to_array, to_proto

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
_INT32 = (-(2**31), 2**31 - 1)
_RANGES = {
    types_pb2.DT_INT32: _INT32,
    types_pb2.DT_INT16: _INT32,
    types_pb2.DT_INT8: _INT32,
    types_pb2.DT_UINT8: _INT32,
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_DEBUG_BYTES = 256  # kMaxJsonDebugStringBytes


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
        # API calls run here while the HTTP thread waits until the deadline
        # (a call still running then is answered 504 and cancelled).
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="rest-call"
        )

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
            output = _dumps({"error": error.message})
        except Exception as error:  # noqa: BLE001 (answer, keep serving)
            _LOG.error(
                "REST request failed: %s: %s", type(error).__name__, limit_message(error, 300)
            )
            code = grpc.StatusCode.INTERNAL
            output = _dumps({"error": limit_message(f"internal error: {error}")})
        headers = list(_JSON) + (list(_CORS) if self.cors else [])
        headers.append(("Content-Length", str(len(output))))
        start_response(HTTP_STATUS.get(code, "500 Internal Server Error"), headers)
        return [output]

    def _bounded(self, method, path, body):
        """`process` in the call pool, waited for until the deadline
        (`--rest_api_timeout_in_ms`): 504 then, and the call is cancelled
        (dropped if it has not started)."""
        context = RequestContext.rest(self.timeout_seconds)

        def job():
            context.check()
            return self.process(method, path, body, context)

        future = self._pool.submit(job)
        try:
            return future.result(context.time_remaining())
        except concurrent.futures.TimeoutError:
            context.cancel()
            future.cancel()
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded") from None

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------
    def process(self, method, path, body, context=None):
        """One API call (HttpRestApiHandler::ProcessRequest) -> JSON bytes.
        A JSON body reserves the worst case of parsing it
        (`serving.limits.JSON_BYTES_PER_BODY_BYTE` per byte) in the server's
        memory budget before it is parsed."""
        context = context or RequestContext.rest(self.timeout_seconds)
        limits = getattr(self.handlers, "limits", None)
        if limits is None:
            return self._process(method, path, body, context)
        context.max_request_bytes = limits.max_request_bytes
        context.reservation = limits.budget.reserve(
            JSON_BYTES_PER_BODY_BYTE * len(body), "JSON body"
        )
        try:
            return self._process(method, path, body, context)
        finally:
            context.reservation.release()
            context.reservation = None

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
        document = _parse_json(body)
        _fill_signature(document, request)
        servable = self.handlers.resolve(request.model_spec)
        infos = servable.input_infos(request.model_spec.signature_name)
        columnar = predict_inputs_from_json(document, infos, request, context.max_request_bytes)
        response = self.handlers.predict(request, context, servable=servable)
        return predict_json(response.outputs, columnar)


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


# ----------------------------------------------------------------------
# JSON -> requests (json_tensor.cc)
# ----------------------------------------------------------------------
def _debug(value):
    text = json.dumps(value, allow_nan=True, separators=(",", ":"))
    return text[:_DEBUG_BYTES]


def _json_type(value):
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _format_error(value, *words):
    return invalid_argument(f"JSON Value: {_debug(value)} " + "".join(words))


def _parse_json(body):
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except UnicodeDecodeError as error:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
        ) from None
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


def _fill_signature(document, request):
    if "signature_name" in document:
        value = document["signature_name"]
        if not isinstance(value, str):
            raise invalid_argument(
                f"JSON Value: {_debug(document)} not formatted correctly. "
                "'signature_name' key must be a string value."
            )
        request.model_spec.signature_name = value


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _b64_decode(value):
    if not _is_b64(value):
        raise invalid_argument(
            f"JSON Value: {_debug(value)} not formatted correctly for base64 data"
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_error(value, dtype):
    return invalid_argument(
        f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of "
        f"expected type: {tf.as_dtype(dtype).name}"
    )


def _scalar(value, dtype):
    """AddValueToTensor: one JSON leaf as a value of `dtype`."""
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype)
        return value
    if dtype in _RANGES:
        low, high = _RANGES[dtype]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, dict):
            return _b64_decode(value)
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {_debug(value)} to type: {tf.as_dtype(dtype).name}",
    )


def _fill(value, level, shape, dtype, out):
    """FillTensorProto: checks a nested list is dense with `shape`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {_debug(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict) and dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: "
            f"{level} expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


_NUMPY = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
}


def _fast_array(value, dtype, shape):
    """NumPy's conversion of a dense nested list whose leaves all have the
    right JSON type for `dtype`; None when that cannot be shown quickly (the
    exact checker then finds the error)."""
    target = _NUMPY.get(dtype)
    if target is None:
        return None
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        return None
    if list(array.shape) != shape:
        return None
    kind = array.dtype.kind
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        ok = kind in "iuf"
    elif dtype == types_pb2.DT_BOOL:
        ok = kind == "b"
    else:
        low, high = _RANGES[dtype]
        ok = kind in "iu" and (
            array.size == 0 or (int(array.min()) >= low and int(array.max()) <= high)
        )
    if not ok:
        return None
    # Values wrap as TensorFlow's int_val -> uint8/int8/int16 casts do.
    return array.astype(target, copy=False)


def _check_json_tensor(shape, dtype, limit):
    """The tensor a JSON value's (first-path) shape declares, against the
    per-request `limit` (RESOURCE_EXHAUSTED), before it is built."""
    if not limit:
        return
    elements = int(np.prod(shape, dtype=np.float64)) if shape else 1
    itemsize = tf.as_dtype(dtype).size if dtype in _NUMPY else 8
    check_request_bytes(elements * itemsize, limit, "request tensor")


def json_to_array(value, dtype, limit=None):
    """A JSON value (nested lists of leaves) as the array of a tensor of
    `dtype`, with TF Serving's checks and messages; the tensor its shape
    declares is checked against `limit` bytes before it is built."""
    shape = _dense_shape(value)
    _check_json_tensor(shape, dtype, limit)
    array = _fast_array(value, dtype, shape)
    if array is not None:
        return array
    flat = []
    _fill(value, 0, shape, dtype, flat)
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    target = _NUMPY[dtype]
    if target in (np.uint8, np.int8, np.int16):
        return np.asarray(flat, np.int64).astype(target).reshape(shape)
    return np.asarray(flat, target).reshape(shape)


def _set_input(request, name, array, dtype):
    proto = to_proto(array, as_content=True)
    proto.dtype = dtype
    request.inputs[name].CopyFrom(proto)


def predict_inputs_from_json(document, infos, request, limit=None):
    """FillPredictRequestFromJson: fills `request.inputs` from `instances`
    (row format) or `inputs` (columnar); returns True for columnar. Each
    tensor is checked against `limit` bytes before it is built."""
    if not infos:
        name = request.model_spec.signature_name
        raise invalid_argument("Failed to get input map for signature: " + (name or "DEFAULT"))
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise _format_error(
            document,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise _format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(document, "No values in 'instances' array")
        _instances(instances, infos, request, limit)
        return False
    if has_inputs:
        _columns(document["inputs"], infos, request, limit)
        return True
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_element_object(value):
    return isinstance(value, dict) and not _is_b64(value)


def _instances(instances, infos, request, limit=None):
    """FillTensorMapFromInstancesList."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as "
            "multiple input tensors required as per tensorinfo_map"
        )
    names = sorted(infos)
    if not _is_element_object(instances[0]):
        name = names[0]
        dtype = infos[name].dtype
        shape = _dense_shape(instances)
        _check_json_tensor(shape, dtype, limit)
        array = _fast_array(instances, dtype, shape)
        if array is None:  # element by element: TF Serving's checks
            array = _plain_instances(instances, dtype)
        _set_input(request, name, array, dtype)
        return
    rows = {name: [] for name in names}
    shapes = {}
    for index, element in enumerate(instances):
        if not _is_element_object(element):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        for key, value in element.items():
            if key not in infos:
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of "
                    "'instances' list. Error: INVALID_ARGUMENT: JSON object: "
                    f"does not have named input: {key}"
                )
            try:
                array = json_to_array(value, infos[key].dtype, limit)
            except ServingError as error:
                if error.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of "
                    f"'instances' list. Error: {error.code.name}: "
                    f"{error.message}"
                ) from None
            _check_same_shape(shapes, key, array, index)
            rows[key].append(array)
        if set(element) != set(names):
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. "
                f"JSON object: {_debug(element)} keys must be equal to: "
                f"{','.join(names)}"
            )
    for name in names:
        _set_input(request, name, np.stack(rows[name]), infos[name].dtype)


def _check_same_shape(shapes, key, array, index):
    if key not in shapes:
        shapes[key] = array.shape
        return
    if array.size != int(np.prod(shapes[key])):
        message = f"Expecting tensor size: {int(np.prod(shapes[key]))} but got: {array.size}"
    elif array.shape != shapes[key]:
        message = f"Expecting shape {_shape(shapes[key])} but got: {_shape(array.shape)}"
    else:
        return
    raise invalid_argument(
        f"Failed to process element: {index} key: {key} of "
        f"'instances' list. Error: INVALID_ARGUMENT: "
        f"{message}"
    )


def _plain_instances(instances, dtype):
    """Plain-list instances converted one element at a time (the exact
    checks and messages of TF Serving)."""
    rows, first = [], None
    for index, element in enumerate(instances):
        if _is_element_object(element):
            raise invalid_argument(
                f"Expecting value/list but got object at item {index} of input list"
            )
        try:
            array = json_to_array(element, dtype)
        except ServingError as error:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. "
                f"Error: {error.code.name}: {error.message}"
            ) from None
        if first is not None and array.shape != first:
            size = int(np.prod(first))
            message = (
                f"Expecting tensor size: {size} but got: {array.size}"
                if array.size != size
                else f"Expecting shape {_shape(first)} but got: {_shape(array.shape)}"
            )
            raise invalid_argument(
                f"Failed to process element: {index} of "
                f"'instances' list. Error: "
                f"INVALID_ARGUMENT: {message}"
            )
        first = array.shape
        rows.append(array)
    return np.stack(rows)


def _shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _columns(value, infos, request, limit=None):
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(infos) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map"
            )
        name = next(iter(infos))
        _set_input(request, name, json_to_array(value, infos[name].dtype, limit), infos[name].dtype)
        return
    for name in sorted(infos):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        _set_input(
            request, name, json_to_array(value[name], infos[name].dtype, limit), infos[name].dtype
        )


def _feature_error(name, feature):
    kind = feature.WhichOneof("kind")
    words = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        kind, "UNKNOWN"
    )
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {words}")


def _add_feature_value(value, name, feature):
    """AddValueToFeature."""

    def require(kind):
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise _feature_error(name, feature)
        return getattr(feature, kind).value

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    if isinstance(value, bool):
        require("int64_list").append(int(value))
    elif isinstance(value, dict):
        require("bytes_list").append(_b64_decode(value))
    elif isinstance(value, str):
        require("bytes_list").append(value.encode("utf-8"))
    elif isinstance(value, float):
        require("float_list").append(value)
    else:
        values = require("int64_list")
        if value > 2**63 - 1:
            raise invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        values.append(value)


def _example(value, example):
    """MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid_argument("Example must be JSON object but got JSON " + _json_type(value))
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)


def examples_from_json(body, request):
    """FillClassifyRegressRequestFromJson: `examples` (and `context`) ->
    `request.input`."""
    document = _parse_json(body)
    _fill_signature(document, request)
    has_context = "context" in document
    if has_context:
        _example(document["context"], request.input.example_list_with_context.context)
    if "examples" not in document:
        raise _format_error(
            document, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    target = (
        request.input.example_list_with_context.examples
        if has_context
        else request.input.example_list.examples
    )
    for value in examples:
        _example(value, target.add())


# ----------------------------------------------------------------------
# Responses -> JSON
# ----------------------------------------------------------------------
def _dumps(document):
    return json.dumps(document, allow_nan=True, separators=(",", ":")).encode()


def _json_values(name, proto):
    """A tensor's values as JSON-ready nested lists (AddTensorValues):
    float32 as its shortest decimal form (as TF Serving prints it)."""
    dtype = proto.dtype
    array = to_array(proto, name)
    if dtype == types_pb2.DT_FLOAT:
        return array.astype(str).astype(np.float64).tolist()
    if dtype in (
        types_pb2.DT_DOUBLE,
        types_pb2.DT_INT32,
        types_pb2.DT_INT16,
        types_pb2.DT_INT8,
        types_pb2.DT_UINT8,
        types_pb2.DT_INT64,
        types_pb2.DT_BOOL,
        types_pb2.DT_UINT32,
        types_pb2.DT_UINT64,
    ):
        return array.tolist()
    if dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):
            convert = lambda v: {"b64": base64.b64encode(v).decode("ascii")}  # noqa: E731
        else:
            convert = lambda v: v.decode("utf-8", "replace")  # noqa: E731
        flat = [convert(v) for v in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    raise invalid_argument("Failed to write JSON value for tensor type: " + tf.as_dtype(dtype).name)


def predict_json(outputs, columnar):
    """MakeJsonFromTensors: `{"predictions": ...}` (row) or
    `{"outputs": ...}` (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if columnar:
        if len(names) == 1:
            return _dumps({"outputs": _json_values(names[0], outputs[names[0]])})
        return _dumps({"outputs": {n: _json_values(n, outputs[n]) for n in names}})
    batch = None
    for name in names:
        dims = outputs[name].tensor_shape.dim
        if not dims:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and dims[0].size != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch "
                f"size: {dims[0].size} expecting: {batch}"
            )
        batch = dims[0].size
    values = {name: _json_values(name, outputs[name]) for name in names}
    if len(names) == 1:
        return _dumps({"predictions": values[names[0]]})
    return _dumps({"predictions": [{n: values[n][i] for n in names} for i in range(batch)]})


def _float32(value):
    return float(np.float32(value).astype(str))


def classification_json(result):
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    return _dumps(
        {
            "results": [
                [
                    [
                        c.label.decode("utf-8", "replace")
                        if isinstance(c.label, bytes)
                        else c.label,
                        _float32(c.score),
                    ]
                    for c in item.classes
                ]
                for item in result.classifications
            ]
        }
    )


def regression_json(result):
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return _dumps({"results": [_float32(r.value) for r in result.regressions]})


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
    return _dumps(
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


__all__ = [
    "HTTP_STATUS",
    "RestApp",
    "RestServer",
    "classification_json",
    "examples_from_json",
    "json_to_array",
    "metadata_json",
    "predict_inputs_from_json",
    "predict_json",
    "regression_json",
]
