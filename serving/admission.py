"""Admission of model executions by deadline: at most `limit` calls of one
model run at once (the analogue of TF Serving's `num_batch_threads`, by
default one per CPU core), the others wait in a queue.

A waiting call is started only if it can still be answered: a call whose
deadline passes while it waits, or whose client cancels, is never started
(DEADLINE_EXCEEDED / CANCELLED, as it would be at the end); a call whose
time left is shorter than the fastest of the model's recent executions
waits without starting (it could not finish in time) and so ends the same
way at its deadline. Calls that can start go first come, first served. So a
burst of calls that expire in the queue costs the model nothing: the next
call runs as on an idle server.

>>> admission = Admission(limit=1)
>>> admission.run(None, lambda: "answer")
'answer'
"""

import collections
import os
import threading
import time

# How many recent execution times the "fastest recent" estimate uses.
RECENT_EXECUTIONS = 32


def default_limit():
    """One execution per CPU core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class _Ticket:
    __slots__ = ("context",)

    def __init__(self, context):
        self.context = context


class Admission:
    """Bounds the executions of one model running at once.

    Args:
        limit: executions at once (None or 0: no bound; the deadline rules
            still apply).
    """

    def __init__(self, limit=None):
        self.limit = int(limit) if limit else None
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = collections.deque()
        self._recent = collections.deque(maxlen=RECENT_EXECUTIONS)
        self.never_started = 0  # calls that ended in the queue

    @property
    def running(self):
        return self._running

    @property
    def waiting(self):
        return len(self._waiting)

    def fastest_recent(self):
        """Seconds of the fastest recent execution (None before the first)."""
        with self._cond:
            return min(self._recent) if self._recent else None

    def run(self, context, call):
        """`call()` once admitted; raises the context's DEADLINE_EXCEEDED or
        CANCELLED `ServingError` if it ends before it could start."""
        self._enter(context)
        started = time.monotonic()
        finished = False
        try:
            result = call()
            finished = True
            return result
        finally:
            with self._cond:
                self._running -= 1
                if finished:
                    self._recent.append(time.monotonic() - started)
                self._cond.notify_all()

    # ------------------------------------------------------------------
    def _enter(self, context):
        ticket = _Ticket(context)
        with self._cond:
            self._waiting.append(ticket)

        def wake():
            with self._cond:
                self._cond.notify_all()

        if context is not None:
            context.on_cancel(wake)
        try:
            with self._cond:
                while True:
                    if context is not None and context.done():
                        self._waiting.remove(ticket)
                        self.never_started += 1
                        self._cond.notify_all()
                        context.check()
                    if self._may_start(ticket):
                        self._waiting.remove(ticket)
                        self._running += 1
                        return
                    remaining = context.time_remaining() if context is not None else None
                    self._cond.wait(None if remaining is None else max(remaining, 0.0) + 1e-3)
        finally:
            if context is not None:
                context.remove_on_cancel(wake)

    def _may_start(self, ticket):
        """Whether `ticket` is the first waiting call that can still finish
        in time, and a slot is free."""
        if self.limit is not None and self._running >= self.limit:
            return False
        fastest = min(self._recent) if self._recent else 0.0
        for waiting in self._waiting:
            remaining = waiting.context.time_remaining() if waiting.context is not None else None
            if remaining is None or remaining >= fastest:
                return waiting is ticket
        return False


__all__ = ["Admission", "RECENT_EXECUTIONS", "default_limit"]
