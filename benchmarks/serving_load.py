"""Load benchmark of the local TF-Serving-API server.

Exports a model (random weights) of the zoo, starts `python -m
serving.server` on it (server-side batching on), then:

1. N concurrent clients x M Predict requests each, a share of them
   malformed (wrong dtype/rank, missing input, unknown model/version/
   signature); every answer is checked (probabilities against an in-process
   reference; malformed ones against TF Serving's status code). Prints
   throughput, p50/p99 latency, errors by code, wrong answers, unexpected
   errors and the server's RSS before/after.
2. Served Predict p50 vs an in-process call of the same SavedModel, both at
   batch 1 and interleaved (target ratio <= 1.15).

It stops by itself (a fixed number of requests). Example:

    python -m benchmarks.serving_load --clients 8 --requests 100
    python -m benchmarks.serving_load --model resnet18_3d --input-shape 8 112 112 --json
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_classreg import models  # noqa: E402
from serving import loadtest  # noqa: E402
from serving.client import ServingClient  # noqa: E402
from serving.launch import LocalServer  # noqa: E402
from training.export import export_version  # noqa: E402


def benchmark(model_name="resnet18_3d", input_shape=(8, 64, 64), num_classes=10,
              clients=8, requests=100, malformed=0.05, max_batch_size=8,
              batch_timeout_micros=0, num_batch_threads=2, overhead_repeats=50,
              pool=8, seed=0, work_dir=None):
    """Runs the whole benchmark; returns a JSON-able dict."""
    shape = (*input_shape, 3)
    work = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="serving-load-"))
    model = models.get(model_name, num_classes=num_classes, input_shape=shape)
    names = [f"class_{i}" for i in range(num_classes)]
    version_dir = export_version(model, work, "bench", names)
    rng = np.random.default_rng(seed)
    clips = [rng.integers(0, 256, (1, *shape), dtype=np.uint8)
             for _ in range(pool)]
    loaded = tf.saved_model.load(version_dir)
    expected = [loaded.signatures["serving_default"](
        clips=tf.constant(clip))["probabilities"].numpy() for clip in clips]
    del loaded
    args = ["--model-name", "bench", "--model-base-path", work / "bench",
            "--grpc-workers", max(16, clients * 2)]
    if max_batch_size:
        args += ["--max-batch-size", max_batch_size, "--batch-timeout-micros",
                 batch_timeout_micros, "--num-batch-threads", num_batch_threads]
    with LocalServer(args, log_path=work / "server.log") as server:
        with ServingClient(server.address) as client:
            client.wait_until_available("bench")
        rss_before = loadtest.process_rss_mb(server.pid)
        report = loadtest.run_load(server.address, "bench", clips, expected,
                                   clients=clients, requests=requests,
                                   malformed_share=malformed, seed=seed)
        rss_after = loadtest.process_rss_mb(server.pid)
        served, local, ratio = loadtest.latency_overhead(
            server.address, "bench", version_dir, clips[0],
            repeats=overhead_repeats)
        exit_code = server.stop()
    return {
        "model": model_name, "input_shape": list(shape),
        "num_classes": num_classes, "max_batch_size": max_batch_size,
        "load": report.as_dict(),
        "server_rss_mb": {"before": round(rss_before, 1),
                          "after": round(rss_after, 1)},
        "batch1_latency": {"served_p50_ms": round(served, 3),
                           "in_process_p50_ms": round(local, 3),
                           "ratio": round(ratio, 3)},
        "server_exit_code": exit_code,
    }


def print_report(result):
    load = result["load"]
    print(f"model {result['model']} input {result['input_shape']} "
          f"K={result['num_classes']} max_batch_size={result['max_batch_size']}")
    print(f"{load['clients']} clients x {load['requests'] // load['clients']} "
          f"requests = {load['requests']} ({load['malformed']} malformed) in "
          f"{load['duration_s']:.2f} s: {load['throughput_rps']:.1f} req/s")
    print(f"latency of good requests: p50 {load['p50_ms']:.1f} ms, "
          f"p99 {load['p99_ms']:.1f} ms")
    print(f"OK {load['ok']}, errors by code {load['errors_by_code']}, "
          f"wrong answers {load['wrong_answers']}, unexpected errors "
          f"{len(load['unexpected_errors'])}")
    for line in load["unexpected_errors"][:10]:
        print(f"  unexpected: {line}")
    rss = result["server_rss_mb"]
    print(f"server RSS: {rss['before']} MiB before, {rss['after']} MiB after")
    latency = result["batch1_latency"]
    print(f"batch 1: served p50 {latency['served_p50_ms']:.2f} ms vs "
          f"in-process p50 {latency['in_process_p50_ms']:.2f} ms: ratio "
          f"{latency['ratio']:.3f} (target <= 1.15)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Load benchmark of python -m serving.server (see the "
        "module docstring).")
    parser.add_argument("--model", default="resnet18_3d",
                        choices=models.names(), help="Zoo model to export "
                        "(random weights). Default: resnet18_3d.")
    parser.add_argument("--input-shape", type=int, nargs=3, default=(8, 64, 64),
                        metavar=("T", "H", "W"),
                        help="Clip size. Default: 8 64 64.")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8,
                        help="Concurrent clients. Default: 8.")
    parser.add_argument("--requests", type=int, default=100,
                        help="Requests per client. Default: 100.")
    parser.add_argument("--malformed", type=float, default=0.05,
                        help="Share of malformed requests. Default: 0.05.")
    parser.add_argument("--max-batch-size", type=int, default=8,
                        help="Server-side batching (0: off). Default: 8.")
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument("--overhead-repeats", type=int, default=50,
                        help="Interleaved batch-1 calls for the latency "
                        "ratio. Default: 50.")
    parser.add_argument("--json", action="store_true",
                        help="Print the result as JSON.")
    args = parser.parse_args(argv)
    result = benchmark(
        args.model, tuple(args.input_shape), args.num_classes, args.clients,
        args.requests, args.malformed, args.max_batch_size,
        args.batch_timeout_micros, args.num_batch_threads,
        args.overhead_repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    load = result["load"]
    return 0 if not load["wrong_answers"] and not load["unexpected_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
