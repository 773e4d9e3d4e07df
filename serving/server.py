"""A drop-in `tensorflow_model_server`: TF Serving's gRPC and REST APIs,
command line and semantics, for any SavedModel.

gRPC (`grpc.aio`, request threads bounded by `--grpc_max_threads`):
`tensorflow.serving.PredictionService` (`Predict`, `Classify`, `Regress`,
`MultiInference`, `GetModelMetadata`), `tensorflow.serving.ModelService`
(`GetModelStatus`, `HandleReloadConfigRequest` — off unless
`--enable_model_config_reload`, confined to
`--allowed_model_base_path_roots`) from the `tensorflow-serving-api` protos,
and `grpc.health.v1.Health`; TLS with `--ssl_config_file`.
REST (`--rest_api_port`): `serving.rest`. Both front ends call the same
handlers (`serving.handlers`) over the same models (`serving.manager`),
each loaded version running in a worker process of its own
(`serving.worker`): this process never loads a SavedModel.

The command line is TF Serving's (`--port`, `--rest_api_port`,
`--model_name`, `--model_base_path`, `--model_config_file`,
`--enable_batching`, `--batching_parameters_file`, ...; `--flag=value` or
`--flag value`; booleans as `--flag`, `--flag=true|false`), so a script or
test harness that starts `tensorflow_model_server` can start
`python -m serving.server` (or `classreg-model-server`) instead. A TF
Serving flag this server does not implement is refused with its name,
unless it is given its default value. Options of this server alone:
`--host` (the address to bind: 127.0.0.1 by default, where TF Serving binds
every interface), `--enable_model_config_reload`,
`--allowed_model_base_path_roots`, `--max_request_bytes`,
`--max_inflight_bytes`, `--grpc_max_concurrent_rpcs`, `--grace-seconds` and
`--log-level` (docs/serving.md, "Security").

Usage:

    python -m serving.server --model_name=classreg --model_base_path=/models/classreg \\
        --rest_api_port=8501
    classreg-model-server --port=8500 --model_config_file=docker/models.config \\
        --enable_batching --batching_parameters_file=docker/batching_parameters.txt
"""

import logging
import signal
import sys
import threading

import cliutil
from serving.defaults import DEFAULT_MAX_MESSAGE_BYTES, READY_LINE, REST_READY_LINE
from serving.errors import ServingError
from serving.flags import build_parser
from serving.server_settings import ServerSettings, config_from_args, settings_from_args

# The model manager, the handlers and the gRPC and REST front ends import
# TensorFlow: imported inside the functions that use them (after
# `cliutil.quiet_tensorflow()` in `main`), so that `--help` answers at once.

_LOG = logging.getLogger("serving.server")


def version_lines():
    """What `--version` prints: this server's and the TF Serving API's
    versions (from the installed packages), then TensorFlow's (as
    `tensorflow_model_server --version` does)."""
    import importlib.metadata

    import tensorflow as tf

    from keras_classreg import __version__

    try:
        api = importlib.metadata.version("tensorflow-serving-api")
    except importlib.metadata.PackageNotFoundError:
        api = "unknown"
    return (
        f"TensorFlow ModelServer: classreg-model-server {__version__} (TF Serving API {api})\n"
        f"TensorFlow Library: {tf.__version__}"
    )


