"""Memory limits of the server: what one request may make the server
allocate, and how much all requests in flight may hold together.

Every request's cost is computed from what it *declares* (element count x
dtype size of each tensor, the bytes of its examples, the length of a REST
body) before anything is decoded or allocated (`serving.tensors`):

- `max_request_bytes` (`--max_request_bytes`): the decoded size of one
  request's tensors (its inputs, its examples, its outputs). A request
  above it fails with RESOURCE_EXHAUSTED before any of it is decoded.
- `max_inflight_bytes` (`--max_inflight_bytes`): the server-wide budget.
  Each request reserves its cost (the values as received, the decoded
  array and TensorFlow's copy of it; for REST the worst case of parsing
  its JSON) for as long as it runs; a request that does not fit while
  others hold the budget fails at once with RESOURCE_EXHAUSTED (the client
  may retry), so the memory of requests in flight never exceeds the
  budget, whatever clients send.

>>> budget = MemoryBudget(100)
>>> with budget.reserve(60, "first"):
...     budget.used
60
>>> budget.used
0
"""

import dataclasses
import threading

import grpc

from serving.defaults import DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_MAX_REQUEST_BYTES
from serving.errors import ServingError
from serving.tensors import STRING_ELEMENT_OVERHEAD, tensor_size

# Each decoded tensor exists twice while a model runs (the NumPy array and
# TensorFlow's copy), and a third time when it is concatenated into a batch.
DECODED_COPIES = 3
# Worst case of parsing a REST body (`serving.json_tensor.loads`: orjson,
# else `json`) in bytes per byte of JSON at the peak: the Python objects,
# and orjson's parse tree while it builds them. Measured on CPython 3.11
# (tests/test_serving_limits.py): `[{},{},...]` 36x with orjson, 25x with
# `json`; `[[],[],...]` 33x / 22x; `[1e1,1e1,...]` 20x / 9x.
JSON_BYTES_PER_BODY_BYTE = 38


def _resource_exhausted(message):
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


class Reservation:
    """Bytes held in a `MemoryBudget` until `release()` (or the end of a
    `with` block); more can be added with `add`."""

    def __init__(self, budget):
        self._budget, self.nbytes = budget, 0
        self._lock = threading.Lock()

    def add(self, nbytes, what="request"):
        nbytes = int(nbytes)
        if nbytes <= 0:
            return
        self._budget._take(nbytes, what)
        with self._lock:
            self.nbytes += nbytes

    def release(self):
        with self._lock:
            nbytes, self.nbytes = self.nbytes, 0
        if nbytes:
            self._budget._give(nbytes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class MemoryBudget:
    """A server-wide byte budget shared by the requests in flight.

    Args:
        limit: bytes (None or 0: unlimited, only counted).
    """

    def __init__(self, limit=None):
        self.limit = int(limit) if limit else None
        self._lock = threading.Lock()
        self.used = 0
        self.peak = 0
        self.refused = 0

    def reserve(self, nbytes=0, what="request"):
        """A `Reservation` of `nbytes`; RESOURCE_EXHAUSTED if they do not
        fit now."""
        reservation = Reservation(self)
        reservation.add(nbytes, what)
        return reservation

    def _take(self, nbytes, what):
        with self._lock:
            if self.limit is not None and self.used + nbytes > self.limit:
                self.refused += 1
                free = self.limit - self.used
                raise _resource_exhausted(
                    f"Server memory budget exhausted: this {what} needs "
                    f"{nbytes} bytes, {max(free, 0)} of the "
                    f"{self.limit} bytes for requests in flight are free "
                    "(--max_inflight_bytes); retry later"
                )
            self.used += nbytes
            self.peak = max(self.peak, self.used)

    def _give(self, nbytes):
        with self._lock:
            self.used -= nbytes


def check_request_bytes(nbytes, limit, what="request tensors"):
    """RESOURCE_EXHAUSTED when `nbytes` (decoded size) is above the
    per-request `limit` (None: no limit)."""
    if limit and nbytes > limit:
        raise _resource_exhausted(
            f"The {what} would take {nbytes} bytes once decoded, more than "
            f"the per-request limit of {limit} bytes (--max_request_bytes)"
        )


@dataclasses.dataclass
class RequestLimits:
    """The per-request limit and the server-wide budget (see the module).

    Args:
        max_request_bytes: decoded bytes of one request's tensors (None: no
            limit).
        budget: the `MemoryBudget` of the requests in flight.
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    budget: MemoryBudget = dataclasses.field(
        default_factory=lambda: MemoryBudget(DEFAULT_MAX_INFLIGHT_BYTES)
    )

    @classmethod
    def unlimited(cls):
        return cls(None, MemoryBudget(None))


def tensors_cost(tensors):
    """`(decoded bytes, bytes to reserve)` of a map of `TensorProto`s,
    checking each (`serving.tensors.tensor_size`) without decoding it. The
    reservation counts the values as received twice (the parsed proto and
    one temporary read) and the decoded tensor `DECODED_COPIES` times."""
    decoded = reserve = 0
    for name, proto in tensors.items():
        size = tensor_size(proto, name)
        decoded += size.decoded_bytes
        reserve += 2 * size.stored_bytes + DECODED_COPIES * size.decoded_bytes
    return decoded, reserve


def examples_cost(model_input):
    """`(decoded bytes, bytes to reserve)` of an `Input` (Classify, Regress,
    MultiInference): each example is serialized, with the context's bytes
    before it for `example_list_with_context` (so one large context times
    many examples is counted in full)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = model_input.example_list.examples
        context = 0
    elif kind == "example_list_with_context":
        examples = model_input.example_list_with_context.examples
        context = model_input.example_list_with_context.context.ByteSize()
    else:
        return 0, 0
    count = len(examples)
    decoded = sum(e.ByteSize() for e in examples) + count * (context + STRING_ELEMENT_OVERHEAD)
    return decoded, DECODED_COPIES * decoded


def arrays_cost(arrays):
    """Decoded bytes of a dict of NumPy arrays (a model's outputs)."""
    total = 0
    for value in arrays.values():
        if value.dtype.kind == "O":
            total += value.size * STRING_ELEMENT_OVERHEAD + sum(
                len(v) if isinstance(v, (bytes, str)) else 0 for v in value.ravel()
            )
        else:
            total += value.nbytes
    return total


__all__ = [
    "RequestLimits",
    "arrays_cost",
    "examples_cost",
    "tensors_cost",
    "DECODED_COPIES",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "JSON_BYTES_PER_BODY_BYTE",
    "MemoryBudget",
    "Reservation",
    "check_request_bytes",
]
