"""Running a model call under a request's deadline and cancellation.

What TF Serving does: the gRPC deadline goes into `RunOptions.timeout_in_ms`
of the `Session::Run`. Here:

- TF1 SavedModels run in a `tf.compat.v1.Session` exactly like that
  (`RunOptions(timeout_in_ms=...)`; TensorFlow cancels the step at the
  deadline and the call fails with DEADLINE_EXCEEDED).
- TF2 functions take no timeout. Each call runs under its own TensorFlow
  `CancellationManager`, cancelled when the request's deadline passes or
  its client cancels: TensorFlow then stops the function at its next
  cancellable point (a `tf.while_loop` iteration, a queue or dataset op,
  a collective), so loops and blocking ops are interrupted. A straight run
  of kernels (a convolution stack) is not: it runs to its end, but nobody
  waits for it — the request was already answered DEADLINE_EXCEEDED (or
  CANCELLED) by the front end — and its result is dropped.
- Everywhere: a request whose deadline has passed or whose client went
  away is dropped before its model call starts (also while it waits in a
  forming batch, `serving.batching`).

TensorFlow keeps the active cancellation manager in one process-wide
variable (`tensorflow.python.eager.cancellation`), which would let
concurrent calls cancel each other; `install()` makes it per thread.
"""

import logging
import threading

_LOG = logging.getLogger(__name__)
_local = threading.local()
_installed = None  # None: not tried; True/False: whether the hook is in


def install():
    """Makes TensorFlow's active eager cancellation manager per thread (once).
    Returns whether cancellable TF2 calls are available."""
    global _installed
    if _installed is not None:
        return _installed
    try:
        from tensorflow.python.eager import cancellation

        original = cancellation.context
        manager_class = cancellation.CancellationManager

        def per_thread_context():
            manager = getattr(_local, "manager", None)
            return manager if manager is not None else original()

        cancellation.context = per_thread_context
        _installed = True
        _install_state["class"] = manager_class
    except (ImportError, AttributeError) as error:  # another TensorFlow
        _LOG.warning(
            "TF2 model calls cannot be cancelled (%s); expired "
            "requests are still dropped before they run",
            error,
        )
        _installed = False
    return _installed


_install_state = {}


def call_cancellable(function, context, *args, **kwargs):
    """`function(*args, **kwargs)` under a TensorFlow cancellation manager
    that `context.cancel()` (deadline passed, client gone) starts; without
    a context, a plain call."""
    if context is None or not install():
        return function(*args, **kwargs)
    manager = _install_state["class"]()
    context.on_cancel(manager.start_cancel)
    previous = getattr(_local, "manager", None)
    _local.manager = manager
    try:
        return function(*args, **kwargs)
    finally:
        _local.manager = previous
        context.remove_on_cancel(manager.start_cancel)


__all__ = ["call_cancellable", "install"]