def serve(config, settings=None, stop_event=None, on_ready=None):
    """Loads the models of `config`, serves them (gRPC, and REST when
    `settings.rest_port`) until SIGTERM/SIGINT or `stop_event`, then drains
    in-flight requests and returns."""
    from serving import grpc_front, limits
    from serving import handlers as handlers_module
    from serving import manager as manager_module
    from serving import metrics as metrics_module

    settings = settings or ServerSettings()
    stop_event = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop_event.set())
    manager = manager_module.ModelManager(
        config,
        batching=settings.batching,
        poll_wait_seconds=settings.poll_wait_seconds,
        warmup=settings.warmup,
        options=settings.options,
        allow_version_labels_for_unavailable_models=settings.allow_unavailable_labels,
        warmup_iterations=settings.warmup_iterations,
        workers=settings.workers,
        max_executions_per_model=settings.max_executions_per_model,
    )
    try:
        manager.start()
        _wait_until_available(manager, settings.poll_wait_seconds, stop_event)
    except ServingError as error:
        manager.stop()
        raise ValueError(f"{error.code.name}: {error.message}") from None
    except ValueError:
        manager.stop()
        raise
    if stop_event.is_set():  # stopped while loading
        manager.stop()
        return
    metrics = metrics_module.Metrics()
    handlers = handlers_module.Handlers(
        manager,
        metrics,
        limits.RequestLimits(
            settings.max_request_bytes or None,
            limits.MemoryBudget(settings.max_inflight_bytes or None),
        ),
        settings.reload_policy,
    )
    limit = dict(settings.channel_arguments).get(
        "grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES
    )
    credentials = None
    if settings.ssl_config is not None:
        from serving.tls import server_credentials

        credentials = server_credentials(settings.ssl_config)
        _LOG.info(
            "Using SSL credentials%s",
            " (client certificates required)" if settings.ssl_config.client_verify else "",
        )
    servers = []
    try:
        server, bound = grpc_front.create_server(
            handlers,
            settings.host,
            settings.port or None,
            settings.socket_path,
            settings.channel_arguments,
            settings.grpc_threads,
            settings.max_concurrent_rpcs,
            credentials,
            settings.health,
        )
        servers.append(server)
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        if bound is not None:
            _LOG.info(
                "%s %s:%d ... (models: %s)",
                READY_LINE,
                shown,
                bound,
                ", ".join(manager.model_names()),
            )
        if settings.socket_path:
            _LOG.info("%s UNIX socket %s ...", READY_LINE, settings.socket_path)
        rest = None
        if settings.rest_port:
            if settings.rest_port == settings.port:
                _LOG.error(
                    "--rest_api_port cannot be the same as --port; the "
                    "HTTP/REST API is not exported."
                )
            else:
                from serving.rest import RestApp, RestServer

                app = RestApp(
                    handlers,
                    settings.rest_timeout_seconds,
                    settings.rest_cors,
                    settings.metrics_path,
                    settings.rest_threads,
                )
                rest = RestServer(
                    app,
                    settings.host,
                    settings.rest_port,
                    settings.rest_threads,
                    max_body_bytes=limit if limit > 0 else None,
                )
                rest.start()
                _LOG.info("%s %s:%d ...", REST_READY_LINE, shown, rest.port)
                if credentials is not None:
                    _LOG.warning(
                        "The HTTP/REST API is not encrypted "
                        "(--ssl_config_file covers gRPC only, as "
                        "in TF Serving)"
                    )
    except OSError:
        for server in servers:
            server.stop(0)
        manager.stop()
        raise
    poller = None
    if settings.config_file and settings.config_poll_wait_seconds > 0:
        poller = threading.Thread(
            target=_poll_config_file,
            args=(settings.config_file, settings.config_poll_wait_seconds, manager, stop_event),
            name="config-poller",
            daemon=True,
        )
        poller.start()
    if on_ready is not None:
        on_ready(bound, rest.port if rest is not None else None)
    stop_event.wait()
    _LOG.info("Shutting down: draining in-flight requests (up to %.0f s)", settings.grace_seconds)
    if rest is not None:
        rest.stop()
    for server in servers:
        server.stop(settings.grace_seconds).wait()
    if poller is not None:
        poller.join()
    manager.stop()
    _LOG.info("Server stopped")


def _wait_until_available(manager, poll_wait_seconds, stop_event):
    """Returns once every configured model has an AVAILABLE version (TF
    Serving waits for them before it serves); raises ValueError naming the
    reason when a model cannot get one (every version on disk failed to
    load, or no version and no polling)."""
    logged = set()
    while not stop_event.is_set():
        problems = manager.unavailable_models()
        if not problems:
            return
        fatal = {
            name: reason
            for name, (reason, hopeful) in problems.items()
            if not hopeful or poll_wait_seconds <= 0
        }
        if fatal:
            raise ValueError(
                "; ".join(f"model {name}: {reason}" for name, reason in sorted(fatal.items()))
            )
        for name, (reason, _) in sorted(problems.items()):
            if name not in logged:
                _LOG.info("Waiting for model %s to be available: %s", name, reason)
                logged.add(name)
        stop_event.wait(max(poll_wait_seconds, 0.2))  # the manager polls


def _poll_config_file(path, seconds, manager, stop_event):
    """TF Serving's PollFilesystemAndReloadConfig: re-read the model config
    file every `seconds` and apply it (a file that does not parse is
    logged and the running config kept)."""
    from serving import model_config

    last = None
    while not stop_event.wait(seconds):
        try:
            config = model_config.read_model_config_file(path)
        except ValueError as error:
            _LOG.error("Failed to read the model config file: %s", error)
            continue
        text = config.SerializeToString(deterministic=True)
        if text == last:
            continue
        try:
            manager.reload(config)
            last = text
        except (ServingError, ValueError) as error:
            _LOG.error("Reloading the model config file failed: %s", error)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cliutil.quiet_tensorflow()
    if args.version:
        print(version_lines())
        return 0
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
        config = config_from_args(args)
        serve(config, settings)
    except (ValueError, OSError) as error:
        print(f"Failed to start server. Error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
