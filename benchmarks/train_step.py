"""Training step time with vs without Class Regularization, in one run.

Builds the same model twice (same seed), with and without the Class
Regularization blocks, compiles both exactly as `training.train` does (SGD
momentum 0.9 + weight decay, cross-entropy, top-1/top-5 metrics), then times
`--steps` training steps on one fixed random batch, alternating between the
two models step by step so that both see the same machine load. Reports the
median step time of each and their ratio (target <= 1.05).

    python -m benchmarks.train_step                       # ResNet-50-3D, CPU
    python -m benchmarks.train_step --clip 16x112x112 --batch-size 8 \\
        --mixed-precision --xla                           # on a GPU

Prints a JSON line with every figure at the end.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_classreg import models  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.optimization import make_optimizer  # noqa: E402
from benchmarks import report  # noqa: E402


def parse_clip(text):
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TxHxW, e.g. 16x112x112; received {text!r}"
        ) from None
    return t, h, w


def compiled_model(args, class_regularization):
    keras.utils.set_random_seed(0)
    t, h, w = args.clip
    model = models.get(
        args.model,
        num_classes=args.num_classes,
        input_shape=(t, h, w, 3),
        class_regularization=class_regularization,
    )
    config = TrainConfig(data="-", run_dir="-", epochs=1, learning_rate=0.01,
                         warmup_epochs=0)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch=args.steps + args.warmup),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="top1"),
                 keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")],
        jit_compile=args.xla,
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m benchmarks.train_step --model resnet50_3d "
        "--clip 8x112x112 --batch-size 2 --steps 10",
    )
    parser.add_argument("--model", default="resnet50_3d",
                        help="Model name from keras_classreg.models.names().")
    parser.add_argument("--clip", type=parse_clip, default=(8, 112, 112),
                        help="Clip size TxHxW.")
    parser.add_argument("--batch-size", type=int, default=2, help="Batch size.")
    parser.add_argument("--num-classes", type=int, default=400,
                        help="Number of classes (Kinetics-400: 400).")
    parser.add_argument("--steps", type=int, default=10,
                        help="Timed steps per model.")
    parser.add_argument("--warmup", type=int, default=2,
                        help="Untimed steps per model first (tracing, autotuning).")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="Use the mixed_float16 policy (GPUs).")
    parser.add_argument("--xla", action="store_true",
                        help="Compile the training step with XLA.")
    parser.add_argument("--docs", metavar="FILE",
                        help="Also write the figures, the command, the date and "
                        "the machine as Markdown to FILE (e.g. "
                        "docs/benchmarks/train_step.md).")
    args = parser.parse_args(argv)

    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    rng = np.random.default_rng(0)
    t, h, w = args.clip
    x = rng.standard_normal((args.batch_size, t, h, w, 3)).astype("float32")
    y = np.eye(args.num_classes, dtype="float32")[
        rng.integers(0, args.num_classes, args.batch_size)]
    x, y = tf.constant(x), tf.constant(y)

    runs = {"base": compiled_model(args, False),
            "classreg": compiled_model(args, True)}
    times = {name: [] for name in runs}
    for step in range(args.warmup + args.steps):
        for name, model in runs.items():
            start = time.perf_counter()
            logs = model.train_on_batch(x, y, return_dict=True)
            float(logs["loss"])  # wait for the step to finish
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
        if step >= args.warmup:
            print(f"step {step - args.warmup + 1}/{args.steps}: "
                  f"base {times['base'][-1] * 1e3:.1f} ms, "
                  f"classreg {times['classreg'][-1] * 1e3:.1f} ms", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "model": args.model,
        "clip": "x".join(map(str, args.clip)),
        "batch_size": args.batch_size,
        "num_classes": args.num_classes,
        "mixed_precision": args.mixed_precision,
        "xla": args.xla,
        "devices": [d.name for d in tf.config.list_logical_devices()
                    if d.device_type in ("GPU", "CPU")],
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} CPUs",
        "steps": args.steps,
        "base_step_ms": round(median["base"] * 1e3, 1),
        "classreg_step_ms": round(median["classreg"] * 1e3, 1),
        "ratio": round(median["classreg"] / median["base"], 4),
        "target_ratio": 1.05,
    }
    print(f"median step: base {result['base_step_ms']} ms, ClassReg "
          f"{result['classreg_step_ms']} ms, ratio {result['ratio']} "
          f"(target <= 1.05)")
    print(json.dumps(result))
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.train_step", argv))
    return 0


def write_docs(result, path, command):
    """The figures as Markdown under the command, date and machine."""
    settings = (f"{result['model']}, {result['num_classes']} classes, clips "
                f"{result['clip']}, batch {result['batch_size']}, mixed precision "
                f"{'on' if result['mixed_precision'] else 'off'}, XLA "
                f"{'on' if result['xla'] else 'off'}; devices "
                f"{', '.join(result['devices'])}. Median of {result['steps']} "
                "steps of each model, alternating step by step.")
    table = report.markdown_table(
        ["base step", "ClassReg step", "ratio", "target"],
        [[f"{result['base_step_ms']} ms", f"{result['classreg_step_ms']} ms",
          result["ratio"], f"<= {result['target_ratio']}"]])
    report.write_page(path, "Training step with vs without Class Regularization",
                      command, [settings, table])


if __name__ == "__main__":
    sys.exit(main())
