"""Load benchmark of the local TF-Serving-API server (gRPC and REST).

Exports a model (random weights) of the zoo, starts `python -m
serving.server` on it (server-side batching on, REST on), then:

1. Throughput: the in-process SavedModel's clips/s at each batch size
   (best taken), and the server's clips/s with `--clients` concurrent gRPC
   clients sending one clip per request (target: served >= 0.85 x the
   in-process best, same model, same run).
2. REST vs gRPC: batch-1 Predict p50 over REST (`{"instances": ...}`) and
   over gRPC, calls interleaved (target: REST <= 1.3 x gRPC).
3. Correctness under load: the clients again with a share of malformed
   requests (wrong dtype/rank, missing input, unknown model/version/
   signature); every answer checked (probabilities against the in-process
   model, malformed ones against TF Serving's status code), the RSS of the
   server's process tree (front end + model worker) before/after.
4. Served vs in-process batch-1 p50 (interleaved; target <= 1.10).
5. Admission by deadline: a call right after 20 concurrent calls whose
   10 ms deadline passes while they wait, against an idle call (target
   <= 1.5: expired calls never start).

The served figures include the worker boundary (the model runs in a worker
process of the server, `serving.worker`): the ratios 1 and 4 are what that
boundary, gRPC and batching cost together against calling the SavedModel
in this process.

It stops by itself (fixed request counts). `--docs FILE` writes the figures
with the command, the date and the machine as Markdown
(`benchmarks.report`). Example:

    python -m benchmarks.serving_load --clients 16 --requests 100
    python -m benchmarks.serving_load --clients 16 --docs docs/benchmarks/serving_load.md
"""

import argparse
import collections
import contextlib
import json
import os
import pathlib
import sys
import tempfile
import threading
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import tensorflow as tf

from benchmarks import report
from clipspec.format import ClipFormat
from keras_classreg import models
from serving import loadtest
from serving.client import ServingClient
from serving.launch import LocalServer
from training.export import export_version

BATCH_SIZES = (1, 2, 4, 8, 16)


def in_process_throughput(version_dir, clip, batch_sizes=BATCH_SIZES, seconds=3.0):
    """clips/s of the SavedModel's serving_default called in this process,
    per batch size (each timed for about `seconds`)."""
    function = tf.saved_model.load(version_dir).signatures["serving_default"]
    result = {}
    for batch in batch_sizes:
        clips = tf.constant(np.repeat(clip, batch, axis=0))
        function(clips=clips)  # trace/warm
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            function(clips=clips)["probabilities"].numpy()
            count += 1
        result[batch] = count * batch / (time.perf_counter() - began)
    return result


def served_throughput(address, model, clip, clients, requests):
    """clips/s through the server: `clients` gRPC clients (own channels)
    sending one clip per Predict, `requests` each."""
    request = loadtest.predict_request(model, clip)
    failures = []

    def worker(index, barrier):
        client = ServingClient(address, timeout=120, retries=0)
        barrier.wait()
        for _ in range(requests):
            try:
                client.call("Predict", request)
            except Exception as error:  # noqa: BLE001 (counted, reported)
                failures.append(str(error))
        client.close()

    duration = loadtest.run_together(clients, worker)
    return (clients * requests - len(failures)) / duration, failures


def rest_vs_grpc(address, rest_url, model, clip, repeats=50, warmup=5):
    """Batch-1 Predict p50 over REST and over gRPC, interleaved; returns
    `(rest_p50_ms, grpc_p50_ms)`."""
    body = json.dumps({"instances": clip.tolist()}).encode()
    url = f"{rest_url}/v1/models/{model}:predict"
    request = loadtest.predict_request(model, clip)
    rest, grpc_ = [], []
    with ServingClient(address, retries=0) as client:
        for index in range(warmup + repeats):
            began = time.perf_counter()
            with urllib.request.urlopen(
                urllib.request.Request(url, data=body), timeout=120
            ) as answer:
                json.loads(answer.read())["predictions"]
            middle = time.perf_counter()
            response = client.call("Predict", request)
            tf.make_ndarray(response.outputs["probabilities"])
            end = time.perf_counter()
            if index >= warmup:
                rest.append(middle - began)
                grpc_.append(end - middle)
    return float(np.median(rest) * 1000), float(np.median(grpc_) * 1000)


