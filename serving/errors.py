"""`ServingError`: a failed request's gRPC status code and message."""

import grpc

# Status code number -> `grpc.StatusCode` (TensorFlow's canonical error codes
# are gRPC's: same numbers, same names; `Status.error_code` holds them).
STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# TF Serving's ToGRPCStatus: longer messages are cut and marked.
MESSAGE_LIMIT = 1024
TRUNCATED = "...TRUNCATED"


class ServingError(Exception):
    """A request failure to answer with `code` (a `grpc.StatusCode`).

    >>> error = ServingError(grpc.StatusCode.NOT_FOUND, "no such model")
    >>> error.code.name, str(error)
    ('NOT_FOUND', 'no such model')
    """

    def __init__(self, code, message):
        message = limit_message(message)
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_tf_error(cls, error):
        """The `ServingError` for a `tf.errors.OpError` raised by a model:
        the same code, the op's message without the graph trace."""
        code = STATUS_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
        text = (error.message or str(error)).split("\n\t [[")[0]
        lines = [line.strip() for line in text.splitlines()]
        lines = [
            line
            for line in lines
            if line
            and not line.startswith(
                ("Graph execution error", "Detected at node", "<stack traces unavailable>")
            )
        ]
        return cls(code, " ".join(lines) or text.strip())


def limit_message(message, limit=MESSAGE_LIMIT):
    """`message` cut to `limit` characters plus "...TRUNCATED" (TF Serving's
    rule for status messages, which may echo a client's input: a 1 MB model
    name must not become a 1 MB status that the client's metadata limit
    turns into "Stream removed")."""
    message = str(message)
    if len(message) <= limit:
        return message
    return message[:limit] + TRUNCATED


def invalid_argument(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message):
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def tf_status_code(code):
    """The `tensorflow.error.Code` number of a `grpc.StatusCode` (the same)."""
    return code.value[0]


__all__ = [
    "MESSAGE_LIMIT",
    "STATUS_CODES",
    "ServingError",
    "invalid_argument",
    "limit_message",
    "not_found",
    "tf_status_code",
]
