"""What every client of a TF-Serving-API server shares, whatever its
transport (the shape of Triton's `InferenceServerClientBase`): the checked
`server` address, the per-call timeout, the context-manager protocol, and
the helpers for this project's exports — the model's `ClipFormat` (its
`clip_format` signature) and its class names (the `class_names` signature)
— read through the transport's own `predict`.

Transports: `serving.grpc_client.ServingClient` (TF Serving's gRPC stubs),
`serving.rest_client.RestClient` (TF Serving's REST API) and the
TensorFlow-free predictors of the timeline (`serving.predictor`).
No TensorFlow here.
"""

import abc
import warnings

import grpc
import numpy as np

import cliutil
from clipspec import signatures as names
from clipspec.format import ClipFormat
from serving.rest_http import RestError


class InferenceClientBase(abc.ABC):
    """A client of one server.

    Args:
        server: `host:port` of the endpoint (or, for REST, an `http://` URL).
        timeout: seconds per call.

    Subclasses implement `predict` (and `metadata`, which the fallback for
    exports without a `clip_format` signature reads; a transport without it
    overrides `_legacy_clip_format`) and `_is_missing_signature`.
    """

    def __init__(self, server, timeout):
        if not isinstance(server, str) or ":" not in server:
            raise ValueError(
                "Invalid value for argument `server`. Expected 'host:port'. "
                f"Received: server={server!r}"
            )
        self.server, self.timeout = server, timeout
        self._class_names = {}
        self._clip_formats = {}

    def close(self):  # noqa: B027 (a transport without connections has nothing to close)
        """Releases the transport's connections (a gRPC channel)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the transport ---------------------------------------------------
    @abc.abstractmethod
    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        """Predict: `inputs` is an array (sent as `clips`) or a dict of
        arrays; returns a dict of NumPy arrays."""

    @staticmethod
    @abc.abstractmethod
    def _is_missing_signature(error):
        """Whether `error` (raised by `predict`) says the signature does not
        exist."""

    # -- helpers for this project's exports ----------------------------
    def clip_format(self, model, version=None):
        """The model's `ClipFormat`, from its `clip_format` signature
        (cached per model and version).

        The signature is called with one `query` entry; an export of
        keras-classreg < 0.3, whose signature has no input, is called again
        without one (gRPC answers it; TF Serving's REST API calls no
        signature without inputs). Exports without the signature, or whose
        format cannot be read over this transport, give
        `_legacy_clip_format`.
        """
        key = (model, version)
        if key not in self._clip_formats:
            for inputs in (self._CLIP_FORMAT_QUERY, {}):
                try:
                    outputs = self.predict(
                        model, inputs, signature=names.CLIP_FORMAT, version=version
                    )
                except Exception as error:
                    if not self._is_missing_signature(error):
                        raise
                    continue
                clip_format = ClipFormat.from_json(
                    _first_text(outputs[names.CLIP_FORMAT_OUTPUT]),
                    f"model {model!r} clip_format signature",
                )
                break
            else:
                clip_format = self._legacy_clip_format(model, version)
            self._clip_formats[key] = clip_format
        return self._clip_formats[key]

    _CLIP_FORMAT_QUERY = {names.CLIP_FORMAT_QUERY_INPUT: np.zeros([1], np.int32)}

    def _legacy_clip_format(self, model, version):
        """The format of an export whose `clip_format` signature is missing
        (or cannot be called over this transport), from its
        `predict_normalized` input shape (`metadata`) with the defaults;
        warns, since stride, normalisation and views may differ from the
        model's."""
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
        fallback = ClipFormat(clip_length=dims[1], crop_size=dims[2])
        warnings.warn(
            f"{unreadable_clip_format(model)}; using its input size with the default "
            f"stride {fallback.stride}, normalisation and views. Export it again "
            "with `python -m training.export` to use the model's own.",
            stacklevel=3,
        )
        return fallback

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
            )[names.CLASS_NAME_OUTPUT]
            cache.update({i: n.decode() for i, n in zip(missing, found)})
        return [cache[int(i)] for i in indices]


def unreadable_clip_format(model):
    """Why a model's clip format cannot be read, in one clause."""
    return (
        f"Model {model!r}: its clip format could not be read (no "
        f"'{names.CLIP_FORMAT}' signature; or, over REST, an export of "
        "keras-classreg < 0.3, whose signature has no input, which TF "
        "Serving's REST API cannot call)"
    )


def _first_text(value):
    """The clip format JSON of a `clip_format` output: a string `[N]` (or a
    scalar, from exports of keras-classreg < 0.3), as an array or as the
    JSON list of a REST answer."""
    values = np.asarray(value, dtype=object).reshape(-1)
    if not values.size:
        raise ValueError("The model's clip_format signature answered no clip format.")
    text = values[0]
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def model_spec(spec, model, version=None, signature=None):
    """Fills a request's `ModelSpec` (`version`, `signature`: None for the
    server's defaults)."""
    spec.name = model
    if version is not None:
        spec.version.value = int(version)
    if signature:
        spec.signature_name = signature


def failure_reason(error):
    """Why a call or an input failed, in one line (no traceback): a gRPC
    status and its details, a video that cannot be decoded, a REST answer,
    a file or value problem; anything else with its type."""
    from clipspec.decode import VideoDecodeError

    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, VideoDecodeError):
        return error.reason
    if isinstance(error, (OSError, ValueError, RestError)):
        return cliutil.one_line(error)
    return f"{type(error).__name__}: {cliutil.one_line(error)}"


__all__ = ["InferenceClientBase", "failure_reason", "model_spec"]
