"""What PyTorch-exact padding costs: `padding="symmetric"` vs Keras "same".

Hara et al.'s 3D ResNets pad every convolution and the stem pool by
`k // 2` on both sides; Keras "same" pads a stride-2 layer one pixel more at
the end than at the start. The zoo's `padding="symmetric"` (what
`keras_classreg.pretrained` builds) inserts a `ZeroPadding3D` before each
strided convolution with a kernel wider than 1 and before the stem pool, and
makes those layers "valid". This script counts both variants' FLOPs with
TensorFlow's profiler (`keras_classreg.flops`) and times one forward pass of
a batch on the CPU, the two variants interleaved round by round.

    python -m benchmarks.padding_cost --models resnet18_3d resnet50_3d \\
        --input 16 112 112 --batch 1 --rounds 10 --docs docs/benchmarks/padding_cost.md

Small check: `--models resnet18_3d --input 8 56 56 --rounds 2`.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from benchmarks import report
from keras_classreg import flops, models

PADDINGS = ("same", "symmetric")


def measure(name, input_shape, batch, rounds, num_classes=400):
    built = {
        padding: models.get(
            name,
            num_classes=num_classes,
            input_shape=input_shape,
            class_regularization=False,
            padding=padding,
        )
        for padding in PADDINGS
    }
    counts = {padding: flops(model) for padding, model in built.items()}
    clips = tf.constant(
        np.random.default_rng(0).normal(size=(batch, *input_shape)).astype(np.float32)
    )
    forward = {
        padding: tf.function(lambda x, m=model: m(x, training=False))
        for padding, model in built.items()
    }
    for padding in PADDINGS:  # trace and warm up
        forward[padding](clips).numpy()
        forward[padding](clips).numpy()
    times = {padding: [] for padding in PADDINGS}
    for round_index in range(rounds):
        order = PADDINGS if round_index % 2 == 0 else PADDINGS[::-1]
        for padding in order:
            start = time.perf_counter()
            forward[padding](clips).numpy()
            times[padding].append(time.perf_counter() - start)
    medians = {padding: statistics.median(values) for padding, values in times.items()}
    return {
        "model": name,
        "input_shape": list(input_shape),
        "batch": batch,
        "rounds": rounds,
        "gflops": {padding: counts[padding] / 1e9 for padding in PADDINGS},
        "flops_ratio": counts["symmetric"] / counts["same"],
        "median_seconds": medians,
        "latency_ratio": medians["symmetric"] / medians["same"],
        "parameters": {padding: int(model.count_params()) for padding, model in built.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.padding_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--models", nargs="+", default=["resnet18_3d", "resnet50_3d"])
    parser.add_argument(
        "--input", nargs=3, type=int, default=[16, 112, 112], metavar=("T", "H", "W")
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--docs",
        metavar="FILE",
        help="write the figures as Markdown, with the command, date and machine, to FILE",
    )
    args = parser.parse_args(argv)
    results = {
        "command": report.command("benchmarks.padding_cost", argv),
        "cpu": report.cpu_model(),
        "cpu_threads": os.cpu_count(),
        "tensorflow": tf.__version__,
        "results": [
            measure(name, (*args.input, 3), args.batch, args.rounds) for name in args.models
        ],
    }
    for row in results["results"]:
        print(
            f"{row['model']} {row['input_shape']} batch {row['batch']}: "
            f"GFLOPs same {row['gflops']['same']:.2f} symmetric "
            f"{row['gflops']['symmetric']:.2f}; median forward same "
            f"{row['median_seconds']['same'] * 1e3:.0f} ms, symmetric "
            f"{row['median_seconds']['symmetric'] * 1e3:.0f} ms "
            f"(x{row['latency_ratio']:.3f}, {row['rounds']} rounds)"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)
            file.write("\n")
    if args.docs:
        write_docs(results, args.docs)
    return 0


def write_docs(results, path):
    """The figures as a Markdown page (`benchmarks.report`)."""
    rows = [
        [
            r["model"],
            "x".join(str(v) for v in r["input_shape"]),
            r["batch"],
            f"{r['gflops']['same']:.2f}",
            f"{r['gflops']['symmetric']:.2f}",
            f"{r['flops_ratio']:.3f}",
            f"{r['median_seconds']['same'] * 1e3:.0f}",
            f"{r['median_seconds']['symmetric'] * 1e3:.0f}",
            f"{r['latency_ratio']:.3f}",
            r["rounds"],
        ]
        for r in results["results"]
    ]
    table = report.markdown_table(
        [
            "model",
            "clip",
            "batch",
            "GFLOPs same",
            "GFLOPs symmetric",
            "FLOPs ratio",
            "forward ms same",
            "forward ms symmetric",
            "latency ratio",
            "rounds",
        ],
        rows,
    )
    return report.write_page(
        path,
        'Cost of PyTorch-exact padding (`padding="symmetric"`)',
        results["command"],
        [
            "Forward pass on the CPU, both variants interleaved round by round; "
            "medians. FLOPs from TensorFlow's profiler.",
            table,
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
