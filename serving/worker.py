"""A model worker process: loads ONE SavedModel version and answers the
front end's calls on it (`python -m serving.worker`, started by
`serving.worker_process`; not a command for people).

Why a process per version: TensorFlow keeps memory after every
`tf.saved_model.load` until the process ends (docs/serving.md, "Model
workers"), so a version is loaded in a process of its own and unloading
it ends that process, which gives all of its memory back to the OS. A
crash or a runaway call in one model takes down only its worker.

The worker:

- dies with the front end: `PR_SET_PDEATHSIG` (the kernel sends SIGKILL
  when the thread that started it ends; `serving.worker_process` starts
  every worker from one long-lived thread), a check that the parent is
  still the one that started it, and the end of its socket (the kernel
  closes it when the front end dies, however it dies);
- sets TensorFlow's threads (`--tensorflow_*_parallelism`) and, before
  anything touches a GPU, memory growth on every GPU and TF Serving's
  `--per_process_gpu_memory_fraction` (a cap of this worker's share, so
  several workers can share one GPU);
- loads the version with `ServableVersion` (TF1 sessions or TF2
  functions, batching with TF Serving's semantics inside the worker),
  replays its warm-up requests, sends READY (or LOAD_FAILED with the
  reason, and exits);
- runs every CALL in its own thread (concurrent calls meet in the
  batcher), under the call's deadline; a CANCEL cancels it
  (`serving.execution`); STOP lets the calls in flight finish and exits.
"""

import argparse
import ctypes
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures

_LOG = logging.getLogger("serving.worker")
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid):
    """Asks the kernel to SIGKILL this process when its parent ends, then
    exits at once if the parent already has (the race before the request)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the socket's end still stops us
        _LOG.debug("PR_SET_PDEATHSIG is not available")
    if os.getppid() != parent_pid:
        os._exit(0)


def configure_tensorflow(settings):
    """Threads and GPU memory, before TensorFlow initializes its devices."""
    import tensorflow as tf

    if settings.get("intra_op_threads"):
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op_threads"])
    if settings.get("inter_op_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter_op_threads"])
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    fraction = settings.get("gpu_memory_fraction") or 0.0
    if gpus and fraction > 0:
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.eager import context

        # TF2's eager context takes `GPUOptions.per_process_gpu_memory_fraction`
        # only through its base ConfigProto (the field TF Serving sets);
        # the growth set above is merged onto it. TF1 sessions of this
        # process share the same per-process GPU allocator.
        base = config_pb2.ConfigProto()
        base.gpu_options.per_process_gpu_memory_fraction = fraction
        context.context()._config = base
    tf.config.list_logical_devices()  # initializes the devices with the settings


class Worker:
    """Serves one loaded `ServableVersion` over a `Connection`."""

    def __init__(self, connection, servable, threads):
        from serving import worker_protocol as protocol

        self.protocol = protocol
        self.connection = connection
        self.servable = servable
        self.pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="call")
        self._contexts = {}
        self._lock = threading.Lock()

    def serve(self):
        """Answers calls until STOP (then drains) or the front end's end."""
        protocol = self.protocol
        while True:
            try:
                kind, call_id, payload = self.connection.receive()
            except (protocol.ConnectionClosed, OSError):
                os._exit(0)  # the front end is gone: nobody waits for answers
            if kind == protocol.CALL:
                header, body = protocol.CallHeader.unpack(payload)
                context = self._context(header)
                with self._lock:
                    self._contexts[call_id] = context
                self.pool.submit(self._answer, call_id, header, body, context)
            elif kind == protocol.CANCEL:
                with self._lock:
                    context = self._contexts.get(call_id)
                if context is not None:
                    context.cancel()
            elif kind == protocol.STOP:
                break
        self.pool.shutdown(wait=True)
        self.servable.close()

    def _context(self, header):
        from serving.handlers import RequestContext
        from serving.limits import MemoryBudget

        context = RequestContext.with_timeout("GRPC", header.timeout)
        # The front end reserved the request's memory; here only the
        # per-request limit is checked again for the outputs.
        context.max_request_bytes = header.max_request_bytes
        context.reservation = MemoryBudget(None).reserve(0)
        context.charge(header.decoded_bytes, 0)
        return context

    def _answer(self, call_id, header, body, context):
        from serving.errors import ServingError

        protocol = self.protocol
        try:
            request = _request_classes()[header.method].FromString(body)
            del body
            response = getattr(self.servable, header.method)(request, context)
            reply = (protocol.REPLY, response.SerializeToString())
        except ServingError as error:
            reply = (protocol.ERROR, protocol.pack_status(error))
        except Exception as error:  # noqa: BLE001 (answered as INTERNAL, as in-process)
            import grpc

            _LOG.exception("%s failed", header.method)
            reply = (
                protocol.ERROR,
                protocol.pack_status(ServingError(grpc.StatusCode.INTERNAL, str(error))),
            )
        finally:
            with self._lock:
                self._contexts.pop(call_id, None)
        try:
            self.connection.send(reply[0], call_id, reply[1])
        except OSError:
            os._exit(0)  # the front end is gone


