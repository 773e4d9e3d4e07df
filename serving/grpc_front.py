"""The gRPC front end of the model server: TF Serving's services on a
`grpc.aio` server with a bounded thread pool, plus `grpc.health.v1.Health`.

Every method takes its request as bytes and hands them to the shared
handlers (`serving.handlers`, which the REST front end calls too) through
`serving.dispatch` (memory reservation, thread, deadline); the bytes are
parsed in the request's thread (see `_Front`).
"""

import asyncio
import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_PORT,
    DEFAULT_SERVER_OPTIONS,
)
from serving.dispatch import Dispatcher
from serving.errors import ServingError, limit_message
from serving.handlers import Handlers
from serving.manager import ModelManager

_LOG = logging.getLogger("serving.server")


# Bytes a request message takes in this process while it is parsed and
# served: the message as received (a Python bytes object) and its parsed
# proto. Reserved in the memory budget before it is parsed.
WIRE_COPIES = 2

# (service, method) -> (request class, response class, handler name)
_METHODS = {
    ("tensorflow.serving.PredictionService", "Predict"): (
        predict_pb2.PredictRequest,
        predict_pb2.PredictResponse,
        "predict",
    ),
    ("tensorflow.serving.PredictionService", "Classify"): (
        classification_pb2.ClassificationRequest,
        classification_pb2.ClassificationResponse,
        "classify",
    ),
    ("tensorflow.serving.PredictionService", "Regress"): (
        regression_pb2.RegressionRequest,
        regression_pb2.RegressionResponse,
        "regress",
    ),
    ("tensorflow.serving.PredictionService", "MultiInference"): (
        inference_pb2.MultiInferenceRequest,
        inference_pb2.MultiInferenceResponse,
        "multi_inference",
    ),
    ("tensorflow.serving.PredictionService", "GetModelMetadata"): (
        get_model_metadata_pb2.GetModelMetadataRequest,
        get_model_metadata_pb2.GetModelMetadataResponse,
        "get_model_metadata",
    ),
    ("tensorflow.serving.ModelService", "GetModelStatus"): (
        get_model_status_pb2.GetModelStatusRequest,
        get_model_status_pb2.GetModelStatusResponse,
        "get_model_status",
    ),
    ("tensorflow.serving.ModelService", "HandleReloadConfigRequest"): (
        model_management_pb2.ReloadConfigRequest,
        model_management_pb2.ReloadConfigResponse,
        "reload_config",
    ),
}


class _Front:
    """What every gRPC method does. The request arrives as bytes: their size
    is reserved in the memory budget (RESOURCE_EXHAUSTED when it is full)
    before they are parsed; the shared handler then runs in the bounded
    thread pool (`--grpc_max_threads`) while the event loop waits for it
    until the call's deadline (`serving.dispatch`). No thread is held by a
    call whose request is still arriving (a slow client costs a coroutine,
    not a thread); a call whose client cancels is cancelled."""

    def __init__(self, handlers, workers):
        self.handlers = handlers
        self.dispatcher = Dispatcher(handlers, "GRPC", workers, "grpc")

    def generic_handlers(self):
        services = {}
        for (service, method), (request_class, response_class, name) in _METHODS.items():
            services.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._method(method, request_class, getattr(self.handlers, name)),
                request_deserializer=None,  # bytes: parsed in `call`
                response_serializer=response_class.SerializeToString,
            )
        return [
            grpc.method_handlers_generic_handler(service, methods)
            for service, methods in services.items()
        ]

    def _method(self, method_name, request_class, handler):
        async def method(data, context):
            return await self.call(handler, request_class, data, context, method_name)

        return method

    async def call(self, method, request_class, data, context, name=""):
        try:
            ctx = self.dispatcher.open(
                context.time_remaining(), WIRE_COPIES * len(data), "request message"
            )
        except ServingError as error:
            await context.abort(error.code, error.message)

        def job(ctx):
            try:
                request = request_class.FromString(data)
            except Exception:  # noqa: BLE001 (gRPC's own answer to garbage)
                raise ServingError(
                    grpc.StatusCode.INTERNAL, "Exception deserializing request!"
                ) from None
            if name == "Predict":
                _LOG.debug("Predict request received (model %r)", request.model_spec.name[:200])
            ctx.received = (request, data)
            return method(request, ctx)

        try:
            return await self.dispatcher.result_async(ctx, self.dispatcher.submit(ctx, job))
        except asyncio.CancelledError:  # the client went away
            ctx.cancel()
            raise
        except ServingError as error:
            code, message = error.code, error.message
        except Exception as error:  # noqa: BLE001 (the server keeps serving)
            _LOG.error("request failed: %s: %s", type(error).__name__, limit_message(error, 300))
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {error}"
        await context.abort(code, limit_message(message))


# Health service names: "" (the server), each model, and the services
# (TF Serving's health service names "ModelService" and "PredictionService").
SERVICE_NAMES = (
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "PredictionService",
    "ModelService",
)


