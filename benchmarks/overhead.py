"""Cost of Class Regularization: FLOPs (TensorFlow profiler) and CPU latency.

For each model and input size, builds the model with and without Class
Regularization (same seed), counts FLOPs for one clip, and times batch-1
inference of three models: the base model, the ClassReg model as trained
(each block streams its projection `P` through memory twice per call), and
its inference copy from `keras_classreg.fold_class_regularization` (each
block holds `W_l = W^T P`; this is what `training.export` writes and the
server runs). Warm-up, then `--runs` rounds, each timing one call of every
model back to back (so all see the same machine load); reports the median
time of each and the median of the per-round ratios to the base model.
A second table times the blocks alone (each model's blocks on their own
inputs in one tf.function, minus a control call, same rotation): on a
machine whose latency wanders by +-10 % between calls it is the steadier
estimate of what the blocks add (`1 + blocks / base`).

    python -m benchmarks.overhead                 # the issue's table
    python -m benchmarks.overhead --paper-table   # FLOPs vs the paper's Table 1
    python -m benchmarks.overhead --docs docs/benchmarks/overhead.md
    python -m benchmarks.overhead --paper-table --docs docs/benchmarks/paper_table1.md

`--docs FILE` writes the tables with the command, the date and the machine
(`benchmarks.report`); the docs link those files, nobody copies figures.

Targets: FLOPs ratio <= 1.01, latency ratio <= 1.03 (inference: the folded copy).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_classreg
from benchmarks import report

# (model, T, H, W) -> GFLOPs in Table 1 of Stergiou et al. (base models)
PAPER_TABLE1 = {
    ("resnet50_3d", 16, 224, 224): 80.32,
    ("resnet101_3d", 16, 224, 224): 110.98,
    ("wide_resnet50_3d", 16, 224, 224): 72.32,
    ("i3d", 16, 224, 224): 55.79,
}
DEFAULT_CASES = ("resnet50_3d:16x112x112", "i3d:16x112x112", "i3d:16x224x224")


def parse_case(text):
    name, _, size = text.partition(":")
    t, h, w = (int(v) for v in size.split("x"))
    return name, (t, h, w, 3)


def build(name, shape, class_regularization, num_classes):
    keras.utils.set_random_seed(0)
    return keras_classreg.models.get(
        name,
        num_classes=num_classes,
        input_shape=shape,
        class_regularization=class_regularization,
    )


def timed_rounds(calls, runs, warmup):
    """Per-call seconds of each zero-argument callable: warm-up, then `runs`
    rounds timing one call of each, rotating which goes first (so no call
    always runs right after another one: cache state, frequency scaling)."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    for round_index in range(runs):
        for offset in range(len(calls)):
            index = (round_index + offset) % len(calls)
            start = time.perf_counter()
            calls[index]()
            times[index].append(time.perf_counter() - start)
    return times


def latencies(models, shape, runs, warmup):
    """Median seconds per call of each model, and the median per-round
    ratio of each model's time to the first model's."""
    x = tf.constant(np.random.default_rng(0).normal(size=(1, *shape)).astype("float32"))
    functions = [tf.function(lambda t, m=m: m(t, training=False)) for m in models]
    times = timed_rounds([lambda f=f: f(x).numpy() for f in functions], runs, warmup)
    ratios = [statistics.median(t / b for t, b in zip(bucket, times[0])) for bucket in times]
    return [statistics.median(t) for t in times], ratios


def block_times(models, shape, runs, warmup):
    """Median seconds that the Class Regularization blocks of each model add
    to a forward pass (one clip), timed without the rest of the network.

    Each model's blocks run on their own inputs in one tf.function that
    returns one element of each block's output (so no activation is copied
    out); a control function returning the same element of each input is
    timed in the same rounds and subtracted (call overhead)."""
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
    last = lambda tensor: tf.reshape(tensor, [-1])[-1]  # noqa: E731
    calls = []

    def timed(function, activations):
        calls.append(lambda: [t.numpy() for t in function(*activations)])

    for model in models:
        blocks = keras_classreg.class_regularization_blocks(model)
        probe = keras.Model(model.inputs, [block.input for block in blocks])
        activations = [tf.constant(a) for a in probe(x, training=False)]
        timed(
            tf.function(lambda *acts, blocks=blocks: [last(b(a)) for b, a in zip(blocks, acts)]),
            activations,
        )
    timed(tf.function(lambda *acts: [last(a) for a in acts]), activations)
    times = timed_rounds(calls, runs, warmup)
    control = statistics.median(times[-1])
    return [max(statistics.median(t) - control, 0.0) for t in times[:-1]]


