"""Load testing a TF-Serving-API server: concurrency, latency, correctness.

`run_load` sends `clients x requests` Predict calls from `clients` threads
(each with its own channel), a share of them deliberately malformed, and
checks every answer: well-formed requests must return the expected
probabilities (computed beforehand, in process), malformed ones must fail
with the status code TF Serving gives for that mistake. It stops by itself
after the fixed number of requests. `latency_overhead` compares the served
Predict latency with an in-process call of the same SavedModel, both at
batch 1 and interleaved so that both see the same machine load.

`benchmarks/serving_load.py` is the command line; a reduced run is a test.
"""

import collections
import dataclasses
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from clipspec import signatures as names
from serving.grpc_client import ServingClient

#: Malformed request kinds and the code TF Serving answers them with.
MALFORMED_KINDS = {
    "wrong_dtype": grpc.StatusCode.INVALID_ARGUMENT,
    "wrong_rank": grpc.StatusCode.INVALID_ARGUMENT,
    "missing_input": grpc.StatusCode.INVALID_ARGUMENT,
    "unknown_model": grpc.StatusCode.NOT_FOUND,
    "unknown_version": grpc.StatusCode.NOT_FOUND,
    "unknown_signature": grpc.StatusCode.FAILED_PRECONDITION,
}


def predict_request(model, clips, signature=names.SERVING, version=None):
    """A `PredictRequest` sending `clips` as the `clips` input."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[names.CLIPS_INPUT].CopyFrom(tf.make_tensor_proto(clips))
    return request


def malformed_request(kind, model, clip):
    """A request that is wrong in one way (`MALFORMED_KINDS`)."""
    if kind == "wrong_dtype":
        return predict_request(model, clip.astype(np.float32))
    if kind == "wrong_rank":
        return predict_request(model, clip[0])
    if kind == "missing_input":
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        return request
    if kind == "unknown_model":
        return predict_request(model + "-does-not-exist", clip)
    if kind == "unknown_version":
        return predict_request(model, clip, version=987654321)
    if kind == "unknown_signature":
        return predict_request(model, clip, signature="no_such_signature")
    raise ValueError(
        f"Unknown malformed kind {kind!r}. Expected one of: {', '.join(MALFORMED_KINDS)}."
    )


@dataclasses.dataclass
class LoadReport:
    clients: int
    requests: int
    malformed: int
    ok: int
    wrong_answers: int
    errors_by_code: dict
    unexpected_errors: list
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self):
        return dataclasses.asdict(self)


def timed_predict(client, request):
    """One Predict: `(status code, response or None, error details or "",
    seconds)`."""
    began = time.perf_counter()
    try:
        response = client.call("Predict", request)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        code, response, details = error.code(), None, error.details()
    return code, response, details, time.perf_counter() - began


def run_together(clients, worker):
    """Runs `worker(index, barrier)` in `clients` threads; each calls
    `barrier.wait()` when ready, and the clock starts when all are. Returns
    the seconds from then until the last thread ends."""
    barrier = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=worker, args=(i, barrier), daemon=True) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def run_load(
    address,
    model,
    clips,
    expected,
    clients=8,
    requests=100,
    malformed_share=0.05,
    seed=0,
    timeout=60.0,
    atol=1e-4,
):
    """Runs the load; returns a `LoadReport`.

    Args:
        address: `host:port` of the server.
        model: model name.
        clips: list of uint8 clips `[1, T, H, W, 3]` to send.
        expected: list of the expected probabilities `[1, K]` of each clip.
        clients: concurrent client threads, each with its own channel.
        requests: requests per client.
        malformed_share: fraction of all requests that are malformed
            (spread at random over the clients, kinds in turn).
        atol: tolerance on the probabilities (batching changes the
            summation order slightly).
    """
    if not 0.0 <= malformed_share <= 1.0:
        raise ValueError(
            "Invalid value for argument `malformed_share`. "
            "Expected a float between 0 and 1. Received: "
            f"malformed_share={malformed_share!r}"
        )
    total = clients * requests
    rng = np.random.default_rng(seed)
    n_bad = int(round(total * malformed_share))
    kinds = list(MALFORMED_KINDS)
    plan = [None] * total
    for i, slot in enumerate(rng.choice(total, size=n_bad, replace=False)):
        plan[slot] = kinds[i % len(kinds)]
    choice = rng.integers(0, len(clips), size=total)
    good = [predict_request(model, clip) for clip in clips]
    bad = {kind: malformed_request(kind, model, clips[0]) for kind in kinds}

    lock = threading.Lock()
    latencies, codes = [], collections.Counter()
    wrong, unexpected = [0], []

    def worker(index, barrier):
        client = ServingClient(address, timeout=timeout, retries=0)
        my_latencies, my_codes, my_wrong, my_unexpected = [], collections.Counter(), 0, []
        barrier.wait()
        for slot in range(index * requests, (index + 1) * requests):
            kind = plan[slot]
            request = bad[kind] if kind else good[choice[slot]]
            code, response, details, elapsed = timed_predict(client, request)
            my_codes[code.name] += 1
            if kind is None:
                if code != grpc.StatusCode.OK:
                    my_unexpected.append(f"good request -> {code.name}: {details}")
                    continue
                my_latencies.append(elapsed)
                got = tf.make_ndarray(response.outputs[names.PROBABILITIES_OUTPUT])
                if got.shape != expected[choice[slot]].shape or not np.allclose(
                    got, expected[choice[slot]], atol=atol
                ):
                    my_wrong += 1
            elif code != MALFORMED_KINDS[kind]:
                my_unexpected.append(
                    f"{kind} -> {code.name} (expected {MALFORMED_KINDS[kind].name})"
                )
        client.close()
        with lock:
            latencies.extend(my_latencies)
            codes.update(my_codes)
            wrong[0] += my_wrong
            unexpected.extend(my_unexpected)

    duration = run_together(clients, worker)
    ms = np.array(latencies) * 1000.0
    return LoadReport(
        clients=clients,
        requests=total,
        malformed=n_bad,
        ok=codes.get("OK", 0),
        wrong_answers=wrong[0],
        errors_by_code={k: v for k, v in sorted(codes.items()) if k != "OK"},
        unexpected_errors=unexpected,
        duration_s=duration,
        throughput_rps=total / duration if duration else float("nan"),
        p50_ms=float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        p99_ms=float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    )


def latency_overhead(address, model, version_dir, clip, repeats=50, warmup=5):
    """Median latency of Predict through the server vs an in-process call
    of the same SavedModel (`serving_default`), both at batch 1, calls
    interleaved. Returns `(served_p50_ms, in_process_p50_ms, ratio)`."""
    loaded = tf.saved_model.load(version_dir)
    function = loaded.signatures[names.SERVING]
    request = predict_request(model, clip)
    client = ServingClient(address, retries=0)
    served, local = [], []
    try:
        for index in range(warmup + repeats):
            began = time.perf_counter()
            response = client.call("Predict", request)
            tf.make_ndarray(response.outputs[names.PROBABILITIES_OUTPUT])
            middle = time.perf_counter()
            {k: v.numpy() for k, v in function(clips=tf.constant(clip)).items()}
            end = time.perf_counter()
            if index >= warmup:
                served.append(middle - began)
                local.append(end - middle)
    finally:
        client.close()
    served_ms = float(np.median(served) * 1000)
    local_ms = float(np.median(local) * 1000)
    return served_ms, local_ms, served_ms / local_ms


def process_rss_mb(pid):
    """Resident memory of process `pid` in MiB (psutil)."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def process_tree_rss_mb(pid):
    """Resident memory of process `pid` and all its descendants (the server's
    front end and its model workers) in MiB (psutil); processes that end
    while they are read are left out."""
    import psutil

    root = psutil.Process(pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def child_pids(pid):
    """The process ids of `pid`'s descendants (the server's model workers)."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


__all__ = [
    "MALFORMED_KINDS",
    "LoadReport",
    "latency_overhead",
    "malformed_request",
    "predict_request",
    "child_pids",
    "process_rss_mb",
    "process_tree_rss_mb",
    "run_load",
]
