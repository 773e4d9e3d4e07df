"""The messages between the front end and a model worker process
(`serving.worker`), and their framing on a UNIX stream socket.

Every message is one frame: a fixed header (kind, call id, payload length)
and the payload. A call carries the request proto's serialized bytes as
the front end has them (no tensor is decoded in the front end, and none is
copied on the way but by the kernel); the answer carries the response
proto's bytes, or a status code and message. Serializing a request and
moving it through the socket cost far less than a model call
(`benchmarks/serving_load.py` measures the whole boundary), so shared
memory would save nothing worth its bookkeeping.

Front end -> worker: `CALL` (call id, method, deadline, the request's
remaining memory allowance, request bytes), `CANCEL` (call id), `STOP`
(finish the calls in flight, then exit).
Worker -> front end: `READY` (once loaded and warmed up: the signature
defs and load facts), `LOAD_FAILED` (status and reason; the worker then
exits), `REPLY` (response bytes), `ERROR` (status and message).

>>> left, right = socket.socketpair()
>>> Connection(left).send(CANCEL, 7)
>>> Connection(right).receive()[:2]
(3, 7)
"""

import dataclasses
import json
import socket
import struct
import threading

import grpc

from serving.errors import ServingError

CALL, REPLY, ERROR, CANCEL, STOP, READY, LOAD_FAILED = range(1, 8)

# kind (1 byte), call id (8 bytes), payload length (8 bytes), little endian.
_HEADER = struct.Struct("<BQQ")
# method index, deadline in seconds from now (< 0: none), bytes the
# request has already decoded, per-request byte limit (0: none).
_CALL = struct.Struct("<Bdqq")
_STATUS = struct.Struct("<i")
_LENGTH = struct.Struct("<I")

# The servable methods a worker answers, in a fixed order (their index
# travels in the CALL frame).
METHODS = ("predict", "classify", "regress", "multi_inference")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ConnectionClosed(EOFError):
    """The other process closed its end (it exited, or was killed)."""


class Connection:
    """Frames over a connected stream socket. `send` may be called from
    several threads at once; `receive` from one thread only."""

    def __init__(self, sock):
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, kind, call_id=0, *parts):
        """Sends one frame whose payload is `parts` (bytes-like) joined,
        without joining them in memory."""
        length = sum(len(part) for part in parts)
        header = _HEADER.pack(kind, call_id, length)
        buffers = [memoryview(header)] + [memoryview(part).cast("B") for part in parts if part]
        with self._send_lock:
            while buffers:
                sent = self.sock.sendmsg(buffers)
                while buffers and sent >= len(buffers[0]):
                    sent -= len(buffers[0])
                    buffers.pop(0)
                if buffers and sent:
                    buffers[0] = buffers[0][sent:]

    def receive(self):
        """`(kind, call id, payload)`; raises `ConnectionClosed` at the end."""
        kind, call_id, length = _HEADER.unpack(self._read(_HEADER.size))
        return kind, call_id, self._read(length)

    def _read(self, length):
        buffer = bytearray(length)
        view = memoryview(buffer)
        got = 0
        while got < length:
            count = self.sock.recv_into(view[got:], min(length - got, 1 << 22))
            if count == 0:
                raise ConnectionClosed("the other end closed the connection")
            got += count
        return buffer

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@dataclasses.dataclass(frozen=True)
class CallHeader:
    """What a worker needs besides the request bytes."""

    method: str
    timeout: float = None  # seconds left until the deadline; None: no deadline
    decoded_bytes: int = 0  # bytes the request's inputs take once decoded
    max_request_bytes: int = None  # the per-request limit (None: none)

    def pack(self):
        return _CALL.pack(
            METHODS.index(self.method),
            -1.0 if self.timeout is None else max(self.timeout, 0.0),
            self.decoded_bytes,
            self.max_request_bytes or 0,
        )

    @classmethod
    def unpack(cls, payload):
        """`(CallHeader, request bytes as a memoryview)`."""
        method, timeout, decoded, limit = _CALL.unpack_from(payload)
        return (
            cls(METHODS[method], None if timeout < 0 else timeout, decoded, limit or None),
            memoryview(payload)[_CALL.size :],
        )


def pack_status(error):
    """The payload of an ERROR or LOAD_FAILED frame for a `ServingError`."""
    return _STATUS.pack(error.code.value[0]) + error.message.encode("utf-8", "replace")


def unpack_status(payload):
    """The `ServingError` of an ERROR or LOAD_FAILED payload."""
    (code,) = _STATUS.unpack_from(payload)
    message = bytes(payload[_STATUS.size :]).decode("utf-8", "replace")
    return ServingError(_CODES.get(code, grpc.StatusCode.UNKNOWN), message)


def pack_ready(facts, signature_defs):
    """The READY payload: `facts` (a JSON-able dict: warm-up records, load
    seconds, process id) and the serialized `SignatureDefMap`."""
    text = json.dumps(facts).encode("utf-8")
    return _LENGTH.pack(len(text)) + text + signature_defs


def unpack_ready(payload):
    """`(facts, serialized SignatureDefMap as bytes)` of a READY payload."""
    (length,) = _LENGTH.unpack_from(payload)
    start = _LENGTH.size
    return json.loads(bytes(payload[start : start + length])), bytes(payload[start + length :])


__all__ = [
    "CALL",
    "CANCEL",
    "ERROR",
    "LOAD_FAILED",
    "METHODS",
    "READY",
    "REPLY",
    "STOP",
    "CallHeader",
    "Connection",
    "ConnectionClosed",
    "pack_ready",
    "pack_status",
    "unpack_ready",
    "unpack_status",
]
