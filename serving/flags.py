"""The model server's command line: TF Serving's flags
(`model_servers/main.cc`) parsed into `ServerSettings` (its
`Server::Options`) and the model config. A TF Serving flag this server
does not implement is refused with its name and the reason, unless it is
given its default value.

>>> args = build_parser().parse_args(["--model_name=m", "--model_base_path=/m"])
>>> settings_from_args(args).port                               # doctest: +SKIP
8500
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing

from serving.defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    usable_cpus,
)

# The modules of the settings' classes import TensorFlow: imported inside
# the functions that use them, so that `--help` answers at once.
if typing.TYPE_CHECKING:
    from serving.batching import BatchingOptions
    from serving.handlers import ReloadPolicy
    from serving.servable import ServingOptions
    from serving.tls import SSLConfig
    from serving.worker_process import WorkerSettings


def parse_channel_arguments(text):
    """TF Serving's `--grpc_channel_arguments` ("k=v,k2=v2"): values that
    parse as int32 are ints, the rest strings."""
    arguments = []
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            number = int(value)
            arguments.append((key, number) if -(2**31) <= number < 2**31 else (key, value))
        except ValueError:
            arguments.append((key, value))
    return arguments


# `ServerSettings`' defaults whose classes live in modules that import
# TensorFlow.
def _default_serving_options():
    from serving.servable import ServingOptions

    return ServingOptions()


def _default_reload_policy():
    from serving.handlers import ReloadPolicy

    return ReloadPolicy()


def _default_worker_settings():
    from serving.worker_process import WorkerSettings

    return WorkerSettings()


@dataclasses.dataclass
class ServerSettings:
    """Everything `serve` needs besides the model config (from the flags)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    socket_path: str = ""
    rest_port: int = 0
    rest_threads: int = 8
    rest_timeout_seconds: float = 30.0
    rest_cors: bool = False
    channel_arguments: tuple = ()
    grpc_threads: int = 16
    batching: BatchingOptions | None = None
    poll_wait_seconds: float = 1.0
    config_file: str = ""
    config_poll_wait_seconds: float = 0.0
    warmup: bool = True
    warmup_iterations: int = 1
    options: ServingOptions = dataclasses.field(default_factory=_default_serving_options)
    allow_unavailable_labels: bool = False
    metrics_path: str = None
    grace_seconds: float = 10.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    ssl_config: SSLConfig | None = None
    reload_policy: ReloadPolicy = dataclasses.field(default_factory=_default_reload_policy)
    health: bool = True
    workers: WorkerSettings = dataclasses.field(default_factory=_default_worker_settings)
    max_executions_per_model: int = None  # None: one per CPU core; 0: no bound


def _bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# TF Serving flags with no effect here, accepted only at their default
# (name: (default, why)). Any other value is refused with the reason.
_DEFAULT_ONLY = {
    "use_alts_credentials": (False, "ALTS credentials are not implemented"),
    "platform_config_file": ("", "only the TensorFlow platform is served"),
    "tensorflow_session_config_file": (
        "",
        "not implemented: TF1 SavedModels run in a Session with TensorFlow's "
        "default ConfigProto, TF2 SavedModels as functions",
    ),
    "enable_per_model_batching_parameters": (False, "not implemented"),
    "prefer_tflite_model": (False, "TF Lite models are not served"),
    "num_tflite_pools": (None, "TF Lite models are not served"),
    "num_tflite_interpreters_per_pool": (1, "TF Lite models are not served"),
    "thread_pool_factory_config_file": ("", "not implemented"),
    "mixed_precision": ("", "not implemented"),
    "skip_initialize_tpu": (False, "TPUs are not supported"),
    "xla_cpu_compilation_enabled": (False, "not implemented"),
    "xla_gpu_compilation_enabled": (False, "not implemented"),
    # TF Serving's default is true; here there is no profiler service, so
    # only false (or leaving the flag out) is accepted.
    "enable_profiler": (False, "the profiler service is not served"),
    "num_load_threads": (0, "versions load one at a time"),
    "num_unload_threads": (0, "versions unload one at a time"),
    "max_num_load_retries": (5, "a version that failed to load is retried when its files change"),
    "load_retry_interval_micros": (
        60_000_000,
        "a version that failed to load is retried when its files change",
    ),
}
# Accepted and without effect: nothing in this server corresponds.
_NO_EFFECT = {"flush_filesystem_caches", "remove_unused_fields_from_bundle_metagraph"}


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments"):
            message += " (not a tensorflow_model_server flag, nor one of this server's: see --help)"
        super().error(message)


