"""Starting, calling, watching and stopping one model worker process
(`serving.worker`) from the front end.

`WorkerProcess.start()` starts `python -m serving.worker` for one version
and waits until it has loaded and warmed it up (READY), or says why it
could not (the worker's reason, or how it ended). `call()` sends a
request's serialized bytes and waits for the answer until the request's
deadline or cancellation; then the worker is told to cancel the call, and
if it has not answered `stuck_grace_seconds` after that, the worker is
killed (a call that ignores its deadline must not hold a model for good)
and `on_exit` reports it. A worker that ends for any reason (killed by a
signal, by the kernel's out-of-memory killer, a crash) fails its calls in
flight with UNAVAILABLE and `on_exit(worker, reason)` is called, so the
manager can load the version again. `stop()` lets the calls in flight
finish, then ends the worker.

Every worker is started from one long-lived thread: the kernel's
parent-death signal (`serving.worker`) follows the thread that started
the process, so a worker must not be started from a request or timer
thread that ends.
"""

import dataclasses
import itertools
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc

from serving import worker_protocol as protocol
from serving.errors import ServingError

_LOG = logging.getLogger("serving.worker_process")
# The folder holding the `serving` package: put on the worker's import path.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STUCK_GRACE_SECONDS = 10.0


def unavailable(message):
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """How every worker loads and runs its version.

    Args:
        batching: `serving.batching.BatchingOptions` or None (no batching).
        options: `ServingOptions` (request semantics), or None (defaults).
        warmup_iterations: times each warm-up record is replayed (0: no
            warm-up).
        intra_op_threads, inter_op_threads: TensorFlow's thread pools
            (0: TensorFlow's default).
        gpu_memory_fraction: TF Serving's `--per_process_gpu_memory_fraction`
            for each worker (0: TensorFlow's default; memory growth is on).
        threads: calls one worker serves at once (they meet in its batcher).
        stuck_grace_seconds: how long after a call's deadline the worker may
            take to give it up before it is killed and replaced.
        log_level: the worker's logging level.
    """

    batching: object = None
    options: object = None
    warmup_iterations: int = 1
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    gpu_memory_fraction: float = 0.0
    threads: int = 64
    stuck_grace_seconds: float = DEFAULT_STUCK_GRACE_SECONDS
    log_level: str = "INFO"

    def to_json(self):
        options = dataclasses.asdict(self.options) if self.options is not None else {}
        if "saved_model_tags" in options:
            options["saved_model_tags"] = list(options["saved_model_tags"])
        return json.dumps(
            {
                "batching": dataclasses.asdict(self.batching) if self.batching else None,
                "options": options,
                "warmup_iterations": self.warmup_iterations,
                "intra_op_threads": self.intra_op_threads,
                "inter_op_threads": self.inter_op_threads,
                "gpu_memory_fraction": self.gpu_memory_fraction,
                "threads": self.threads,
                "log_level": self.log_level,
            }
        )


def exit_reason(returncode):
    """How a worker ended, in words."""
    if returncode is None:
        return "the worker process closed its connection"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        extra = " (the kernel's out-of-memory killer sends it too)" if name == "SIGKILL" else ""
        return f"the worker process was killed by {name}{extra}"
    return f"the worker process exited with status {returncode}"


