"""Waiting for a model version to become AVAILABLE, shared by the gRPC
client (`serving.client.ServingClient`) and the REST client
(`serving.rest_client.RestClient`)."""

import time

POLL_SECONDS = 0.2


def wait_until_available(status, model, where, timeout=60.0, version=None, errors=(), describe=str):
    """Polls `status(model, version)` (rows `(version, state, code,
    message)`, as both clients' `status` return) until a version is
    AVAILABLE; returns its number.

    Args:
        status: the client's `status` method.
        model, version: what to wait for (`version=None`: any version).
        where: the server, for the error message.
        timeout: seconds before giving up.
        errors: exception types that mean "not yet" (the server is not up,
            the model not loaded yet).
        describe: turns one of `errors` into the text the timeout names.

    Raises:
        TimeoutError: no AVAILABLE version after `timeout` seconds, naming
            the last answer.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            for number, state, _, _ in status(model, version):
                if state == "AVAILABLE":
                    return number
            last = "no AVAILABLE version yet"
        except errors as error:
            last = describe(error)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Model {model!r} on {where} is not available after {timeout:.0f} s ({last})."
            )
        time.sleep(POLL_SECONDS)
