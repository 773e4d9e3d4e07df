"""A gRPC model server speaking TensorFlow Serving's own API.

It implements `tensorflow.serving.PredictionService` (`Predict`, `Classify`,
`GetModelMetadata`; `Regress` answers as TF Serving does for a model without
a regression signature; `MultiInference` is not implemented) and
`tensorflow.serving.ModelService` (`GetModelStatus`, the health check, and
`HandleReloadConfigRequest`) from the `tensorflow-serving-api` protos, over
model base folders of numeric version folders (see `serving.models`). So the
same clients and stubs work against it and against the official
`tensorflow/serving` container.

- latest version served; a new version folder dropped in while running is
  loaded, warmed up and swapped in without a failed request;
- `--model-config-file` (TF Serving's `models.config`) for several models;
- `--max-batch-size` (or `--batching-parameters-file`) batches concurrent
  requests on the server;
- message size limit (over-size requests get RESOURCE_EXHAUSTED), TF
  Serving's status codes and messages for bad requests;
- binds 127.0.0.1:8500 by default; SIGTERM/SIGINT drain in-flight requests
  and exit 0.

Usage:

    python -m serving.server --model-name classreg --model-base-path exports/classreg
    python -m serving.server --model-config-file docker/models.config --max-batch-size 8
"""

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.batching import BatchingOptions  # noqa: E402
from serving.errors import ServingError  # noqa: E402
from serving.models import (  # noqa: E402
    ModelManager,
    check_model_config,
    read_model_config_file,
    single_model_config,
)