class _Spawner:
    """One long-lived daemon thread that starts every worker process."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="worker-spawner", daemon=True).start()

    def _loop(self):
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as error:  # noqa: BLE001 (handed to the caller)
                future.set_exception(error)

    def run(self, job):
        future = futures.Future()
        self._jobs.put((job, future))
        return future.result()


_spawner = None
_spawner_lock = threading.Lock()


def _spawn(argv, pass_fds):
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
    return _spawner.run(
        lambda: subprocess.Popen(argv, pass_fds=pass_fds, env=env, stdin=subprocess.DEVNULL)
    )


class _Pending:
    __slots__ = ("done", "kind", "payload", "abandoned")

    def __init__(self):
        self.done = threading.Event()
        self.kind = self.payload = None
        self.abandoned = False


class WorkerProcess:
    """One worker process serving version `version` of model `name`.

    Args:
        name, version, path: the version to load.
        settings: `WorkerSettings`.
        on_exit: `on_exit(worker, reason)` when the worker ends without
            being asked to (crash, signal, stuck call).
    """

    _ids = itertools.count(1)

    def __init__(self, name, version, path, settings=None, on_exit=None):
        self.name, self.version, self.path = name, int(version), path
        self.settings = settings or WorkerSettings()
        self.on_exit = on_exit
        self.process = None
        self.facts = {}
        self.exit_reason = None  # set once the worker has ended
        self._connection = None
        self._lock = threading.Condition()
        self._pending = {}
        self._stopping = False
        self._kill_reason = None
        self._reader = None
        self._finished = False

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    @property
    def alive(self):
        return self.process is not None and self.exit_reason is None

    @property
    def in_flight(self):
        with self._lock:
            return len(self._pending)

    # -- life cycle --------------------------------------------------------
    def start(self):
        """Starts the worker and waits until its version is loaded and warmed
        up; returns the worker's facts (`warmup_records`, `load_seconds`,
        `pid`) and its serialized `SignatureDefMap`. Raises `ServingError`
        with the reason when the load fails."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            sys.executable,
            "-m",
            "serving.worker",
            f"--fd={theirs.fileno()}",
            f"--parent={os.getpid()}",
            f"--name={self.name}",
            f"--version={self.version}",
            f"--path={self.path}",
            f"--settings={self.settings.to_json()}",
        ]
        try:
            self.process = _spawn(argv, (theirs.fileno(),))
        finally:
            theirs.close()
        self._connection = protocol.Connection(ours)
        try:
            kind, _, payload = self._connection.receive()
        except (protocol.ConnectionClosed, OSError):
            self._ended()
            raise ServingError(
                grpc.StatusCode.UNKNOWN, f"{self.exit_reason} while loading the version"
            ) from None
        if kind == protocol.LOAD_FAILED:
            self._ended()
            raise protocol.unpack_status(payload)
        if kind != protocol.READY:
            self.kill("it broke the protocol while loading")
            self._ended()
            raise ServingError(grpc.StatusCode.INTERNAL, f"worker sent frame {kind} while loading")
        self.facts, signature_defs = protocol.unpack_ready(payload)
        self._reader = threading.Thread(
            target=self._read, name=f"worker-{self.name}-{self.version}", daemon=True
        )
        self._reader.start()
        return self.facts, signature_defs

    def stop(self, timeout=None):
        """Lets the calls in flight finish (up to `timeout` seconds, None:
        no bound), then asks the worker to exit; kills it if it has not
        exited 5 s later. Blocks until it has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending and self.exit_reason is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._lock.wait(remaining)
            self._stopping = True
            if self.exit_reason is None and self._connection is not None:
                try:
                    self._connection.send(protocol.STOP)
                except OSError:
                    pass
        if self.process is None:
            return
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            _LOG.warning("worker %s:%d did not stop; killing it", self.name, self.version)
            self.process.kill()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()
        else:
            self._ended()

    def kill(self, why):
        """Kills the worker now (its calls fail with UNAVAILABLE, and
        `on_exit` is told `why`)."""
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = why
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    # -- calls -------------------------------------------------------------
    def call(self, method, request_bytes, context=None, decoded_bytes=0, max_request_bytes=None):
        """Sends one call and returns the response bytes; raises the call's
        `ServingError` (UNAVAILABLE if the worker ends first; the context's
        DEADLINE_EXCEEDED / CANCELLED at its deadline or cancellation)."""
        call_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            if self.exit_reason is not None or self._stopping:
                raise unavailable(
                    f"Servable {self.name} version {self.version} is being unloaded"
                    if self._stopping
                    else f"{self.exit_reason}; the version is being loaded again"
                )
            self._pending[call_id] = pending
        timeout = context.time_remaining() if context is not None else None
        header = protocol.CallHeader(method, timeout, decoded_bytes, max_request_bytes)
        try:
            self._connection.send(protocol.CALL, call_id, header.pack(), request_bytes)
        except OSError:
            pass  # the reader sees the end and fails the call
        if context is None:
            pending.done.wait()
        else:
            context.on_cancel(pending.done.set)
            try:
                while not pending.done.is_set():
                    remaining = context.time_remaining()
                    if remaining is not None and remaining <= 0:
                        break
                    pending.done.wait(remaining)
            finally:
                context.remove_on_cancel(pending.done.set)
            if pending.kind is None:  # deadline passed or cancelled first
                self._abandon(call_id, pending)
                context.check()
                raise ServingError(grpc.StatusCode.CANCELLED, "Request cancelled")
        if pending.kind == protocol.REPLY:
            return pending.payload
        raise protocol.unpack_status(pending.payload)

    def _abandon(self, call_id, pending):
        with self._lock:
            if pending.kind is not None or call_id not in self._pending:
                return
            pending.abandoned = True
        try:
            self._connection.send(protocol.CANCEL, call_id)
        except OSError:
            return
        grace = self.settings.stuck_grace_seconds
        timer = threading.Timer(grace, self._check_stuck, (call_id, grace))
        timer.daemon = True
        timer.start()

    def _check_stuck(self, call_id, grace):
        with self._lock:
            stuck = call_id in self._pending and self.exit_reason is None
        if stuck:
            _LOG.error(
                "worker %s:%d: a call still runs %.1f s after its deadline; replacing the worker",
                self.name,
                self.version,
                grace,
            )
            self.kill(f"a call did not return within {grace:g} s of its deadline")

    # -- the answers ---------------------------------------------------------
    def _read(self):
        while True:
            try:
                kind, call_id, payload = self._connection.receive()
            except (protocol.ConnectionClosed, OSError):
                break
            with self._lock:
                pending = self._pending.pop(call_id, None)
                self._lock.notify_all()
            if pending is not None:
                pending.kind, pending.payload = kind, payload
                pending.done.set()
        expected = self._ended()
        if not expected and self.on_exit is not None:
            try:
                self.on_exit(self, self.exit_reason)
            except Exception:  # noqa: BLE001 (the manager logs its own failures)
                _LOG.exception("on_exit of worker %s:%d failed", self.name, self.version)

    def _ended(self):
        """Collects the exit status, fails the calls in flight; returns
        whether the end was asked for (`stop`)."""
        returncode = self.process.wait() if self.process is not None else None
        with self._lock:
            stopping = self._stopping
            if self._finished:
                return stopping
            self._finished = True
            if self.exit_reason is None:
                reason = exit_reason(returncode)
                if self._kill_reason is not None:
                    reason = f"the worker process was replaced: {self._kill_reason}"
                self.exit_reason = reason
            pending, self._pending = self._pending, {}
            self._lock.notify_all()
        failure = protocol.pack_status(
            unavailable(f"{self.exit_reason}; model {self.name} version {self.version}")
        )
        for entry in pending.values():
            entry.kind, entry.payload = protocol.ERROR, failure
            entry.done.set()
        if self._connection is not None:
            self._connection.close()
        if not stopping:
            _LOG.error("worker %s:%d ended: %s", self.name, self.version, self.exit_reason)
        return stopping


__all__ = [
    "DEFAULT_STUCK_GRACE_SECONDS",
    "WorkerProcess",
    "WorkerSettings",
    "exit_reason",
    "unavailable",
]
