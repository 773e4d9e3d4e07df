"""Predict calls over gRPC or REST without TensorFlow: the clients of the
timeline (`serving.timeline`), which must stay small in memory.

`serving.grpc_client.ServingClient` and `serving.rest_client.RestClient`
use TF Serving's Python protos, which import TensorFlow (about 650 MB of
memory before the first request). `GrpcPredictor` sends the same
`PredictRequest` through a generic gRPC call with the bytes of
`serving.predict_wire`, on a channel made as `ServingClient`'s
(`serving.grpc_client.open_channel`: options, TLS, retry policy);
`RestPredictor` posts TF Serving's columnar JSON (`serving.rest_json`)
through `serving.rest_http`. Both derive from the full clients' base
(`serving.client_base.InferenceClientBase`: `clip_format`, `class_names`),
and add `predict_with_version`, which also returns the version that
answered.

>>> predictor = make_predictor("127.0.0.1:8500")               # doctest: +SKIP
>>> predictor.clip_format("classreg").clip_length              # doctest: +SKIP
16
"""

import abc

import numpy as np

from clipspec import signatures as names
from serving import grpc_client, predict_wire, rest_json
from serving.client_base import InferenceClientBase, unreadable_clip_format
from serving.defaults import DEFAULT_MAX_MESSAGE_BYTES
from serving.rest_http import (
    DEFAULT_REST_SERVER,
    RestError,
    base_url,
    call_json,
    is_missing_signature,
    model_path,
)

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


class Predictor(InferenceClientBase):
    """What both transports share: `predict` through `predict_with_version`;
    the model's clip format and class names (`InferenceClientBase`)."""

    @abc.abstractmethod
    def predict_with_version(self, model, inputs, signature=None, version=None, output_filter=()):
        """`({output: array}, version that answered)`."""

    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` a dict of arrays (or one array, sent as `clips`);
        returns a dict of arrays."""
        if not isinstance(inputs, dict):
            inputs = {names.CLIPS_INPUT: inputs}
        return self.predict_with_version(model, inputs, signature, version, output_filter)[0]

    def _legacy_clip_format(self, model, version):
        raise ValueError(
            f"{unreadable_clip_format(model)}; a timeline needs it: use gRPC, "
            "or export the model again with `python -m training.export`."
        )


class GrpcPredictor(Predictor):
    """Predict over gRPC (arguments as `serving.client.ServingClient`)."""

    def __init__(
        self,
        server=grpc_client.DEFAULT_SERVER,
        timeout=30.0,
        retries=3,
        backoff=0.5,
        max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        ssl=False,
        ssl_ca=None,
        ssl_cert=None,
        ssl_key=None,
        ssl_target_name=None,
    ):
        super().__init__(server, timeout)
        self._channel = grpc_client.open_channel(
            server,
            retries,
            backoff,
            max_message_bytes,
            ssl=ssl,
            ssl_ca=ssl_ca,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            ssl_target_name=ssl_target_name,
        )
        self._predict = self._channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out

    def predict_with_version(self, model, inputs, signature=None, version=None, output_filter=()):
        request = predict_wire.encode_predict_request(
            model, inputs, signature, version, output_filter
        )
        answer = self._predict(request, timeout=self.timeout)
        outputs, served = predict_wire.decode_predict_response(answer)
        return outputs, served or version

    @staticmethod
    def _is_missing_signature(error):
        return grpc_client.ServingClient._is_missing_signature(error)

    def close(self):
        self._channel.close()


class RestPredictor(Predictor):
    """Predict over TF Serving's REST API, retrying HTTP 503 with
    exponential backoff. The answer has no version: the one requested is
    used, else the latest AVAILABLE one, looked up once per model."""

    def __init__(self, server=DEFAULT_REST_SERVER, timeout=30.0, retries=3, backoff=0.5):
        super().__init__(server, timeout)
        self.url = base_url(server)
        self.retries, self.backoff = retries, float(backoff)
        self._latest = {}

    def call(self, path, body=None):
        """GET (`body` None) or POST JSON; the parsed answer or `RestError`."""
        return call_json(self.url, path, body, self.timeout, self.retries, self.backoff)

    def latest_version(self, model):
        if model not in self._latest:
            answer = self.call(model_path(model))
            versions = [
                int(s["version"])
                for s in answer.get("model_version_status", [])
                if s.get("state") == "AVAILABLE"
            ]
            if not versions:
                raise RestError(404, f"Model {model!r} has no AVAILABLE version.")
            self._latest[model] = max(versions)
        return self._latest[model]

    def predict_with_version(self, model, inputs, signature=None, version=None, output_filter=()):
        version = self.latest_version(model) if version is None else int(version)
        body = {"inputs": {k: rest_json.json_value(np.asarray(v)) for k, v in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        outputs = self.call(model_path(model, version, ":predict"), body)["outputs"]
        if not isinstance(outputs, dict):  # one output: TF Serving unwraps it
            if len(output_filter) != 1:
                name = {
                    names.CLIP_FORMAT: names.CLIP_FORMAT_OUTPUT,
                    names.CLASS_NAMES: names.CLASS_NAME_OUTPUT,
                }.get(signature)
                if name is None:
                    raise RestError(500, "one unnamed output; name it in `output_filter`")
            else:
                name = output_filter[0]
            outputs = {name: outputs}
        wanted = list(output_filter) or list(outputs)
        missing = [name for name in wanted if name not in outputs]
        if missing:
            raise RestError(400, f"output(s) {', '.join(missing)} not in the answer")
        return {name: rest_json.from_json(outputs[name]) for name in wanted}, version

    _is_missing_signature = staticmethod(is_missing_signature)


def make_predictor(server=None, rest=False, timeout=30.0, retries=3, **tls):
    """A `RestPredictor` (`rest`) or a `GrpcPredictor` (`tls`: its TLS
    arguments) for `server` (default: 127.0.0.1:8501 / 127.0.0.1:8500)."""
    if rest:
        if any(tls.values()):
            raise ValueError(
                "the TLS options are for gRPC; the REST API has no TLS (as in TF Serving)"
            )
        return RestPredictor(server or DEFAULT_REST_SERVER, timeout=timeout, retries=retries)
    return GrpcPredictor(server or grpc_client.DEFAULT_SERVER, timeout, retries, **tls)


__all__ = ["GrpcPredictor", "Predictor", "RestError", "RestPredictor", "make_predictor"]
