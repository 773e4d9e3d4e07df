"""What a model version costs in memory, in-process and in a worker process:
the figures behind the server's one-worker-per-version design.

Exports a zoo model (random weights), then measures, each in a fresh
child process so that nothing loaded before counts:

1. the RSS of a Python process that has imported TensorFlow and the
   serving code (what every worker, and the front end, pays once);
2. in-process: the RSS after each of `--loads` rounds of "load the version
   (`ServableVersion`), answer one request, close it, drop it, collect
   garbage" in ONE process: what a server that loads versions into its own
   process keeps per version swap;
3. with workers: the RSS of the whole process tree (this child and its
   workers) after each of `--loads` rounds of "start a worker for the
   version, answer one request, unload it (the worker ends)": what the
   server keeps per swap with workers.

    python -m benchmarks.serving_memory --loads 5
    python -m benchmarks.serving_memory --loads 8 --docs docs/benchmarks/serving_memory.md
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import report

_REPO = pathlib.Path(__file__).resolve().parents[1]

# Runs in a child process; prints one JSON line.
_PROBE = textwrap.dedent(
    """
    import gc, json, os, sys
    import numpy as np

    mode, path, loads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shape = [int(size) for size in sys.argv[4].split(",")]
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from serving.servable import ServableVersion
    from serving.worker_servable import WorkerServable
    from serving.worker_process import WorkerSettings
    from serving.loadtest import process_tree_rss_mb

    def rss_tree():
        return process_tree_rss_mb(os.getpid())

    result = {"imported": rss_tree(), "rounds": []}
    if mode != "import":
        request = None
        for _ in range(loads):
            if mode == "in_process":
                version = ServableVersion("m", 1, path)
            else:
                version = WorkerServable("m", 1, path, WorkerSettings(log_level="ERROR")).load()
            if request is None:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "m"
                clip = np.zeros([1, *shape], np.uint8)
                request.inputs["clips"].CopyFrom(tf.make_tensor_proto(clip))
            version.predict(request)
            loaded = rss_tree()
            version.close()
            if mode != "in_process":
                version.join()
            del version
            gc.collect()
            result["rounds"].append({"loaded": loaded, "after_unload": rss_tree()})
    print(json.dumps(result))
    """
)


def probe(mode, path, loads, shape):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_REPO), env.get("PYTHONPATH"))))
    argv = [mode, str(path), str(loads), ",".join(str(size) for size in shape)]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(model_name, input_shape, num_classes, work):
    from clipspec.format import ClipFormat
    from keras_classreg import models
    from training.export import export_version

    shape = (*input_shape, 3)
    model = models.get(model_name, num_classes=num_classes, input_shape=shape)
    fmt = ClipFormat(
        clip_length=shape[0],
        crop_size=shape[1],
        class_names=[f"class_{i}" for i in range(num_classes)],
    )
    return export_version(model, work, "m", fmt)


def benchmark(model_name, input_shape, num_classes, loads):
    work = pathlib.Path(tempfile.mkdtemp(prefix="serving-memory-"))
    path = export(model_name, input_shape, num_classes, work)
    shape = (*input_shape, 3)
    imported = probe("import", path, 0, shape)["imported"]
    in_process = probe("in_process", path, loads, shape)
    workers = probe("workers", path, loads, shape)

    def summary(result):
        after = [r["after_unload"] for r in result["rounds"]]
        per_round = (after[-1] - after[0]) / max(len(after) - 1, 1)
        return {
            "imported_mb": round(result["imported"], 1),
            "loaded_mb": [round(r["loaded"], 1) for r in result["rounds"]],
            "after_unload_mb": [round(a, 1) for a in after],
            "kept_per_load_mb": round(per_round, 1),
        }

    return {
        "model": model_name,
        "input_shape": [*input_shape, 3],
        "loads": loads,
        "cpu": report.cpu_model(),
        "import_mb": round(imported, 1),
        "in_process": summary(in_process),
        "workers": summary(workers),
    }


def print_report(result):
    print(f"CPU: {result['cpu']}; model {result['model']} {result['input_shape']}")
    print(f"RSS after importing TensorFlow and the server code: {result['import_mb']} MiB")
    for key, words in (("in_process", "in-process"), ("workers", "with workers (process tree)")):
        figures = result[key]
        print(
            f"{words}: loaded {figures['loaded_mb']} MiB; after unloading "
            f"{figures['after_unload_mb']} MiB; kept per load {figures['kept_per_load_mb']} MiB"
        )


def write_docs(result, path, command):
    rows = [
        ["RSS of a process that imported TensorFlow and the server code", result["import_mb"], ""],
    ]
    for key, words in (
        ("in_process", "versions loaded in one process"),
        ("workers", "versions loaded in worker processes (tree: process + workers)"),
    ):
        figures = result[key]
        rows += [
            [f"{words}: RSS with the version loaded, per round", figures["loaded_mb"], ""],
            [f"{words}: RSS after unloading it, per round", figures["after_unload_mb"], ""],
            [f"{words}: kept per load", figures["kept_per_load_mb"], ""],
        ]
    report.write_page(
        path,
        "Serving memory per version (`benchmarks/serving_memory.py`)",
        command,
        [
            f"Model {result['model']} {result['input_shape']} (random weights), "
            f"{result['loads']} load rounds each, MiB.",
            report.markdown_table(["figure", "MiB", ""], rows),
        ],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving_memory",
        description="Memory per model version, in-process and in worker processes.",
    )
    parser.add_argument("--model", default="resnet18_3d")
    parser.add_argument("--input-shape", type=int, nargs=3, default=(8, 64, 64))
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--loads", type=int, default=5, help="Load rounds. Default: 5.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--docs", metavar="FILE", default=None)
    args = parser.parse_args(argv)
    if args.loads < 2:
        parser.error("--loads must be >= 2")
    result = benchmark(args.model, tuple(args.input_shape), args.num_classes, args.loads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.serving_memory", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
