"""How both front ends hand a request to the shared handlers
(`serving.handlers`): the one place where a request gets its deadline, its
memory limits and its thread, and where "run until the deadline, then
cancel" is done. The gRPC front end (`serving.grpc_front`) and the REST
one (`serving.rest`) only turn their wire format into handler calls.

- `open`: the request's `RequestContext`: its deadline (gRPC's, or
  `--rest_api_timeout_in_ms`), the per-request limit (`--max_request_bytes`)
  and its bytes as received reserved in the server's memory budget
  (`--max_inflight_bytes`; RESOURCE_EXHAUSTED when it is full) before they
  are parsed.
- `submit`: `job(context)` in the front end's bounded thread pool
  (`--grpc_max_threads`, `--rest_api_num_threads`); dropped unstarted if
  the request expired or was cancelled while it waited; its reservation
  released when the job ends (an abandoned job keeps its bytes until then).
- `result` (a thread waits, REST) / `result_async` (the event loop waits,
  gRPC): the job's answer, or DEADLINE_EXCEEDED at the deadline: the
  request is then cancelled (`RequestContext.cancel`: dropped if it has not
  started, its TF2 call cancelled if it has, `serving.execution`) and
  answered at once, so no thread of the front end waits past a deadline.

>>> dispatcher = Dispatcher(handlers, "REST", threads=8)            # doctest: +SKIP
>>> context = dispatcher.open(30.0, len(body), "JSON body")          # doctest: +SKIP
>>> answer = dispatcher.result(context, dispatcher.submit(context, job))  # doctest: +SKIP
"""

import asyncio
import concurrent.futures

import grpc

from serving.errors import ServingError
from serving.handlers import RequestContext


class Dispatcher:
    """A front end's way to the shared handlers.

    Args:
        handlers: the shared `serving.handlers.Handlers` (their limits).
        entrypoint: "GRPC" or "REST" (TF Serving's metric label).
        threads: the front end's request threads.
        name: prefix of those threads' names.
    """

    def __init__(self, handlers, entrypoint, threads, name=None):
        self.handlers, self.entrypoint = handlers, entrypoint
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=name or entrypoint.lower()
        )

    def open(self, timeout_seconds=None, message_bytes=0, what="request message"):
        """A new request's context: deadline in `timeout_seconds` (None: no
        deadline), limits, and `message_bytes` reserved as `what`."""
        context = RequestContext.with_timeout(self.entrypoint, timeout_seconds)
        self.handlers.limit(context, message_bytes, what)
        return context

    def submit(self, context, job):
        """Runs `job(context)` in the thread pool; returns its future."""

        def run():
            context.check()  # expired or cancelled while queued: dropped
            return job(context)

        future = self.executor.submit(run)
        future.add_done_callback(lambda _: context.release())
        return future

    def result(self, context, future):
        """The job's answer, waited for until the request's deadline."""
        try:
            return future.result(context.time_remaining())
        except concurrent.futures.TimeoutError:
            raise _expired(context, future) from None

    async def result_async(self, context, future):
        """`result` for an event loop."""
        remaining = context.time_remaining()
        waiting = asyncio.wrap_future(future)
        try:
            if remaining is None:
                return await waiting
            return await asyncio.wait_for(waiting, max(remaining, 0.0))
        except TimeoutError:
            raise _expired(context, future) from None

    def close(self):
        """Drops queued jobs; running ones finish in their threads."""
        self.executor.shutdown(wait=False, cancel_futures=True)


def _expired(context, future):
    """The deadline passed before the answer: the request is abandoned."""
    context.cancel()
    future.cancel()
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")


__all__ = ["Dispatcher"]
