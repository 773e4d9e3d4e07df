"""The model server's command line: TF Serving's flags
(`model_servers/main.cc`) as an argparse parser. A TF Serving flag this
server does not implement is refused with its name and the reason
(`check_default_only`), unless it is given its default value;
`serving.server_settings` turns the parsed flags into `ServerSettings`.

>>> args = build_parser().parse_args(["--model_name=m", "--model_base_path=/m"])
>>> args.port
8500
"""

from __future__ import annotations

import argparse

from serving.defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    usable_cpus,
)


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


def check_default_only(args):
    """Refuses a flag this server does not implement given another value
    than its default (`ValueError` naming the flag and the reason)."""
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


__all__ = [
    "build_parser",
    "check_default_only",
]