_LOG = logging.getLogger("serving.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
READY_LINE = "Running gRPC ModelServer at"


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
    """`tensorflow.serving.PredictionService` over a `ModelManager`."""

    def __init__(self, manager):
        self._manager = manager

    def Predict(self, request, context):
        _LOG.debug("Predict request received (model %r)", request.model_spec.name)
        return _answer(context, lambda: self._manager.resolve(
            request.model_spec).predict(request))

    def Classify(self, request, context):
        return _answer(context, lambda: self._manager.resolve(
            request.model_spec).classify(request))

    def Regress(self, request, context):
        return _answer(context, lambda: self._manager.resolve(
            request.model_spec).regress(request))

    def GetModelMetadata(self, request, context):
        def handler():
            if not request.HasField("model_spec"):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "Missing ModelSpec")
            return self._manager.resolve(request.model_spec).metadata(request)
        return _answer(context, handler)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService`: version status and config reload."""

    def __init__(self, manager):
        self._manager = manager

    def GetModelStatus(self, request, context):
        def handler():
            if not request.HasField("model_spec"):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "Missing ModelSpec")
            return self._manager.status(request.model_spec)
        return _answer(context, handler)

    def HandleReloadConfigRequest(self, request, context):
        def handler():
            try:
                self._manager.reload(check_model_config(request.config,
                                                        "ReloadConfigRequest"))
            except ValueError as error:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   str(error)) from None
            return model_management_pb2.ReloadConfigResponse()
        return _answer(context, handler)


def create_server(manager, host=DEFAULT_HOST, port=DEFAULT_PORT,
                  max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES, workers=16):
    """A started `grpc.Server` serving `manager`, and the port it bound
    (useful with `port=0`)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers,
                                   thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(manager), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"Cannot listen on {address}: {error}") from None
    if not bound:
        raise OSError(f"Cannot listen on {address} (port in use?)")
    server.start()
    return server, bound


def serve(config, host=DEFAULT_HOST, port=DEFAULT_PORT, batching=None,
          max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES, poll_wait_seconds=1.0,
          warmup=True, workers=16, grace_seconds=10.0, stop_event=None):
    """Loads the models of `config`, serves them until SIGTERM/SIGINT (or
    `stop_event` is set), then drains in-flight requests and returns."""
    stop_event = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop_event.set())
    manager = ModelManager(config, batching=batching,
                           poll_wait_seconds=poll_wait_seconds,
                           warmup=warmup).start()
    if stop_event.is_set():  # stopped while loading
        manager.stop()
        return
    try:
        server, bound = create_server(manager, host, port, max_message_bytes,
                                      workers)
    except OSError:
        manager.stop()
        raise
    shown = f"[{host}]" if ":" in host else host
    _LOG.info("%s %s:%d ... (models: %s)", READY_LINE, shown, bound,
              ", ".join(manager.model_names()))
    stop_event.wait()
    _LOG.info("Shutting down: draining in-flight requests (up to %.0f s)",
              grace_seconds)
    server.stop(grace_seconds).wait()
    manager.stop()
    _LOG.info("Server stopped")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description=(
            "Serve exported models over gRPC with TensorFlow Serving's API "
            "(PredictionService: Predict, Classify, GetModelMetadata; "
            "ModelService: GetModelStatus, HandleReloadConfigRequest). "
            "A model is a base folder of numeric version folders written by "
            "`python -m training.export`; the latest version is served and "
            "new versions are picked up while running."
        ),
        epilog=(
            "Example: python -m serving.server --model-name classreg "
            "--model-base-path exports/classreg --max-batch-size 8"
        ),
    )
    models = parser.add_argument_group("models (one of)")
    models.add_argument("--model-base-path",
                        help="Folder of version folders (1/, 2/, ...) of one "
                        "model.")
    models.add_argument("--model-name", default="default",
                        help="Name clients request for --model-base-path. "
                        "Default: 'default' (as TF Serving).")
    models.add_argument("--model-config-file",
                        help="TF Serving's models.config (ModelServerConfig "
                        "text format) listing several models, each with "
                        "name, base_path and optional model_version_policy "
                        "and version_labels.")
    network = parser.add_argument_group("network")
    network.add_argument("--host", default=DEFAULT_HOST,
                         help="Address to bind. Default: 127.0.0.1 (this "
                         "machine only); 0.0.0.0 for every interface.")
    network.add_argument("--port", type=int, default=DEFAULT_PORT,
                         help="gRPC port (0: any free port, shown in the "
                         f"'{READY_LINE}' line). Default: {DEFAULT_PORT}.")
    network.add_argument("--max-message-bytes", type=int,
                         default=DEFAULT_MAX_MESSAGE_BYTES,
                         help="Largest request/response; larger requests "
                         "get RESOURCE_EXHAUSTED. Default: 64 MiB.")
    network.add_argument("--grpc-workers", type=int, default=16,
                         help="Threads answering requests. Default: 16.")
    batching = parser.add_argument_group(
        "batching (off unless --max-batch-size or --batching-parameters-file)")
    batching.add_argument("--max-batch-size", type=int, default=None,
                          help="Batch concurrent requests of one signature "
                          "up to this many clips per model call.")
    batching.add_argument("--batch-timeout-micros", type=int, default=None,
                          help="How long a batch waits to fill. Default: 0 "
                          "(run what is queued; no added latency).")
    batching.add_argument("--max-enqueued-batches", type=int, default=None,
                          help="Queue bound in batches; beyond it requests "
                          "get UNAVAILABLE. Default: 100.")
    batching.add_argument("--num-batch-threads", type=int, default=None,
                          help="Batches run in parallel per signature. "
                          "Default: 2.")
    batching.add_argument("--batching-parameters-file",
                          help="TF Serving's batching_parameters.txt (e.g. "
                          "docker/batching_parameters.txt); the flags above "
                          "override its values.")
    other = parser.add_argument_group("other")
    other.add_argument("--file-system-poll-wait-seconds", type=float,
                       default=1.0,
                       help="Seconds between checks for new versions (0: "
                       "only at start). Default: 1.")
    other.add_argument("--no-warmup", action="store_true",
                       help="Do not replay assets.extra/"
                       "tf_serving_warmup_requests before serving a version.")
    other.add_argument("--grace-seconds", type=float, default=10.0,
                       help="On SIGTERM, how long in-flight requests may "
                       "finish. Default: 10.")
    other.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="Logging level. Default: INFO.")
    return parser


def _config_from_args(args, parser):
    if bool(args.model_config_file) == bool(args.model_base_path):
        parser.error("give exactly one of --model-base-path (with "
                     "--model-name) or --model-config-file")
    if args.model_config_file:
        return read_model_config_file(args.model_config_file)
    return single_model_config(args.model_name,
                               os.path.abspath(args.model_base_path))


def _batching_from_args(args):
    overrides = {
        "max_batch_size": args.max_batch_size,
        "batch_timeout_micros": args.batch_timeout_micros,
        "max_enqueued_batches": args.max_enqueued_batches,
        "num_batch_threads": args.num_batch_threads,
    }
    if args.batching_parameters_file:
        try:
            with open(args.batching_parameters_file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ValueError(f"Cannot read {args.batching_parameters_file}: "
                             f"{error}") from None
        return BatchingOptions.from_text(text, args.batching_parameters_file,
                                         **overrides)
    if args.max_batch_size is None:
        return None
    return BatchingOptions(**{k: v for k, v in overrides.items()
                              if v is not None})


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = _config_from_args(args, parser)
        batching = _batching_from_args(args)
        serve(config, host=args.host, port=args.port, batching=batching,
              max_message_bytes=args.max_message_bytes,
              poll_wait_seconds=args.file_system_poll_wait_seconds,
              warmup=not args.no_warmup, workers=args.grpc_workers,
              grace_seconds=args.grace_seconds)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
