"""Server-side batching: concurrent requests to one signature run as one call.

The same knobs as TF Serving's batching (`--enable_batching
--batching_parameters_file`): `max_batch_size`, `batch_timeout_micros`,
`max_enqueued_batches`, `num_batch_threads`. A worker takes the oldest queued
request and adds every queued request with the same per-example input
shapes and dtypes until `max_batch_size` rows, waiting at most
`batch_timeout_micros` for more (`0`: take what is queued now, so a lone
request never waits, and requests that arrive while a batch runs form the
next one). Outputs are split back by rows. If a batch fails because one
request's content is bad (INVALID_ARGUMENT and the like), its requests are
re-run one by one so only the bad one fails.

Deadlines and cancellation (each request's `RequestContext`): a request
whose deadline passes or whose client goes away while it waits is dropped
from the queue and from the batch being formed, never run; its caller gets
DEADLINE_EXCEEDED (or CANCELLED) at its deadline even while the batch
runs. A batch runs under the latest deadline of its requests and is
cancelled when all of them are (`serving.execution`).

Example:

>>> import numpy as np
>>> batcher = Batcher(lambda x: {"y": x["x"] * 2}, BatchingOptions(4))
>>> batcher.run({"x": np.ones((1, 3))})["y"].tolist()
[[2.0, 2.0, 2.0]]
>>> batcher.close()
"""

import collections
import dataclasses
import logging
import re
import threading
import time

import grpc
import numpy as np

from serving.defaults import usable_cpus
from serving.errors import ServingError

_LOG = logging.getLogger(__name__)

# Errors caused by one request's content: retry the batch's requests alone.
_PER_REQUEST_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
)


QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Batching settings (TF Serving's `BatchingParameters` names).

    Args:
        max_batch_size: most rows (examples) in one batched call; requests
            with more rows run alone, unbatched.
        batch_timeout_micros: how long a batch waits to fill (0: no wait).
        max_enqueued_batches: queue bound, in batches of `max_batch_size`
            rows; beyond it requests fail with UNAVAILABLE.
        num_batch_threads: batches run in parallel per signature.
    """

    max_batch_size: int
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2

    def __post_init__(self):
        for field, minimum in (
            ("max_batch_size", 1),
            ("batch_timeout_micros", 0),
            ("max_enqueued_batches", 1),
            ("num_batch_threads", 1),
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"Invalid value for argument `{field}`. Expected an int "
                    f">= {minimum}. Received: {field}={value!r}"
                )

    @classmethod
    def tf_serving_defaults(cls):
        """TF Serving's batching when `--enable_batching` has no parameters
        file (its batch scheduler's defaults)."""
        return cls(
            max_batch_size=1000,
            batch_timeout_micros=0,
            max_enqueued_batches=10,
            num_batch_threads=usable_cpus(),
        )

    @classmethod
    def from_text(cls, text, path="batching parameters", **overrides):
        """Parses TF Serving's `batching_parameters.txt` text format, e.g.
        `max_batch_size { value: 32 }` (one field per line); `overrides`
        (not None) win over the file; fields the file leaves out take TF
        Serving's defaults (`tf_serving_defaults`)."""
        values = {}
        known = {field.name for field in dataclasses.fields(cls)}
        ignored = {
            "thread_pool_name",
            "allowed_batch_sizes",
            "pad_variable_length_inputs",
            "enable_large_batch_splitting",
            "max_execution_batch_size",
        }
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = re.fullmatch(r"(\w+)\s*\{\s*value\s*:\s*(\"?[\w.-]*\"?)\s*\}", line)
            if not match:
                raise ValueError(
                    f"{path}, line {number}: expected `name {{ value: N }}` "
                    f"(TF Serving's BatchingParameters text format). "
                    f"Received: {line!r}"
                )
            name, value = match.groups()
            if name in ignored:
                _LOG.warning("%s, line %d: %s is not used by this server", path, number, name)
                continue
            if name not in known:
                raise ValueError(
                    f"{path}, line {number}: unknown batching parameter "
                    f"{name!r}. Expected one of: {', '.join(sorted(known))}."
                )
            try:
                values[name] = int(value)
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: {name} must be an integer. Received: {value!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        defaults = dataclasses.asdict(cls.tf_serving_defaults())
        return cls(**{**defaults, **values})


class _Task:
    __slots__ = ("inputs", "rows", "key", "done", "outputs", "error", "context")

    def __init__(self, inputs, rows, key, context=None):
        self.inputs, self.rows, self.key = inputs, rows, key
        self.context = context
        self.done = threading.Event()
        self.outputs = None
        self.error = None

    def abandoned(self):
        return self.context is not None and self.context.done()


class _GroupContext:
    """The context of a batch: the latest deadline of its requests;
    cancelled once every one of them is."""

    def __init__(self, contexts):
        self._contexts = list(contexts)
        self._lock = threading.Lock()
        self._hooks = {}

    def time_remaining(self):
        remaining = [c.time_remaining() for c in self._contexts]
        return None if any(r is None for r in remaining) else max(remaining)

    def done(self):
        return all(c.done() for c in self._contexts)

    def check(self):
        if self.done():
            self._contexts[-1].check()

    def on_cancel(self, callback):
        state = {"left": len(self._contexts)}

        def one_cancelled():
            with self._lock:
                state["left"] -= 1
                last = state["left"] == 0
            if last:
                callback()

        self._hooks[callback] = one_cancelled
        for context in self._contexts:
            context.on_cancel(one_cancelled)

    def remove_on_cancel(self, callback):
        hook = self._hooks.pop(callback, None)
        if hook is not None:
            for context in self._contexts:
                context.remove_on_cancel(hook)


def _wait(task):
    """Waits for a queued task; at its deadline (or when its request is
    cancelled) it is abandoned and the caller gets the reason."""
    context = task.context
    if context is None:
        task.done.wait()
    else:
        context.on_cancel(task.done.set)
        try:
            while not task.done.is_set():
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    break
                if context.cancelled:
                    break
                task.done.wait(remaining)
        finally:
            context.remove_on_cancel(task.done.set)
        if task.outputs is None and task.error is None:
            context.cancel()  # the batch worker drops it
            context.check()
            raise ServingError(grpc.StatusCode.CANCELLED, "Request cancelled")
    if task.error is not None:
        raise task.error
    return task.outputs


class Batcher:
    """Batches calls of `run(inputs) -> outputs` (dicts of NumPy arrays
    whose first axis is the batch) across threads."""

    def __init__(self, run, options, name="batcher"):
        self._run = run
        self._options = options
        self._capacity = options.max_enqueued_batches * options.max_batch_size
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._queued_rows = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, inputs, context=None):
        """Runs `inputs` (possibly batched with other callers); blocks until
        done, or until `context`'s deadline or cancellation."""
        if not inputs or any(np.ndim(value) == 0 for value in inputs.values()):
            return self._run_now(inputs, context)
        rows = {len(value) for value in inputs.values()}
        if len(rows) != 1:
            return self._run_now(inputs, context)  # the model reports it
        rows = rows.pop()
        if rows == 0 or rows > self._options.max_batch_size:
            return self._run_now(inputs, context)
        key = tuple(
            sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items())
        )
        task = _Task(inputs, rows, key, context)
        with self._cond:
            if self._closed:
                task = None
            elif self._queued_rows + rows > self._capacity:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL_MESSAGE)
            else:
                self._queue.append(task)
                self._queued_rows += rows
                self._cond.notify()
        if task is None:  # closed (its version is being unloaded): run alone
            return self._run_now(inputs, context)
        return _wait(task)

    def _run_now(self, inputs, context):
        return self._run(inputs, context) if context is not None else self._run(inputs)

    def close(self):
        """Stops the workers once the queued requests are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def join(self, timeout=None):
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------
    def _work(self):
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._collect()
            self._execute(batch)

    def _collect(self):
        first = self._queue.popleft()
        self._queued_rows -= first.rows
        while first.abandoned():  # dropped before it runs
            if not self._queue:
                return []
            first = self._queue.popleft()
            self._queued_rows -= first.rows
        self._queued_rows += first.rows
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self._options.batch_timeout_micros / 1e6
        limit = self._options.max_batch_size
        while True:
            kept = collections.deque()
            while self._queue:
                task = self._queue.popleft()
                if task.abandoned():  # expired or cancelled while queued
                    self._queued_rows -= task.rows
                    continue
                if task.key == first.key and rows + task.rows <= limit:
                    batch.append(task)
                    rows += task.rows
                else:
                    kept.append(task)
            self._queue = kept
            remaining = deadline - time.monotonic()
            if rows >= limit or remaining <= 0 or self._closed:
                break
            self._cond.wait(remaining)
        self._queued_rows -= rows
        return batch

    def _execute(self, batch):
        batch = [task for task in batch if not task.abandoned()]
        if not batch:
            return
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        names = list(batch[0].inputs)
        inputs = {name: np.concatenate([t.inputs[name] for t in batch]) for name in names}
        contexts = [task.context for task in batch]
        group = None if any(c is None for c in contexts) else _GroupContext(contexts)
        try:
            outputs = self._run_now(inputs, group)
        except ServingError as error:
            if error.code in _PER_REQUEST_CODES:
                for task in batch:
                    self._run_alone(task)
                return
            self._fail(batch, error)
            return
        except Exception as error:  # noqa: BLE001 (reported to every caller)
            _LOG.exception("batched call failed")
            self._fail(
                batch, ServingError(grpc.StatusCode.INTERNAL, f"batched call failed: {error}")
            )
            return
        total = sum(task.rows for task in batch)
        _LOG.debug("ran a batch of %d requests (%d rows)", len(batch), total)
        bad = [
            name for name, value in outputs.items() if np.ndim(value) == 0 or len(value) != total
        ]
        if bad:
            self._fail(
                batch,
                ServingError(
                    grpc.StatusCode.INTERNAL,
                    f"outputs {bad} are not batch-major ({total} rows expected); "
                    "this signature cannot be batched",
                ),
            )
            return
        start = 0
        for task in batch:
            stop = start + task.rows
            task.outputs = {name: value[start:stop] for name, value in outputs.items()}
            start = stop
            task.done.set()

    def _run_alone(self, task):
        if task.abandoned():
            return
        try:
            task.outputs = self._run_now(task.inputs, task.context)
        except ServingError as error:
            task.error = error
        except Exception as error:  # noqa: BLE001 (reported to the caller)
            _LOG.exception("call failed")
            task.error = ServingError(grpc.StatusCode.INTERNAL, str(error))
        task.done.set()

    @staticmethod
    def _fail(batch, error):
        for task in batch:
            task.error = error
            task.done.set()


__all__ = ["Batcher", "BatchingOptions", "QUEUE_FULL_MESSAGE"]
