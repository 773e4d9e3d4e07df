"""Parsing REST request bodies: orjson where it can, `json` for the rest
(see `loads`), with Python's garbage collector paused meanwhile. The
memory a parse may take at its peak is bounded per body byte by
`serving.limits.JSON_BYTES_PER_BODY_BYTE` (tests/test_serving_limits.py).

>>> loads(b'{"instances": [[1, 2], [3, NaN]]}')["instances"][0]
[1, 2]
"""

import gc
import json
import threading

try:  # the serve extra installs it; without it, `json` parses every body
    import orjson
except ImportError:
    orjson = None


class _CollectorPause:
    """Pauses Python's cyclic garbage collector while at least one thread is
    inside (and only if it was on). Parsing a clip's nested lists makes tens
    of thousands of lists and no cycle; with the collector on, they set off
    collections that walk every live object of the server (a loaded model:
    over 100,000) about once per request, several times the parse itself."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._resume = False

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._inside += 1

    def __exit__(self, *exc):
        with self._lock:
            self._inside -= 1
            if self._inside == 0 and self._resume:
                gc.enable()


_collector_paused = _CollectorPause()


def loads(body):
    """A JSON body as Python values, the same as `json.loads` gives: orjson
    (a few times faster on a clip's nested lists) where it reads the body
    the same way, `json` otherwise: NaN, Infinity and numbers beyond the
    double range (TF Serving accepts them, orjson refuses them), integers
    outside 64 bits (orjson would read them as floats: such bodies do not
    reach it), UTF-16/32, and a body that is not JSON (its error worded as
    TF Serving words it by `serving.json_tensor.parse_json`). The garbage
    collector is paused meanwhile (`_CollectorPause`)."""
    with _collector_paused:
        if orjson is not None and not _may_hold_a_long_integer(body):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        return json.loads(body)


# orjson reads an integer outside [-2**63, 2**64) as a float, `json` as an
# int: bodies that may hold one (a run of 19 or more digits after anything
# but a decimal point) go to `json`. The body's bytes mapped: digits to "0",
# "-" kept, ".", "e", "E", "+" to "." (a fraction or exponent), the rest to
# " ".
def _classes():
    table = bytearray(b" " * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    for mark in b".eE+":
        table[mark] = ord(".")
    table[ord("-")] = ord("-")
    return bytes(table)


_CLASSES = _classes()
_LONG_RUN = b"0" * 19


def _may_hold_a_long_integer(body):
    if not isinstance(body, (bytes, bytearray)):
        return True
    marks = b" " + body.translate(_CLASSES)
    return b" " + _LONG_RUN in marks or b"-" + _LONG_RUN in marks


__all__ = ["loads"]