def build_parser():
    parser = _Parser(
        prog="python -m serving.server",
        description=(
            "A drop-in tensorflow_model_server: TF Serving's gRPC API "
            "(PredictionService, ModelService), REST API and command line "
            "for any SavedModel. A model is a base folder of numeric "
            "version folders; the latest version is served and new "
            "versions are picked up while running."
        ),
        epilog=(
            "Example: python -m serving.server --model_name=classreg "
            "--model_base_path=exports/classreg --rest_api_port=8501"
        ),
    )
    models = parser.add_argument_group("models (TF Serving's flags)")
    models.add_argument(
        "--model_name",
        default="default",
        help="Name of the model of --model_base_path. Default: default.",
    )
    models.add_argument(
        "--model_base_path",
        default="",
        help="Folder of version folders (1/, 2/, ...) of one "
        "model (ignored with --model_config_file).",
    )
    models.add_argument(
        "--model_config_file",
        default="",
        help="TF Serving's ModelServerConfig text file: "
        "several models, version policies and labels.",
    )
    models.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="Re-read --model_config_file every so many seconds (0: never). Default: 0.",
    )
    models.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="Seconds between checks for new versions (0 or less: only at start). Default: 1.",
    )
    models.add_argument(
        "--saved_model_tags",
        default="serve",
        help="Comma-separated tags of the MetaGraph to load. Default: serve.",
    )
    network = parser.add_argument_group("network (TF Serving's flags)")
    network.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"gRPC port (0: none, then --grpc_socket_path is needed). Default: {DEFAULT_PORT}.",
    )
    network.add_argument(
        "--grpc_socket_path", default="", help="Also serve gRPC on this UNIX socket."
    )
    network.add_argument(
        "--rest_api_port",
        type=int,
        default=0,
        help="HTTP/REST API port (0: no REST API). Must differ from --port. Default: 0.",
    )
    network.add_argument(
        "--rest_api_num_threads",
        type=int,
        default=4 * usable_cpus(),
        help="REST request threads. Default: 4 x CPUs.",
    )
    network.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30000,
        help="Deadline of a REST request. Default: 30000.",
    )
    network.add_argument(
        "--grpc_channel_arguments",
        default="",
        help="Comma-separated key=value gRPC server "
        "arguments, e.g. grpc.max_receive_message_length="
        f"N (default here: {DEFAULT_MAX_MESSAGE_BYTES}, "
        "also the REST body limit).",
    )
    network.add_argument(
        "--grpc_max_threads",
        type=int,
        default=4 * usable_cpus(),
        help="gRPC request threads. Default: 4 x CPUs.",
    )
    network.add_argument(
        "--ssl_config_file",
        default="",
        help="TF Serving's SSLConfig text file (server_key, "
        "server_cert: PEM text; custom_ca and client_verify "
        "for mutual TLS): TLS on the gRPC port.",
    )
    network.add_argument(
        "--enable_grpc_healthcheck_service",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="true|false",
        help="Serve grpc.health.v1.Health: each model name "
        'SERVING once it has an AVAILABLE version, "" once '
        "every model has. Default here: true (TF Serving: "
        "false).",
    )
    semantics = parser.add_argument_group("requests (TF Serving's flags)")
    for name, default, text in (
        ("rest_api_enable_cors_support", False, "Add CORS headers to REST answers."),
        ("enable_batching", False, "Batch concurrent requests of one signature."),
        (
            "enable_model_warmup",
            True,
            "Replay assets.extra/tf_serving_warmup_requests before serving "
            "a version. Default: true.",
        ),
        (
            "enable_signature_method_name_check",
            False,
            "Classify/Regress only on classify/regress signatures.",
        ),
        (
            "enable_serialization_as_tensor_content",
            False,
            "Predict answers in tensor_content instead of typed fields.",
        ),
        (
            "allow_version_labels_for_unavailable_models",
            False,
            "A new version label may name a version not loaded yet.",
        ),
    ):
        semantics.add_argument(
            f"--{name}",
            type=_bool,
            nargs="?",
            const=True,
            default=default,
            metavar="true|false",
            help=text,
        )
    semantics.add_argument(
        "--batching_parameters_file",
        default="",
        help="TF Serving's BatchingParameters text file (needs --enable_batching).",
    )
    semantics.add_argument(
        "--num_request_iterations_for_warmup",
        type=int,
        default=0,
        help="Replay each warm-up request so many times (0: once).",
    )
    semantics.add_argument(
        "--monitoring_config_file",
        default="",
        help="TF Serving's MonitoringConfig text file: Prometheus metrics on the REST port.",
    )
    semantics.add_argument(
        "--tensorflow_session_parallelism",
        type=int,
        default=0,
        help="TensorFlow intra- and inter-op threads (0: automatic).",
    )
    semantics.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="TensorFlow intra-op threads.",
    )
    semantics.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="TensorFlow inter-op threads.",
    )
    semantics.add_argument(
        "--per_process_gpu_memory_fraction",
        type=float,
        default=0.0,
        help="Fraction of each GPU's memory one model worker may take, between 0 and 1 "
        "(0: TensorFlow's default; memory growth is always on). Each version runs in "
        "its own worker: see docs/serving.md, 'Model workers'.",
    )
    semantics.add_argument("--version", action="store_true", help="Print the version and exit.")
    other = parser.add_argument_group(
        "TF Serving flags accepted at their default only (features this server does not have)"
    )
    for name, (default, _why) in sorted(_DEFAULT_ONLY.items()):
        if isinstance(default, bool):
            other.add_argument(
                f"--{name}",
                type=_bool,
                nargs="?",
                const=True,
                default=default,
                metavar="true|false",
                help=argparse.SUPPRESS,
            )
        else:
            other.add_argument(f"--{name}", default=default, help=argparse.SUPPRESS)
    for name in sorted(_NO_EFFECT):
        other.add_argument(
            f"--{name}", type=_bool, nargs="?", const=True, default=True, help=argparse.SUPPRESS
        )
    safety = parser.add_argument_group("limits and the admin RPC (this server's own flags)")
    safety.add_argument(
        "--enable_model_config_reload",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="Allow HandleReloadConfigRequest (which changes "
        "the served models, and so the code the server runs). "
        "Default: false (the RPC is PERMISSION_DENIED; TF "
        "Serving always allows it).",
    )
    safety.add_argument(
        "--allowed_model_base_path_roots",
        default="",
        metavar="DIR[,DIR]",
        help="With --enable_model_config_reload: the folders "
        "a reloaded model's base_path must be inside (real "
        "paths, symlinks resolved).",
    )
    safety.add_argument(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="Most bytes one request's tensors (inputs, "
        "examples, outputs) may take once decoded, checked "
        "before decoding (0: no limit). Default: "
        f"{DEFAULT_MAX_REQUEST_BYTES}.",
    )
    safety.add_argument(
        "--max_inflight_bytes",
        type=int,
        default=DEFAULT_MAX_INFLIGHT_BYTES,
        help="Server-wide memory budget of the requests in "
        "flight; a request that does not fit gets "
        "RESOURCE_EXHAUSTED (0: no limit). Default: "
        f"{DEFAULT_MAX_INFLIGHT_BYTES}.",
    )
    safety.add_argument(
        "--grpc_max_concurrent_rpcs",
        type=int,
        default=DEFAULT_MAX_CONCURRENT_RPCS,
        help="gRPC calls in progress at once, more are "
        "RESOURCE_EXHAUSTED. Default: "
        f"{DEFAULT_MAX_CONCURRENT_RPCS}.",
    )
    own = parser.add_argument_group("this server's own options")
    own.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="Address to bind (gRPC and REST). Default: "
        "127.0.0.1 (this machine only; TF Serving binds every "
        "interface: give 0.0.0.0 for that).",
    )
    own.add_argument(
        "--max_executions_per_model",
        type=int,
        default=None,
        help="Calls of one model running at once without --enable_batching; the others "
        "wait, and one whose deadline passes while waiting never starts. Default: one "
        "per CPU core (0: no bound).",
    )
    own.add_argument(
        "--worker_stuck_grace_seconds",
        type=float,
        default=10.0,
        help="A call still running this long after its deadline gets its model worker "
        "killed and replaced. Default: 10.",
    )
    own.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="On SIGTERM, how long in-flight requests may finish. Default: 10.",
    )
    own.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging level. Default: INFO.",
    )
    return parser


