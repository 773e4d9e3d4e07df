"""The gRPC services of `python -m serving.server`:
`tensorflow.serving.PredictionService` and `ModelService`, over the
handlers REST shares (`serving.handlers`). Kept apart from the command line
(`serving.server`) because TF Serving's service protos import TensorFlow,
which `--help` does not need."""

import logging

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.errors import ServingError
from serving.handlers import RequestContext

_LOG = logging.getLogger("serving.server")


def _answer(context, handler):
    """Runs `handler()`; a `ServingError` becomes its status code."""
    try:
        return handler()
    except ServingError as error:
        code, message = error.code, error.message
    except Exception as error:  # noqa: BLE001 (the server keeps serving)
        _LOG.exception("request failed")
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {error}"
    context.abort(code, message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over the shared handlers."""

    def __init__(self, handlers):
        self._handlers = handlers

    def Predict(self, request, context):
        _LOG.debug("Predict request received (model %r)", request.model_spec.name)
        return _answer(context, lambda: self._handlers.predict(
            request, RequestContext.grpc(context)))

    def Classify(self, request, context):
        return _answer(context, lambda: self._handlers.classify(
            request, RequestContext.grpc(context)))

    def Regress(self, request, context):
        return _answer(context, lambda: self._handlers.regress(
            request, RequestContext.grpc(context)))

    def MultiInference(self, request, context):
        return _answer(context, lambda: self._handlers.multi_inference(
            request, RequestContext.grpc(context)))

    def GetModelMetadata(self, request, context):
        return _answer(context, lambda: self._handlers.get_model_metadata(
            request, RequestContext.grpc(context)))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService`: version status and config reload."""

    def __init__(self, handlers):
        self._handlers = handlers

    def GetModelStatus(self, request, context):
        return _answer(context, lambda: self._handlers.get_model_status(
            request, RequestContext.grpc(context)))

    def HandleReloadConfigRequest(self, request, context):
        return _answer(context, lambda: self._handlers.reload_config(
            request, RequestContext.grpc(context)))


def add_services(server, handlers):
    """Adds both services over `handlers` to a `grpc.Server`."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(handlers), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(handlers), server)
