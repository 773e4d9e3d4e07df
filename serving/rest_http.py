"""HTTP for the clients of TF Serving's REST API (`serving.rest_client`,
the timeline's `serving.predictor`): JSON calls with a timeout and retries
on 503 (UNAVAILABLE: a server still starting, a full queue) with
exponential backoff, TF Serving's `{"error": ...}` answers as `RestError`,
and its URLs. No TensorFlow here.

>>> model_path("half plus two", 3, ":predict")
'/v1/models/half%20plus%20two/versions/3:predict'
"""

import json
import random
import time
import urllib.error
import urllib.request

DEFAULT_REST_SERVER = "127.0.0.1:8501"
RETRY_STATUSES = (503,)


class RestError(Exception):
    """A REST call that failed: `status` (HTTP) and TF Serving's message."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def base_url(server):
    """`http://host:port` of a `host:port` (a full URL is kept)."""
    return server if server.startswith(("http://", "https://")) else f"http://{server}"


def model_path(model, version=None, suffix=""):
    """The path of a model (`version`: None for the latest) and an action
    (`suffix`: "", "/metadata", ":predict", ...)."""
    path = f"/v1/models/{urllib.request.quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return path + suffix


def call_json(url, path, body=None, timeout=30.0, retries=3, backoff=0.5):
    """GET (`body` None) or POST `body` as JSON to `url + path`; returns the
    parsed answer or raises `RestError` (after `retries` extra attempts on
    `RETRY_STATUSES`, waiting `backoff` seconds, doubled each time, with
    jitter)."""
    data = None if body is None else json.dumps(body).encode()
    delay = backoff
    for attempt in range(retries + 1):
        request = urllib.request.Request(
            url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                message = text or error.reason
            if error.code not in RETRY_STATUSES or attempt == retries:
                raise RestError(error.code, message) from None
        time.sleep(delay * (1 + 0.5 * random.random()))
        delay *= 2


def is_missing_signature(error):
    """Whether a REST failure says the signature does not exist: TF Serving
    answers an unknown signature with FAILED_PRECONDITION, which its REST
    API maps to HTTP 400."""
    return isinstance(error, RestError) and error.status == 400


__all__ = [
    "DEFAULT_REST_SERVER",
    "RETRY_STATUSES",
    "RestError",
    "base_url",
    "call_json",
    "is_missing_signature",
    "model_path",
]