def paper_table(num_classes):
    """(header, rows) of the base models' FLOPs vs the paper's Table 1."""
    header = ["model", "input", "measured GFLOPs", "GMACs", "paper GFLOPs", "measured / paper"]
    rows = []
    for (name, t, h, w), paper in PAPER_TABLE1.items():
        gflops = keras_classreg.flops(build(name, (t, h, w, 3), False, num_classes)) / 1e9
        rows.append(
            [
                name,
                f"{t}x{h}x{w}",
                f"{gflops:.2f}",
                f"{gflops / 2:.2f}",
                f"{paper:.2f}",
                f"{gflops / paper:.3f}",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
        keras.backend.clear_session()
    return header, rows


MODEL_HEADER = [
    "model",
    "input",
    "GFLOPs base",
    "GFLOPs ClassReg",
    "FLOPs ratio",
    "ms base",
    "ms ClassReg (trainable)",
    "ratio",
    "ms ClassReg (folded)",
    "ratio",
]
BLOCKS_HEADER = [
    "model",
    "input",
    "ms base",
    "ms blocks (trainable)",
    "estimated ratio",
    "ms blocks (folded)",
    "estimated ratio",
]


def overhead_tables(cases, num_classes, runs, warmup, latency=True):
    """(model rows, blocks-alone rows) for `cases` (`MODEL:TxHxW`)."""
    model_rows, blocks_rows = [], []
    for case in cases:
        name, shape = parse_case(case)
        base = build(name, shape, False, num_classes)
        with_cr = build(name, shape, True, num_classes)
        f_base, f_cr = keras_classreg.flops(base), keras_classreg.flops(with_cr)
        size = "x".join(str(v) for v in shape[:3])
        if latency:
            folded = keras_classreg.fold_class_regularization(with_cr)
            (t_base, t_cr, t_fold), (_, r_cr, r_fold) = latencies(
                [base, with_cr, folded], shape, runs, warmup
            )
            b_cr, b_fold = block_times([with_cr, folded], shape, runs, warmup)
            blocks_rows.append(
                [
                    name,
                    size,
                    f"{t_base * 1e3:.1f}",
                    f"{b_cr * 1e3:.2f}",
                    f"{1 + b_cr / t_base:.3f}",
                    f"{b_fold * 1e3:.2f}",
                    f"{1 + b_fold / t_base:.3f}",
                ]
            )
            timing = [
                f"{t_base * 1e3:.1f}",
                f"{t_cr * 1e3:.1f}",
                f"{r_cr:.3f}",
                f"{t_fold * 1e3:.1f}",
                f"{r_fold:.3f}",
            ]
        else:
            timing = ["—"] * 5
        model_rows.append(
            [
                name,
                size,
                f"{f_base / 1e9:.3f}",
                f"{f_cr / 1e9:.3f}",
                f"{f_cr / f_base:.4f}",
                *timing,
            ]
        )
        print(" | ".join(model_rows[-1]), flush=True)
        keras.backend.clear_session()
    return model_rows, blocks_rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "cases", nargs="*", default=list(DEFAULT_CASES), help="MODEL:TxHxW, default: %(default)s"
    )
    parser.add_argument(
        "--num-classes", type=int, default=400, help="classes K (default 400, Kinetics-400)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=60,
        help="timed rounds (default 60: single calls on a shared VM wander by +-10 %%)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-latency", action="store_true", help="FLOPs only")
    parser.add_argument(
        "--paper-table",
        action="store_true",
        help="FLOPs of the base models at 16x224x224 vs the paper's Table 1",
    )
    parser.add_argument(
        "--docs",
        metavar="FILE",
        help="also write the tables, the command, the date and the "
        "machine as Markdown to FILE (e.g. docs/benchmarks/overhead.md)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error(
            f"--runs must be >= 1 and --warmup >= 0; received "
            f"--runs {args.runs} --warmup {args.warmup}"
        )
    for case in args.cases:
        try:
            parse_case(case)
        except ValueError:
            parser.error(f"a case is MODEL:TxHxW (e.g. i3d:16x112x112); received {case!r}")
    command = report.command("benchmarks.overhead", argv)

    if args.paper_table:
        header, rows = paper_table(args.num_classes)
        table = report.markdown_table(header, rows)
        print(table)
        if args.docs:
            report.write_page(
                args.docs,
                "FLOPs of the base models vs the paper's Table 1",
                command,
                [
                    f"K = {args.num_classes}; FLOPs counted by TensorFlow's "
                    "profiler (a multiply-add is 2 FLOPs), one clip.",
                    table,
                ],
            )
        return 0

    settings = (
        f"threads: {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}, "
        f"CPUs: {os.cpu_count()}, K = {args.num_classes}, batch 1, "
        f"median of {args.runs} rounds"
    )
    print(settings)
    model_rows, blocks_rows = overhead_tables(
        args.cases, args.num_classes, args.runs, args.warmup, latency=not args.no_latency
    )
    sections = [
        settings + ". Latency: each round times one call of the base model, the "
        "ClassReg model as trained and its folded inference copy, in rotating "
        "order; medians of the rounds, ratios are medians of the per-round ratios. "
        "Targets: FLOPs ratio <= 1.01, latency ratio <= 1.03 (folded copy).",
        report.markdown_table(MODEL_HEADER, model_rows),
    ]
    if blocks_rows:
        sections += [
            "The blocks alone (all blocks of one model on their own inputs, one "
            "clip, minus a control call; estimated ratio = 1 + blocks / base):",
            report.markdown_table(BLOCKS_HEADER, blocks_rows),
        ]
    print("\n\n".join(sections[1:]))
    if args.docs:
        report.write_page(
            args.docs, "Cost of Class Regularization: FLOPs and CPU latency", command, sections
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