def expired_calls(address, model, clip, calls=20, deadline_s=0.01, rounds=5):
    """Admission by deadline: the latency of a call made right after `calls`
    concurrent calls whose deadline (`deadline_s`, shorter than a model
    call) passes while they wait, against the idle latency; medians over
    `rounds`. Calls that expire must never start, so the ratio stays near
    1 (target <= 1.5); without admission they run on and the next call
    waits for them."""
    request = loadtest.predict_request(model, clip)
    client = ServingClient(address, timeout=60, retries=0)
    codes, lock = collections.Counter(), threading.Lock()

    def timed():
        began = time.perf_counter()
        client.call("Predict", request)
        return time.perf_counter() - began

    def expiring(index, barrier):
        barrier.wait()
        try:
            client.call("Predict", request, deadline_s)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        with lock:
            codes[code] += 1

    idle, after = [], []
    try:
        for _ in range(rounds):
            idle += [timed() for _ in range(3)]
            loadtest.run_together(calls, expiring)
            after.append(timed())
    finally:
        client.close()
    idle_ms, after_ms = float(np.median(idle) * 1000), float(np.median(after) * 1000)
    return {
        "calls": calls,
        "deadline_ms": deadline_s * 1000,
        "rounds": rounds,
        "codes": dict(codes),
        "idle_p50_ms": round(idle_ms, 2),
        "after_p50_ms": round(after_ms, 2),
        "ratio": round(after_ms / idle_ms, 3),
        "target": "<= 1.5",
    }


def _server_args(work, clients, max_batch_size, batch_timeout_micros, num_batch_threads):
    """The server's flags (and its batching parameters file, written)."""
    args = [
        "--model_name=bench",
        f"--model_base_path={work / 'bench'}",
        f"--grpc_max_threads={max(16, clients * 2)}",
        f"--rest_api_num_threads={max(8, clients)}",
    ]
    if max_batch_size:
        batching = work / f"batching_parameters_{num_batch_threads}.txt"
        batching.write_text(
            f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: 100 }}\n"
            f"num_batch_threads {{ value: {num_batch_threads} }}\n"
        )
        args += ["--enable_batching", f"--batching_parameters_file={batching}"]
    return args


