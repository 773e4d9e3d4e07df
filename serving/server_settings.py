"""`ServerSettings`, everything `serve` needs besides the model config
(TF Serving's `Server::Options`), and how the flags parsed by
`serving.flags.build_parser` make them and the model config.

>>> from serving.flags import build_parser
>>> args = build_parser().parse_args(["--model_name=m", "--model_base_path=/m"])
>>> settings_from_args(args).port                               # doctest: +SKIP
8500
"""

from __future__ import annotations

import dataclasses
import os
import typing

from serving.defaults import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
)
from serving.flags import check_default_only

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

    check_default_only(args)
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
    "config_from_args",
    "parse_channel_arguments",
    "settings_from_args",
]