class GrpcServer:
    """The gRPC front end: a `grpc.aio` server on its own event-loop thread,
    TF Serving's services plus `grpc.health.v1.Health`.

    Args:
        handlers: the shared `Handlers` (or a `ModelManager`).
        host, port: TCP address (port 0: any free port; None: no TCP port).
        socket_path: also listen on this UNIX socket.
        channel_arguments: gRPC server arguments (win over the defaults).
        workers: request threads.
        max_concurrent_rpcs: calls in progress at once (more:
            RESOURCE_EXHAUSTED).
        credentials: `grpc.ServerCredentials` (TLS), or None (plaintext).
        health: serve `grpc.health.v1.Health`.
    """

    def __init__(
        self,
        handlers,
        host=DEFAULT_HOST,
        port=DEFAULT_PORT,
        socket_path=None,
        channel_arguments=(),
        workers=16,
        max_concurrent_rpcs=DEFAULT_MAX_CONCURRENT_RPCS,
        credentials=None,
        health=True,
    ):
        if isinstance(handlers, ModelManager):
            handlers = Handlers(handlers)
        self.handlers = handlers
        self._front = _Front(handlers, workers)
        options = dict(DEFAULT_SERVER_OPTIONS)
        options.update(dict(channel_arguments))
        self._options = list(options.items())
        self._max_rpcs = max_concurrent_rpcs
        self._credentials = credentials
        self._addresses = []
        if port is not None:
            self._addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        if socket_path:
            self._addresses.append(f"unix:{socket_path}")
        self._health_on = health
        self.health = None
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="grpc-loop", daemon=True
        )
        self._server = None
        self._stopping = False

    def _run(self, coroutine, timeout=None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self):
        """Binds and starts; returns the bound TCP port (or None)."""
        self._thread.start()
        try:
            self.port = self._run(self._start())
        except BaseException:
            self._shutdown_loop()
            raise
        if self._health_on:
            self.handlers.manager.add_listener(self.update_health)
            self.update_health()
        return self.port

    async def _start(self):
        server = grpc.aio.server(options=self._options, maximum_concurrent_rpcs=self._max_rpcs)
        server.add_generic_rpc_handlers(self._front.generic_handlers())
        if self._health_on:
            self.health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        bound = None
        for address in self._addresses:
            try:
                if self._credentials is not None:
                    result = server.add_secure_port(address, self._credentials)
                else:
                    result = server.add_insecure_port(address)
            except RuntimeError as error:
                raise OSError(f"Cannot listen on {address}: {error}") from None
            if not result:
                raise OSError(f"Cannot listen on {address} (in use?)")
            if not address.startswith("unix:"):
                bound = result
        await server.start()
        self._server = server
        return bound

    def update_health(self):
        """Health: each model SERVING when it has an AVAILABLE version;
        "" and the services SERVING when every model is."""
        if self.health is None or self._server is None or self._stopping:
            return
        states = self.handlers.manager.serving_status()
        overall = bool(states) and all(states.values())
        status = health_pb2.HealthCheckResponse

        async def apply():
            for name, ok in states.items():
                await self.health.set(name, status.SERVING if ok else status.NOT_SERVING)
            for name in ("",) + SERVICE_NAMES:
                await self.health.set(name, status.SERVING if overall else status.NOT_SERVING)

        try:
            self._run(apply(), timeout=10)
        except (RuntimeError, futures.TimeoutError):  # the loop has stopped
            pass

    def stop(self, grace=None):
        """Stops accepting calls, lets those in progress finish for up to
        `grace` seconds; returns an object whose `wait()` returns at once
        (the stop is done)."""
        self._stopping = True
        if self._server is not None and self._loop.is_running():

            async def stop():
                if self.health is not None:
                    await self.health.enter_graceful_shutdown()
                await self._server.stop(grace)

            self._run(stop())
        self._front.dispatcher.close()
        self._shutdown_loop()
        return _Stopped()

    def _shutdown_loop(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class _Stopped:
    def wait(self, timeout=None):
        return True


def create_server(
    handlers,
    host=DEFAULT_HOST,
    port=DEFAULT_PORT,
    socket_path=None,
    channel_arguments=(),
    workers=16,
    max_concurrent_rpcs=DEFAULT_MAX_CONCURRENT_RPCS,
    credentials=None,
    health=True,
):
    """A started `GrpcServer` serving `handlers` (or a `ModelManager`) on
    `host:port` (port 0: any free port; None: no TCP port) and/or the UNIX
    socket `socket_path`; returns `(server, bound TCP port or None)`."""
    server = GrpcServer(
        handlers,
        host,
        port,
        socket_path,
        channel_arguments,
        workers,
        max_concurrent_rpcs,
        credentials,
        health,
    )
    bound = server.start()
    return server, bound
