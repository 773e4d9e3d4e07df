"""The request handlers both front ends share (gRPC in `serving.server`, REST
in `serving.rest`): TF Serving's request protos in, response protos out,
failures as `ServingError` (a gRPC status code and TF Serving's message).

Every call takes a `RequestContext`: where the request came from (for the
metrics) and its deadline (gRPC's, or `--rest_api_timeout_in_ms`); the
deadline is checked before the model runs (DEADLINE_EXCEEDED).

>>> handlers = Handlers(manager)                                 # doctest: +SKIP
>>> handlers.predict(request, RequestContext.grpc(context))      # doctest: +SKIP
"""

import dataclasses
import logging
import time

import grpc
from tensorflow_serving.apis import model_management_pb2

from serving.errors import ServingError, invalid_argument
from serving.models import check_metadata_request, check_model_config

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class RequestContext:
    """One request's origin and deadline.

    Args:
        entrypoint: "GRPC" or "REST" (TF Serving's metric label).
        deadline: `time.monotonic()` value after which the request fails
            with DEADLINE_EXCEEDED; `None`: no deadline.
    """

    entrypoint: str = "GRPC"
    deadline: float = None

    @classmethod
    def grpc(cls, context):
        """The context of a gRPC call (its deadline, if the client set one)."""
        remaining = context.time_remaining() if context is not None else None
        return cls("GRPC", None if remaining is None
                   else time.monotonic() + remaining)

    @classmethod
    def rest(cls, timeout_seconds=None):
        return cls("REST", None if not timeout_seconds
                   else time.monotonic() + timeout_seconds)

    def time_remaining(self):
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self):
        """Raises DEADLINE_EXCEEDED once the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "Deadline exceeded")


class Handlers:
    """TF Serving's PredictionService and ModelService over a
    `ModelManager` (see `serving.models`).

    Args:
        manager: the `ModelManager`.
        metrics: a `serving.metrics.Metrics` to record requests in, or None.
    """

    def __init__(self, manager, metrics=None):
        self.manager = manager
        self.metrics = metrics

    # -- PredictionService ---------------------------------------------
    def predict(self, request, context=None, servable=None):
        """Predict; `servable` (a resolved `ServableVersion`) skips the look
        up (REST resolves it first to type the JSON inputs)."""
        return self._observe("predict", request.model_spec.name, context,
                             lambda: (servable or self.resolve(
                                 request.model_spec)).predict(request, context))

    def classify(self, request, context=None):
        return self._observe("classify", request.model_spec.name, context,
                             lambda: self.resolve(request.model_spec)
                             .classify(request, context))

    def regress(self, request, context=None):
        return self._observe("regress", request.model_spec.name, context,
                             lambda: self.resolve(request.model_spec)
                             .regress(request, context))

    def multi_inference(self, request, context=None):
        # TF Serving resolves the model of the first task (an empty spec
        # when there is none: "ModelSpec has no name specified.").
        spec = request.tasks[0].model_spec if request.tasks else None
        name = spec.name if spec is not None else ""

        def run():
            if spec is None:
                raise invalid_argument("ModelSpec has no name specified.")
            return self.resolve(spec).multi_inference(request, context)
        return self._observe("multi_inference", name, context, run)

    def get_model_metadata(self, request, context=None):
        def run():
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            check_metadata_request(request)
            return self.resolve(request.model_spec).metadata(request)
        return self._observe("metadata", request.model_spec.name, context, run)

    # -- ModelService ----------------------------------------------------
    def get_model_status(self, request, context=None):
        def run():
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self.manager.status(request.model_spec)
        return self._observe("status", request.model_spec.name, context, run)

    def reload_config(self, request, context=None):
        """HandleReloadConfigRequest: only a `model_config_list` (TF
        Serving's rule); a bad config is INVALID_ARGUMENT, a label on a
        version that is not loaded FAILED_PRECONDITION."""
        def run():
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by "
                    "HandleReloadConfigRequest. Only ModelConfigList is "
                    "currently supported")
            try:
                config = check_model_config(request.config, "ReloadConfigRequest")
            except ValueError as error:
                raise invalid_argument(str(error)) from None
            self.manager.reload(config)
            return model_management_pb2.ReloadConfigResponse()
        return self._observe("reload_config", "", context, run)

    # -- helpers -------------------------------------------------------
    def resolve(self, model_spec):
        """The `ServableVersion` a `ModelSpec` names (NOT_FOUND /
        INVALID_ARGUMENT as TF Serving)."""
        return self.manager.resolve(model_spec)

    def _observe(self, api, model_name, context, run):
        started = time.perf_counter()
        status = "OK"
        try:
            if context is not None:
                context.check()
            return run()
        except ServingError as error:
            status = error.code.name
            raise
        except Exception:
            status = grpc.StatusCode.INTERNAL.name
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe(
                    model_name, api,
                    context.entrypoint if context is not None else "GRPC",
                    status, (time.perf_counter() - started) * 1e6)


__all__ = ["Handlers", "RequestContext"]
