"""A client of TF Serving's REST API (`python -m serving.server
--rest_api_port=8501` or the `tensorflow/serving` container's 8501), with
the methods of `serving.client.ServingClient` that the video client uses,
so `python -m serving.client --rest` works the same over HTTP.

Tensors travel as TF Serving's columnar JSON (`{"inputs": {...}}` ->
`{"outputs": {...}}`); JSON has no dtypes, so numbers come back as float32
or int32 (int64 when too large) and strings as bytes. Failures raise
`RestError` with TF Serving's `{"error": ...}` message and the HTTP status.

>>> client = RestClient("127.0.0.1:8501")                       # doctest: +SKIP
>>> client.predict("half_plus_two", {"x": [[1.0], [2.0]]})["y"]  # doctest: +SKIP
array([[2.5], [3. ]], dtype=float32)
"""

import json
import random
import time
import urllib.error
import urllib.request

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from serving import polling
from serving.rest_json import from_json as _from_json
from serving.rest_json import json_value as _json_value
from serving.tensors import to_array, to_proto

DEFAULT_REST_SERVER = "127.0.0.1:8501"
RETRY_STATUSES = (503,)


class RestError(Exception):
    """A REST call that failed: `status` (HTTP) and TF Serving's message."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class RestClient:
    """TF Serving's REST API with a per-call timeout and retries on 503.

    Args:
        server: `host:port` of the REST endpoint (or a full `http://` URL).
        timeout: seconds per attempt.
        retries: extra attempts on HTTP 503 (UNAVAILABLE), with exponential
            backoff from `backoff` seconds.
    """

    def __init__(self, server=DEFAULT_REST_SERVER, timeout=30.0, retries=3, backoff=0.5):
        if not isinstance(server, str) or ":" not in server:
            raise ValueError(
                "Invalid value for argument `server`. Expected "
                f"'host:port'. Received: server={server!r}"
            )
        self.url = server if server.startswith(("http://", "https://")) else f"http://{server}"
        self.server, self.timeout = server, timeout
        self.retries, self.backoff = retries, float(backoff)
        self._class_names = {}
        self._clip_formats = {}
        self._outputs = {}  # (model, version, signature) -> output names

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw calls -----------------------------------------------------
    def call(self, path, body=None):
        """GET (`body` None) or POST JSON to `path`; returns the parsed
        answer or raises `RestError`."""
        data = None if body is None else json.dumps(body).encode()
        delay = self.backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url + path, data=data, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                try:
                    message = json.loads(text)["error"]
                except (ValueError, KeyError, TypeError):
                    message = text or error.reason
                if error.code not in RETRY_STATUSES or attempt == self.retries:
                    raise RestError(error.code, message) from None
            time.sleep(delay * (1 + 0.5 * random.random()))
            delay *= 2

    @staticmethod
    def _path(model, version=None, suffix=""):
        path = f"/v1/models/{urllib.request.quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return path + suffix

    # -- TF Serving API ------------------------------------------------
    def status(self, model, version=None):
        """`[(version, state, error code, message)]`."""
        answer = self.call(self._path(model, version))
        return [
            (int(s["version"]), s["state"], s["status"]["error_code"], s["status"]["error_message"])
            for s in answer["model_version_status"]
        ]

    def latest_version(self, model):
        versions = [v for v, state, _, _ in self.status(model) if state == "AVAILABLE"]
        if not versions:
            raise RestError(404, f"Model {model!r} has no AVAILABLE version.")
        return max(versions)

    def wait_until_available(self, model, timeout=60.0, version=None):
        """Waits until a version of `model` is AVAILABLE; returns its number."""
        return polling.wait_until_available(
            self.status, model, self.url, timeout, version, errors=(RestError, OSError)
        )

    def metadata(self, model, version=None):
        """`(version, {signature name: SignatureDef})`."""
        answer = self.call(self._path(model, version, "/metadata"))
        signatures = get_model_metadata_pb2.SignatureDefMap()
        json_format.ParseDict(answer["metadata"]["signature_def"], signatures)
        return int(answer["model_spec"]["version"]), dict(signatures.signature_def)

    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` is an array (sent as `clips`) or a dict of
        arrays; returns a dict of NumPy arrays (of `output_filter` only,
        when given)."""
        if not isinstance(inputs, dict):
            inputs = {"clips": inputs}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = int(version)
        if signature:
            request.model_spec.signature_name = signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(to_proto(np.asarray(value)))
        request.output_filter.extend(output_filter)
        response = self.predict_response(request)
        return {name: to_array(proto) for name, proto in response.outputs.items()}

    def predict_response(self, request):
        """Predict with a `PredictRequest` over REST; returns a
        `PredictResponse` (the REST answer has no model spec: the version is
        the one requested, or the latest AVAILABLE one, looked up first)."""
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else self.latest_version(spec.name)
        body = {
            "inputs": {name: _json_value(to_array(proto)) for name, proto in request.inputs.items()}
        }
        if spec.signature_name:
            body["signature_name"] = spec.signature_name
        answer = self.call(self._path(spec.name, version, ":predict"), body)
        outputs = answer["outputs"]
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        if not isinstance(outputs, dict):  # one output: TF Serving unwraps it
            outputs = {self._only_output(spec, version): outputs}
        wanted = list(request.output_filter) or list(outputs)
        for name in wanted:
            if name not in outputs:
                raise RestError(400, f"output {name!r} not in the answer")
            response.outputs[name].CopyFrom(to_proto(_from_json(outputs[name])))
        return response

    def _only_output(self, spec, version):
        key = (spec.name, version, spec.signature_name or "serving_default")
        if key not in self._outputs:
            _, signatures = self.metadata(spec.name, version)
            self._outputs[key] = list(signatures[key[2]].outputs)
        names = self._outputs[key]
        if len(names) != 1:
            raise RestError(
                500, f"one unnamed output for signature {key[2]!r} of {len(names)} outputs"
            )
        return names[0]

    @staticmethod
    def _is_missing_signature(error):
        # TF Serving answers an unknown signature with FAILED_PRECONDITION,
        # which its REST API maps to HTTP 400.
        return isinstance(error, RestError) and error.status == 400

    # The export helpers of ServingClient work unchanged on top of these.
    from serving.client import ServingClient as _grpc

    clip_format = _grpc.clip_format
    _legacy_clip_format = _grpc._legacy_clip_format
    class_names = _grpc.class_names
    del _grpc


__all__ = ["DEFAULT_REST_SERVER", "RestClient", "RestError"]
