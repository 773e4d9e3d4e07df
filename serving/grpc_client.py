"""The gRPC client of a TF-Serving-API model server (`python -m
serving.server` or the official `tensorflow/serving` container).

`ServingClient` wraps TF Serving's own gRPC stubs with timeouts and retries
(gRPC's own retry policy from the channel's service config: exponential
backoff on UNAVAILABLE, e.g. a server still starting or a full batching
queue); `open_channel` makes such a channel (TLS, reconnection, keepalive,
message limits) for other gRPC clients too.

>>> client = ServingClient("127.0.0.1:8500", timeout=10)      # doctest: +SKIP
>>> client.wait_until_available("classreg")                    # doctest: +SKIP
1
"""

import functools
import json

import grpc
import numpy as np

from clipspec import signatures as names
from serving import polling
from serving.client_base import InferenceClientBase, model_spec
from serving.defaults import DEFAULT_MAX_MESSAGE_BYTES
from serving.errors import STATUS_CODES

# TensorFlow and TF Serving's protos (which import it) are imported inside
# the functions that use them (after `cliutil.quiet_tensorflow()` in the
# command line's `main`), so that `--help` answers at once.

DEFAULT_SERVER = "127.0.0.1:8500"
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)
MAX_RETRIES = 4  # gRPC caps a retry policy at 5 attempts
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


def open_channel(
    server,
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
    """A `grpc.Channel` to `server` with this project's client options:
    `CHANNEL_OPTIONS`, the message limit both ways, gRPC retries on
    `retry_codes` (see `retry_service_config`), and TLS when `ssl` or any
    `ssl_*` file is given (see `ServingClient` for the arguments)."""
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
        *CHANNEL_OPTIONS,
    ]
    config = retry_service_config(retries, float(backoff), tuple(retry_codes))
    if config is not None:
        options.append(("grpc.service_config", config))
    if ssl_target_name:
        options.append(("grpc.ssl_target_name_override", ssl_target_name))
    if ssl or ssl_ca or ssl_cert or ssl_key:
        return grpc.secure_channel(
            server, channel_credentials(ssl_ca, ssl_cert, ssl_key), options=options
        )
    return grpc.insecure_channel(server, options=options)


class ServingClient(InferenceClientBase):
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
        super().__init__(server, timeout)
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
        self.retries, self.backoff = retries, float(backoff)
        self._channel = open_channel(
            server,
            retries,
            self.backoff,
            max_message_bytes,
            retry_codes,
            ssl,
            ssl_ca,
            ssl_cert,
            ssl_key,
            ssl_target_name,
        )

    # The stubs import TensorFlow (TF Serving's protos do): made on first
    # use, so that a client with bad arguments fails before loading it.
    @functools.cached_property
    def _predictions(self):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        return prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    @functools.cached_property
    def _models(self):
        from tensorflow_serving.apis import model_service_pb2_grpc

        return model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        self._channel.close()

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
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        model_spec(request.model_spec, model, version, signature)
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
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        model_spec(request.model_spec, model, version, signature)
        request.input.example_list.examples.extend(examples)
        response = self.call("Classify", request)
        return [
            [(c.label, c.score) for c in result.classes]
            for result in response.result.classifications
        ]

    def metadata(self, model, version=None):
        """GetModelMetadata: `(version, {signature name: SignatureDef})`."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        model_spec(request.model_spec, model, version)
        request.metadata_field.append("signature_def")
        response = self.call("GetModelMetadata", request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return response.model_spec.version.value, dict(signatures.signature_def)

    def status(self, model, version=None):
        """GetModelStatus: list of `(version, state, error code, message)`
        with state and code as names (`"AVAILABLE"`, `"OK"`)."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        model_spec(request.model_spec, model, version)
        response = self.call("GetModelStatus", request)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [
            (
                s.version,
                states.Name(s.state),
                STATUS_CODES.get(s.status.error_code, grpc.StatusCode.UNKNOWN).name,
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

    @staticmethod
    def _is_missing_signature(error):
        # TF Serving: FAILED_PRECONDITION 'Serving signature key "..." not found'
        return isinstance(error, grpc.RpcError) and error.code() in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
        )


__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_SERVER",
    "MAX_RETRIES",
    "RETRY_CODES",
    "ServingClient",
    "channel_credentials",
    "open_channel",
    "retry_service_config",
]
