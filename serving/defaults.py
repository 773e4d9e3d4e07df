"""The serving defaults that the command line shows and the servers use
(no heavy imports: `--help` reads them)."""

import os

MIB = 1024 * 1024

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
# Largest request accepted (gRPC message, REST body) unless
# --grpc_channel_arguments=grpc.max_receive_message_length=N says otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 64 * MIB
# Calls in progress at once (gRPC answers more with RESOURCE_EXHAUSTED).
DEFAULT_MAX_CONCURRENT_RPCS = 256
# gRPC server arguments before --grpc_channel_arguments: the message limit;
# at most 100 streams per connection (HTTP/2's recommended minimum), so one
# connection cannot take every call slot; client keepalive pings allowed
# every 10 s (the clients of serving.client ping every 30 s).
DEFAULT_SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", -1),
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 100),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10000),
    ("grpc.http2.max_ping_strikes", 0),
)
# What the server prints when it serves (harnesses wait for these lines).
READY_LINE = "Running gRPC ModelServer at"
REST_READY_LINE = "Exporting HTTP/REST API at"
# Per-request and server-wide memory limits (serving.limits): a request's
# tensors may decode to 256 MiB (4x the default gRPC message limit of 64 MiB:
# int_val varints are 1 byte on the wire, 4 in an int32 tensor); all requests
# in flight hold at most 1 GiB.
DEFAULT_MAX_REQUEST_BYTES = 256 * MIB
DEFAULT_MAX_INFLIGHT_BYTES = 1024 * MIB


def usable_cpus():
    """The CPUs this process may run on (its affinity mask where the OS has
    one): the default of the thread pools sized by the cores."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