def benchmark(
    model_name="resnet18_3d",
    input_shape=(8, 64, 64),
    num_classes=10,
    clients=16,
    requests=100,
    malformed=0.05,
    max_batch_size=16,
    batch_timeout_micros=0,
    num_batch_threads=(2, 1),
    overhead_repeats=50,
    throughput_seconds=3.0,
    pool=8,
    seed=0,
    work_dir=None,
):
    """Runs the whole benchmark; returns a JSON-able dict. Its files (the
    SavedModel, the server log) go to `work_dir`, else to a temporary folder
    removed at the end."""
    shape = (*input_shape, 3)
    if work_dir is None:
        folder = tempfile.TemporaryDirectory(prefix="serving-load-")
    else:
        folder = contextlib.nullcontext(work_dir)
    with folder as work:
        work = pathlib.Path(work)
        model = models.get(model_name, num_classes=num_classes, input_shape=shape)
        clip_format = ClipFormat(
            clip_length=shape[0],
            crop_size=shape[1],
            class_names=[f"class_{i}" for i in range(num_classes)],
        )
        version_dir = export_version(model, work, "bench", clip_format)
        rng = np.random.default_rng(seed)
        clips = [rng.integers(0, 256, (1, *shape), dtype=np.uint8) for _ in range(pool)]
        loaded = tf.saved_model.load(version_dir)
        expected = [
            loaded.signatures["serving_default"](clips=tf.constant(clip))["probabilities"].numpy()
            for clip in clips
        ]
        del loaded
        local = in_process_throughput(version_dir, clips[0], seconds=throughput_seconds)
        num_batch_threads = list(num_batch_threads)
        args = _server_args(
            work, clients, max_batch_size, batch_timeout_micros, num_batch_threads[0]
        )
        # Served throughput with the other num_batch_threads values, each
        # on a server of its own.
        other_served = {}
        for threads in num_batch_threads[1:] if max_batch_size else []:
            other_args = _server_args(work, clients, max_batch_size, batch_timeout_micros, threads)
            with LocalServer(other_args, log_path=work / f"server-{threads}.log") as server:
                with ServingClient(server.address) as client:
                    client.wait_until_available("bench")
                other_served[threads] = served_throughput(
                    server.address, "bench", clips[0], clients, requests
                )[0]
        with LocalServer(args, log_path=work / "server.log", rest=True) as server:
            with ServingClient(server.address) as client:
                client.wait_until_available("bench")
            served, failures = served_throughput(
                server.address, "bench", clips[0], clients, requests
            )
            rest_ms, grpc_ms = rest_vs_grpc(
                server.address, server.rest_url, "bench", clips[0], overhead_repeats
            )
            rss_before = loadtest.process_tree_rss_mb(server.pid)
            load = loadtest.run_load(
                server.address,
                "bench",
                clips,
                expected,
                clients=clients,
                requests=requests,
                malformed_share=malformed,
                seed=seed,
            )
            rss_after = loadtest.process_tree_rss_mb(server.pid)
            workers = len(loadtest.child_pids(server.pid))
            served_p50, local_p50, ratio = loadtest.latency_overhead(
                server.address, "bench", version_dir, clips[0], repeats=overhead_repeats
            )
            expired = expired_calls(server.address, "bench", clips[0])
            exit_code = server.stop()
        best_batch = max(local, key=local.get)
        return {
            "model": model_name,
            "input_shape": list(shape),
            "num_classes": num_classes,
            "max_batch_size": max_batch_size,
            "cpu": report.cpu_model(),
            "cpus": os.cpu_count(),
            "throughput": {
                "in_process_clips_per_s": {str(b): round(v, 2) for b, v in local.items()},
                "in_process_best": {
                    "batch": best_batch,
                    "clips_per_s": round(local[best_batch], 2),
                },
                "served_clips_per_s": round(served, 2),
                "clients": clients,
                "failures": len(failures),
                "ratio": round(served / local[best_batch], 3),
                "target": ">= 0.85",
                "num_batch_threads": num_batch_threads[0] if max_batch_size else None,
                "other_num_batch_threads": {
                    str(threads): {
                        "served_clips_per_s": round(value, 2),
                        "ratio": round(value / local[best_batch], 3),
                    }
                    for threads, value in other_served.items()
                },
            },
            "rest_vs_grpc_batch1": {
                "rest_p50_ms": round(rest_ms, 3),
                "grpc_p50_ms": round(grpc_ms, 3),
                "ratio": round(rest_ms / grpc_ms, 3),
                "target": "<= 1.3",
            },
            "load": load.as_dict(),
            "server_rss_mb": {
                "before": round(rss_before, 1),
                "after": round(rss_after, 1),
                "workers": workers,
            },
            "batch1_latency": {
                "served_p50_ms": round(served_p50, 3),
                "in_process_p50_ms": round(local_p50, 3),
                "ratio": round(ratio, 3),
                "target": "<= 1.10",
            },
            "expired_calls": expired,
            "server_exit_code": exit_code,
        }


