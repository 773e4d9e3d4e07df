"""Predict calls over gRPC or REST without TensorFlow: the clients of the
timeline (`serving.timeline`), which must stay small in memory.

`serving.client.ServingClient` and `serving.rest_client.RestClient` use
TF Serving's Python protos, which import TensorFlow (about 650 MB of
memory before the first request). `GrpcPredictor` sends the same
`PredictRequest` through a generic gRPC call with the bytes of
`serving.predict_wire`, on a channel with the same options, TLS and retry
policy as `ServingClient`; `RestPredictor` posts TF Serving's columnar
JSON (`serving.rest_json`). Both have `predict`, `clip_format` and
`class_names` as the full clients do (the same code: those two are shared
with `ServingClient`), and `predict_with_version`, which also returns the
version that answered.

>>> predictor = make_predictor("127.0.0.1:8500")               # doctest: +SKIP
>>> predictor.clip_format("classreg").clip_length              # doctest: +SKIP
16
"""

import json
import random
import time
import urllib.error
import urllib.request

import grpc
import numpy as np

from clipspec import signatures as names
from serving import client as grpc_client
from serving import predict_wire, rest_json

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


class Predictor:
    """What both transports share: caches of the model's clip format and
    class names, read through `predict`."""

    def __init__(self, server, timeout):
        self.server, self.timeout = server, timeout
        self._clip_formats, self._class_names = {}, {}

    def predict_with_version(self, model, inputs, signature=None, version=None, output_filter=()):
        """`({output: array}, version that answered)`."""
        raise NotImplementedError

    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` a dict of arrays (or one array, sent as `clips`);
        returns a dict of arrays."""
        if not isinstance(inputs, dict):
            inputs = {names.CLIPS_INPUT: inputs}
        return self.predict_with_version(model, inputs, signature, version, output_filter)[0]

    def _legacy_clip_format(self, model, version):
        raise ValueError(
            f"Model {model!r} has no '{names.CLIP_FORMAT}' signature; a timeline "
            "needs it (export the model again with `python -m training.export`)."
        )

    clip_format = grpc_client.ServingClient.clip_format
    class_names = grpc_client.ServingClient.class_names

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GrpcPredictor(Predictor):
    """Predict over gRPC (arguments as `serving.client.ServingClient`)."""

    def __init__(
        self,
        server=grpc_client.DEFAULT_SERVER,
        timeout=30.0,
        retries=3,
        backoff=0.5,
        max_message_bytes=grpc_client.DEFAULT_MAX_MESSAGE_BYTES,
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
        super().__init__(server, timeout)
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.enable_retries", 1 if retries else 0),
            *grpc_client.CHANNEL_OPTIONS,
        ]
        config = grpc_client.retry_service_config(retries, float(backoff))
        if config is not None:
            options.append(("grpc.service_config", config))
        if ssl_target_name:
            options.append(("grpc.ssl_target_name_override", ssl_target_name))
        if ssl or ssl_ca or ssl_cert or ssl_key:
            credentials = grpc_client.channel_credentials(ssl_ca, ssl_cert, ssl_key)
            self._channel = grpc.secure_channel(server, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(server, options=options)
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


class RestError(Exception):
    """A REST call that failed: `status` (HTTP) and TF Serving's message."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class RestPredictor(Predictor):
    """Predict over TF Serving's REST API, retrying HTTP 503 with
    exponential backoff. The answer has no version: the one requested is
    used, else the latest AVAILABLE one, looked up once per model."""

    def __init__(self, server="127.0.0.1:8501", timeout=30.0, retries=3, backoff=0.5):
        if not isinstance(server, str) or ":" not in server:
            raise ValueError(
                "Invalid value for argument `server`. Expected 'host:port'. "
                f"Received: server={server!r}"
            )
        super().__init__(server, timeout)
        self.url = server if server.startswith(("http://", "https://")) else f"http://{server}"
        self.retries, self.backoff = retries, float(backoff)
        self._latest = {}

    def call(self, path, body=None):
        """GET (`body` None) or POST JSON; the parsed answer or `RestError`."""
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
                if error.code != 503 or attempt == self.retries:
                    raise RestError(error.code, message) from None
            time.sleep(delay * (1 + 0.5 * random.random()))
            delay *= 2

    def _model_path(self, model, version):
        return f"/v1/models/{urllib.request.quote(model, safe='')}/versions/{int(version)}"

    def latest_version(self, model):
        if model not in self._latest:
            answer = self.call(f"/v1/models/{urllib.request.quote(model, safe='')}")
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
        outputs = self.call(self._model_path(model, version) + ":predict", body)["outputs"]
        if not isinstance(outputs, dict):  # one output: TF Serving unwraps it
            if len(output_filter) != 1:
                name = {names.CLIP_FORMAT: "clip_format", names.CLASS_NAMES: "class_name"}.get(
                    signature
                )
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

    @staticmethod
    def _is_missing_signature(error):
        # TF Serving answers an unknown signature with FAILED_PRECONDITION,
        # which its REST API maps to HTTP 400.
        return isinstance(error, RestError) and error.status == 400


def make_predictor(server=None, rest=False, timeout=30.0, retries=3, **tls):
    """A `RestPredictor` (`rest`) or a `GrpcPredictor` (`tls`: its TLS
    arguments) for `server` (default: 127.0.0.1:8501 / 127.0.0.1:8500)."""
    if rest:
        if any(tls.values()):
            raise ValueError(
                "the TLS options are for gRPC; the REST API has no TLS (as in TF Serving)"
            )
        return RestPredictor(server or "127.0.0.1:8501", timeout=timeout, retries=retries)
    return GrpcPredictor(server or grpc_client.DEFAULT_SERVER, timeout, retries, **tls)


__all__ = ["GrpcPredictor", "Predictor", "RestError", "RestPredictor", "make_predictor"]