@functools.cache
def _request_classes():
    """The request proto class of each method a worker answers."""
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        predict_pb2,
        regression_pb2,
    )

    return {
        "predict": predict_pb2.PredictRequest,
        "classify": classification_pb2.ClassificationRequest,
        "regress": regression_pb2.RegressionRequest,
        "multi_inference": inference_pb2.MultiInferenceRequest,
    }


def load(settings, name, version, path):
    """`(ServableVersion, warm-up records run)`; a failure raises
    `ServingError` with the reason the manager reports."""
    import grpc

    from serving.batching import BatchingOptions
    from serving.errors import ServingError
    from serving.servable import ServableVersion, ServingOptions

    batching = settings.get("batching")
    options = settings.get("options") or {}
    if "saved_model_tags" in options:
        options = dict(options, saved_model_tags=tuple(options["saved_model_tags"]))
    try:
        servable = ServableVersion(
            name,
            version,
            path,
            BatchingOptions(**batching) if batching else None,
            ServingOptions(**options),
        )
        iterations = settings.get("warmup_iterations", 1)
        warmed = servable.warm_up(iterations) if iterations > 0 else 0
    except ServingError as error:
        raise ServingError(error.code, f"warm-up request failed: {error.message}") from None
    except Exception as error:  # noqa: BLE001 (any load failure is reported)
        raise ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}") from None
    return servable, warmed


def signature_def_map(servable):
    """The loaded version's signature defs as a serialized `SignatureDefMap`."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(definition)
    return signature_map.SerializeToString()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the connected socket")
    parser.add_argument("--parent", type=int, required=True, help="the front end's pid")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--settings", default="{}", help="JSON (serving.worker_process)")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    settings = json.loads(args.settings)
    logging.basicConfig(
        level=settings.get("log_level", "INFO"),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s worker {args.name}:{args.version}: %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front end decides when we stop
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    from serving import worker_protocol as protocol
    from serving.errors import ServingError

    connection = protocol.Connection(socket.socket(fileno=args.fd))
    started = time.monotonic()
    try:
        configure_tensorflow(settings)
        servable, warmed = load(settings, args.name, args.version, args.path)
    except ServingError as error:
        connection.send(protocol.LOAD_FAILED, 0, protocol.pack_status(error))
        connection.close()
        return 1
    seconds = time.monotonic() - started
    facts = {"warmup_records": warmed, "load_seconds": seconds, "pid": os.getpid()}
    connection.send(protocol.READY, 0, protocol.pack_ready(facts, signature_def_map(servable)))
    Worker(connection, servable, settings.get("threads", 64)).serve()
    connection.close()
    # Everything is answered: skip the interpreter's slow teardown of
    # TensorFlow's threads and give the memory back at once.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