def print_report(result):
    throughput, rest = result["throughput"], result["rest_vs_grpc_batch1"]
    best = throughput["in_process_best"]
    print(f"CPU: {result['cpu']} ({result['cpus']} logical CPUs)")
    print(
        "in-process clips/s by batch size: "
        + ", ".join(f"{b}: {v}" for b, v in throughput["in_process_clips_per_s"].items())
    )
    print(
        f"served clips/s ({throughput['clients']} gRPC clients, 1 clip per "
        f"request): {throughput['served_clips_per_s']} vs in-process best "
        f"{best['clips_per_s']} (batch {best['batch']}): ratio "
        f"{throughput['ratio']:.3f} (target >= 0.85; num_batch_threads "
        f"{throughput['num_batch_threads']})"
    )
    for threads, other in throughput["other_num_batch_threads"].items():
        print(
            f"  with num_batch_threads {threads}: {other['served_clips_per_s']} clips/s, "
            f"ratio {other['ratio']:.3f}"
        )
    print(
        f"batch 1 p50: REST {rest['rest_p50_ms']:.2f} ms vs gRPC "
        f"{rest['grpc_p50_ms']:.2f} ms: ratio {rest['ratio']:.3f} "
        "(target <= 1.3)"
    )
    load = result["load"]
    print(
        f"model {result['model']} input {result['input_shape']} "
        f"K={result['num_classes']} max_batch_size={result['max_batch_size']}"
    )
    print(
        f"{load['clients']} clients x {load['requests'] // load['clients']} "
        f"requests = {load['requests']} ({load['malformed']} malformed) in "
        f"{load['duration_s']:.2f} s: {load['throughput_rps']:.1f} req/s"
    )
    print(f"latency of good requests: p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms")
    print(
        f"OK {load['ok']}, errors by code {load['errors_by_code']}, "
        f"wrong answers {load['wrong_answers']}, unexpected errors "
        f"{len(load['unexpected_errors'])}"
    )
    for line in load["unexpected_errors"][:10]:
        print(f"  unexpected: {line}")
    rss = result["server_rss_mb"]
    print(
        f"server process tree RSS (front end + {rss.get('workers', '?')} worker(s)): "
        f"{rss['before']} MiB before, {rss['after']} MiB after"
    )
    latency = result["batch1_latency"]
    print(
        f"batch 1: served p50 {latency['served_p50_ms']:.2f} ms vs "
        f"in-process p50 {latency['in_process_p50_ms']:.2f} ms: ratio "
        f"{latency['ratio']:.3f} (target <= 1.10)"
    )
    expired = result["expired_calls"]
    print(
        f"after {expired['calls']} calls that expired waiting ({expired['deadline_ms']:g} ms "
        f"deadline; {expired['codes']}): next call p50 {expired['after_p50_ms']:.2f} ms vs "
        f"idle {expired['idle_p50_ms']:.2f} ms: ratio {expired['ratio']:.3f} (target <= 1.5)"
    )


