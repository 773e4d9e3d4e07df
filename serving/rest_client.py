"""A client of TF Serving's REST API (`python -m serving.server
--rest_api_port=8501` or the `tensorflow/serving` container's 8501), with
the methods of the gRPC client (`serving.grpc_client.ServingClient`) that
the video pipeline uses, and the same base (`serving.client_base`), so
`python -m serving.client --rest` works the same over HTTP.

Tensors travel as TF Serving's columnar JSON (`{"inputs": {...}}` ->
`{"outputs": {...}}`); JSON has no dtypes, so numbers come back as float32
or int32 (int64 when too large) and strings as bytes. Failures raise
`RestError` with TF Serving's `{"error": ...}` message and the HTTP status.

>>> client = RestClient("127.0.0.1:8501")                       # doctest: +SKIP
>>> client.predict("half_plus_two", {"x": [[1.0], [2.0]]})["y"]  # doctest: +SKIP
array([[2.5], [3. ]], dtype=float32)
"""

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from clipspec import signatures as names
from serving import polling
from serving.client_base import InferenceClientBase, model_spec
from serving.rest_http import (
    DEFAULT_REST_SERVER,
    RestError,
    base_url,
    call_json,
    is_missing_signature,
    model_path,
)
from serving.rest_json import from_json as _from_json
from serving.rest_json import json_value as _json_value
from serving.tensors import to_array, to_proto


class RestClient(InferenceClientBase):
    """TF Serving's REST API with a per-call timeout and retries on 503.

    Args:
        server: `host:port` of the REST endpoint (or a full `http://` URL).
        timeout: seconds per attempt.
        retries: extra attempts on HTTP 503 (UNAVAILABLE), with exponential
            backoff from `backoff` seconds.
    """

    def __init__(self, server=DEFAULT_REST_SERVER, timeout=30.0, retries=3, backoff=0.5):
        super().__init__(server, timeout)
        self.url = base_url(server)
        self.retries, self.backoff = retries, float(backoff)
        self._outputs = {}  # (model, version, signature) -> output names

    # -- raw calls -----------------------------------------------------
    def call(self, path, body=None):
        """GET (`body` None) or POST JSON to `path`; returns the parsed
        answer or raises `RestError`."""
        return call_json(self.url, path, body, self.timeout, self.retries, self.backoff)

    # -- TF Serving API ------------------------------------------------
    def status(self, model, version=None):
        """`[(version, state, error code, message)]`."""
        answer = self.call(model_path(model, version))
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
        answer = self.call(model_path(model, version, "/metadata"))
        signatures = get_model_metadata_pb2.SignatureDefMap()
        json_format.ParseDict(answer["metadata"]["signature_def"], signatures)
        return int(answer["model_spec"]["version"]), dict(signatures.signature_def)

    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` is an array (sent as `clips`) or a dict of
        arrays; returns a dict of NumPy arrays (of `output_filter` only,
        when given)."""
        if not isinstance(inputs, dict):
            inputs = {names.CLIPS_INPUT: inputs}
        request = predict_pb2.PredictRequest()
        model_spec(request.model_spec, model, version, signature)
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
        answer = self.call(model_path(spec.name, version, ":predict"), body)
        outputs = answer["outputs"]
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = spec.signature_name or names.SERVING
        if not isinstance(outputs, dict):  # one output: TF Serving unwraps it
            outputs = {self._only_output(spec, version): outputs}
        wanted = list(request.output_filter) or list(outputs)
        for name in wanted:
            if name not in outputs:
                raise RestError(400, f"output {name!r} not in the answer")
            response.outputs[name].CopyFrom(to_proto(_from_json(outputs[name])))
        return response

    def _only_output(self, spec, version):
        key = (spec.name, version, spec.signature_name or names.SERVING)
        if key not in self._outputs:
            _, signatures = self.metadata(spec.name, version)
            self._outputs[key] = list(signatures[key[2]].outputs)
        outputs = self._outputs[key]
        if len(outputs) != 1:
            raise RestError(
                500, f"one unnamed output for signature {key[2]!r} of {len(outputs)} outputs"
            )
        return outputs[0]

    _is_missing_signature = staticmethod(is_missing_signature)


__all__ = ["DEFAULT_REST_SERVER", "RestClient", "RestError"]