def _check_default_only(args):
    for name, (default, why) in sorted(_DEFAULT_ONLY.items()):
        value = getattr(args, name)
        if value is None or value == default:
            continue
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                if float(value) == float(default):
                    continue
            except (TypeError, ValueError):
                pass
        if default is None:  # any value of a TF Lite flag is harmless
            continue
        raise ValueError(f"--{name}={value} is not supported by this server ({why}).")


def config_from_args(args):
    from serving import model_config

    if args.model_config_file:
        return model_config.read_model_config_file(args.model_config_file)
    if not args.model_base_path:
        raise ValueError(
            "Both --model_base_path and --model_config_file are "
            "empty: give one (with --model_name)."
        )
    return model_config.single_model_config(args.model_name, os.path.abspath(args.model_base_path))


def batching_from_args(args):
    """`BatchingOptions` of `--enable_batching [--batching_parameters_file]`
    (TF Serving's defaults without a file), or None."""
    from serving import batching

    if not args.enable_batching:
        if args.batching_parameters_file:
            raise ValueError("--batching_parameters_file is set without --enable_batching.")
        return None
    if not args.batching_parameters_file:
        return batching.BatchingOptions.tf_serving_defaults()
    try:
        with open(args.batching_parameters_file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ValueError(f"Cannot read {args.batching_parameters_file}: {error}") from None
    return batching.BatchingOptions.from_text(text, args.batching_parameters_file)


def settings_from_args(args):
    from serving import handlers as handlers_module
    from serving import metrics as metrics_module
    from serving import servable, worker_process

    _check_default_only(args)
    if args.port == 0 and not args.grpc_socket_path:
        raise ValueError("At least one of --port or --grpc_socket_path must be set.")
    if args.port < 0 or args.rest_api_port < 0:
        raise ValueError("--port and --rest_api_port must be >= 0.")
    for name in ("rest_api_num_threads", "grpc_max_threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1.")
    if (
        args.tensorflow_intra_op_parallelism > 0
        and args.tensorflow_inter_op_parallelism > 0
        and args.tensorflow_session_parallelism > 0
    ):
        raise ValueError(
            "Either configure --tensorflow_session_parallelism or "
            "(--tensorflow_intra_op_parallelism, "
            "--tensorflow_inter_op_parallelism) separately. You cannot "
            "configure all."
        )
    tags = tuple(t for t in args.saved_model_tags.split(",") if t) or ("serve",)
    if not 0.0 <= args.per_process_gpu_memory_fraction <= 1.0:
        raise ValueError("--per_process_gpu_memory_fraction must be between 0 and 1.")
    if args.max_executions_per_model is not None and args.max_executions_per_model < 0:
        raise ValueError("--max_executions_per_model must be >= 0 (0: no bound).")
    if args.worker_stuck_grace_seconds <= 0:
        raise ValueError("--worker_stuck_grace_seconds must be > 0.")
    for name in ("max_request_bytes", "max_inflight_bytes"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0 (0: no limit).")
    if args.grpc_max_concurrent_rpcs < 1:
        raise ValueError("--grpc_max_concurrent_rpcs must be >= 1.")
    roots = [r for r in args.allowed_model_base_path_roots.split(",") if r]
    if roots and not args.enable_model_config_reload:
        raise ValueError(
            "--allowed_model_base_path_roots is set without --enable_model_config_reload."
        )
    for root in roots:
        if not os.path.isdir(root):
            raise ValueError(f"--allowed_model_base_path_roots: {root} is not a folder.")
    ssl_config = None
    if args.ssl_config_file:
        if args.use_alts_credentials:
            raise ValueError(
                "Either use_alts_credentials must be false or ssl_config_file must be empty."
            )
        from serving.tls import read_ssl_config

        ssl_config = read_ssl_config(args.ssl_config_file)
    return ServerSettings(
        host=args.host,
        port=args.port,
        socket_path=args.grpc_socket_path,
        rest_port=args.rest_api_port,
        rest_threads=args.rest_api_num_threads,
        rest_timeout_seconds=args.rest_api_timeout_in_ms / 1000.0,
        rest_cors=args.rest_api_enable_cors_support,
        channel_arguments=tuple(parse_channel_arguments(args.grpc_channel_arguments)),
        grpc_threads=args.grpc_max_threads,
        batching=batching_from_args(args),
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        config_file=args.model_config_file,
        config_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        warmup=args.enable_model_warmup,
        warmup_iterations=max(1, args.num_request_iterations_for_warmup),
        options=servable.ServingOptions(
            method_name_check=args.enable_signature_method_name_check,
            tensor_content=args.enable_serialization_as_tensor_content,
            saved_model_tags=tags,
        ),
        allow_unavailable_labels=args.allow_version_labels_for_unavailable_models,
        metrics_path=(
            metrics_module.read_monitoring_config(args.monitoring_config_file)
            if args.monitoring_config_file
            else None
        ),
        grace_seconds=args.grace_seconds,
        max_request_bytes=args.max_request_bytes,
        max_inflight_bytes=args.max_inflight_bytes,
        max_concurrent_rpcs=args.grpc_max_concurrent_rpcs,
        ssl_config=ssl_config,
        reload_policy=handlers_module.ReloadPolicy(args.enable_model_config_reload, roots),
        health=args.enable_grpc_healthcheck_service,
        workers=worker_process.WorkerSettings(
            intra_op_threads=(
                args.tensorflow_intra_op_parallelism or args.tensorflow_session_parallelism
            ),
            inter_op_threads=(
                args.tensorflow_inter_op_parallelism or args.tensorflow_session_parallelism
            ),
            gpu_memory_fraction=args.per_process_gpu_memory_fraction,
            threads=args.grpc_max_threads + args.rest_api_num_threads,
            stuck_grace_seconds=args.worker_stuck_grace_seconds,
            log_level=args.log_level,
        ),
        max_executions_per_model=args.max_executions_per_model,
    )


__all__ = [
    "ServerSettings",
    "batching_from_args",
    "build_parser",
    "config_from_args",
    "parse_channel_arguments",
    "settings_from_args",
]