def write_docs(result, path, command):
    """The figures as Markdown, with the command, the date and the machine
    (`benchmarks.report`)."""
    throughput, rest = result["throughput"], result["rest_vs_grpc_batch1"]
    best = throughput["in_process_best"]
    load = result["load"]
    rows = [
        [
            "in-process clips/s by batch size",
            ", ".join(f"{b}: {v}" for b, v in throughput["in_process_clips_per_s"].items()),
            "",
        ],
        [
            f"served clips/s, {throughput['clients']} gRPC clients, 1 clip each",
            throughput["served_clips_per_s"],
            "",
        ],
        [
            f"served / in-process best (batch {best['batch']}), "
            f"num_batch_threads {throughput['num_batch_threads']}",
            f"{throughput['ratio']:.3f}",
            ">= 0.85",
        ],
        *[
            [
                f"served clips/s and / in-process best, num_batch_threads {threads}",
                f"{other['served_clips_per_s']}, {other['ratio']:.3f}",
                ">= 0.85",
            ]
            for threads, other in throughput["other_num_batch_threads"].items()
        ],
        [
            "batch-1 p50 REST / gRPC",
            f"{rest['rest_p50_ms']:.2f} / {rest['grpc_p50_ms']:.2f} ms = {rest['ratio']:.3f}",
            "<= 1.3",
        ],
        [
            "load: requests, malformed, wrong answers, unexpected errors",
            f"{load['requests']}, {load['malformed']}, {load['wrong_answers']}, "
            f"{len(load['unexpected_errors'])}",
            "0 wrong, 0 unexpected",
        ],
        [
            "load: throughput, p50 / p99 of good requests",
            f"{load['throughput_rps']:.1f} req/s, {load['p50_ms']:.1f} / {load['p99_ms']:.1f} ms",
            "",
        ],
        [
            "batch-1 p50 served / in-process",
            f"{result['batch1_latency']['served_p50_ms']:.2f} / "
            f"{result['batch1_latency']['in_process_p50_ms']:.2f} ms = "
            f"{result['batch1_latency']['ratio']:.3f}",
            "<= 1.10",
        ],
        [
            f"next call after {result['expired_calls']['calls']} calls expired waiting "
            f"({result['expired_calls']['deadline_ms']:g} ms deadline) / idle, p50",
            f"{result['expired_calls']['after_p50_ms']:.2f} / "
            f"{result['expired_calls']['idle_p50_ms']:.2f} ms = "
            f"{result['expired_calls']['ratio']:.3f}; {result['expired_calls']['codes']}",
            "<= 1.5",
        ],
        [
            "server process tree RSS (front end + model worker) before / after the load",
            f"{result['server_rss_mb']['before']} / {result['server_rss_mb']['after']} MiB",
            "",
        ],
    ]
    settings = (
        f"Model {result['model']} {result['input_shape']} (random weights), "
        f"K = {result['num_classes']}, server batching "
        f"max_batch_size={result['max_batch_size']}."
    )
    report.write_page(
        path,
        "Serving benchmark",
        command,
        [settings, report.markdown_table(["figure", "value", "target"], rows)],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving_load",
        description="Load benchmark of python -m serving.server (see the module docstring).",
    )
    parser.add_argument(
        "--model",
        default="resnet18_3d",
        choices=models.names(),
        help="Zoo model to export (random weights). Default: resnet18_3d.",
    )
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs=3,
        default=(8, 64, 64),
        metavar=("T", "H", "W"),
        help="Clip size. Default: 8 64 64.",
    )
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients. Default: 16.")
    parser.add_argument(
        "--requests", type=int, default=100, help="Requests per client. Default: 100."
    )
    parser.add_argument(
        "--malformed", type=float, default=0.05, help="Share of malformed requests. Default: 0.05."
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=16, help="Server-side batching (0: off). Default: 16."
    )
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="Batches run at once (TF Serving's num_batch_threads). The first value "
        "serves every part; each further one gets a server of its own for the "
        "throughput part only. Default: 2 1 (TF Serving's advice for CPUs: the "
        "number of cores, here 2; and one batch at a time, each using every core "
        "through TensorFlow's intra-op threads).",
    )
    parser.add_argument(
        "--overhead-repeats",
        type=int,
        default=50,
        help="Interleaved batch-1 calls for the latency ratio. Default: 50.",
    )
    parser.add_argument(
        "--throughput-seconds",
        type=float,
        default=3.0,
        help="Seconds per in-process batch size. Default: 3.",
    )
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument(
        "--docs",
        metavar="FILE",
        default=None,
        help="Also write the figures, the command, the date "
        "and the machine as Markdown to FILE (e.g. "
        "docs/benchmarks/serving_load.md).",
    )
    args = parser.parse_args(argv)
    if min(args.num_batch_threads) < 1:
        parser.error(f"--num-batch-threads: each value must be >= 1, got {args.num_batch_threads}")
    result = benchmark(
        args.model,
        tuple(args.input_shape),
        args.num_classes,
        args.clients,
        args.requests,
        args.malformed,
        args.max_batch_size,
        args.batch_timeout_micros,
        args.num_batch_threads,
        args.overhead_repeats,
        args.throughput_seconds,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.serving_load", argv))
    load = result["load"]
    return 0 if not load["wrong_answers"] and not load["unexpected_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
