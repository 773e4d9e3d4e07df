"""Per-layer CPU cost of the zoo's 3D convolutions and poolings, with and
without XLA: finds the layers that "fall off a cliff" on this CPU.

TensorFlow's own CPU kernel for the filter gradient of a strided Conv3D
(`Conv3DBackpropFilterV2`) is tens of times slower than XLA's on some CPUs,
and XLA's own code has cliffs of its own (a strided convolution's input
gradient run as a plain loop, small spatial sizes): the zoo's
`SpaceToDepthConv3D` exists to keep off them. This script walks the given
zoo models, collects every distinct `Conv3D` / `MaxPooling3D` /
`AveragePooling3D` configuration together with the input shape it sees at
the given clip size, and times, for each, the forward pass, the input
gradient and (convolutions) the filter gradient, each as a `tf.function`
with `jit_compile=False` (TensorFlow kernels) and `jit_compile=True` (XLA),
alternating the two. Each timing is the median of `--repeats` calls after
one warm-up call (whose time, compilation included, is not counted).

A row is flagged as a cliff when its throughput (GFLOP/s of the forward
convolution's multiply-adds, counted twice) is below 1/`--cliff-factor` of
the median throughput of the same pass in the same mode, or when XLA is
more than `--cliff-factor` times faster than TensorFlow on it (or the other
way round). Poolings are not flagged by throughput (they do little
arithmetic), only by the TF/XLA ratio.

    python -m benchmarks.layer_cliffs                    # default models, 8x112x112
    python -m benchmarks.layer_cliffs --quick            # a few minutes
    python -m benchmarks.layer_cliffs --plain-conv3d     # as keras.layers.Conv3D

The zoo's convolutions are `SpaceToDepthConv3D` layers (their strided
gradients avoid the cliff); `--plain-conv3d` times the same configurations
as plain `keras.layers.Conv3D` layers, to show the cliff they avoid.
`--dilated` adds a dilated 3x3x3 convolution (not in the zoo) to the survey.
Prints the CPU model, a table, then one JSON line with every row (`--json
FILE` also writes it to a file; `--docs FILE` writes every row as a Markdown
page under the command, date and machine, e.g. docs/benchmarks/layer_cliffs.md
with `--plain-conv3d`, the figures `SpaceToDepthConv3D`'s comments refer to).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from benchmarks import report
from keras_classreg import models as zoo

DEFAULT_MODELS = ("resnet18_3d", "resnet50_3d", "resnext101_3d", "i3d")
SURVEYED = (keras.layers.Conv3D, keras.layers.MaxPooling3D, keras.layers.AveragePooling3D)


def parse_clip(text):
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TxHxW, e.g. 8x112x112; received {text!r}"
        ) from None
    return t, h, w


def describe(layer):
    """A short text for a layer's configuration."""
    config = layer.get_config()
    if isinstance(layer, keras.layers.Conv3D):
        text = (
            f"conv {'x'.join(map(str, config['kernel_size']))} "
            f"s{''.join(map(str, config['strides']))} -> {config['filters']}"
        )
        if config.get("groups", 1) != 1:
            text += f" g{config['groups']}"
        if tuple(config["dilation_rate"]) != (1, 1, 1):
            text += f" d{''.join(map(str, config['dilation_rate']))}"
    else:
        kind = "maxpool" if isinstance(layer, keras.layers.MaxPooling3D) else "avgpool"
        text = (
            f"{kind} {'x'.join(map(str, config['pool_size']))} "
            f"s{''.join(map(str, config['strides']))}"
        )
    return f"{text} {config['padding']}"


def layer_key(layer, input_shape):
    config = dict(layer.get_config())
    config.pop("name", None)
    config.pop("trainable", None)
    return (
        type(layer).__name__,
        tuple(input_shape),
        json.dumps(config, sort_keys=True, default=str),
    )


def _after_weights(tensor, memo):
    """Whether any layer with weights lies between the model input and
    `tensor` (else a training step never needs the gradient w.r.t. it)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return False
    operation = history.operation
    if id(operation) not in memo:
        memo[id(operation)] = False  # an input layer, until proven otherwise
        node = operation._inbound_nodes[history.node_index]
        memo[id(operation)] = (
            bool(operation.weights)
            and not isinstance(operation, keras.layers.InputLayer)
            or any(_after_weights(t, memo) for t in node.input_tensors)
        )
    return memo[id(operation)]


def collect_layers(model_names, clip, batch_size, dilated):
    """`[(description, layer config, class, input shape, models)]`, one per
    distinct configuration and input shape, in first-seen order."""
    found = {}
    for name in model_names:
        model = zoo.get(name, num_classes=10, input_shape=(*clip, 3), class_regularization=False)
        memo = {}
        for layer in model._flatten_layers(include_self=False):
            if not isinstance(layer, SURVEYED):
                continue
            needs_input_grad = _after_weights(layer.input, memo)
            shape = (batch_size, *layer.input.shape[1:])
            key = layer_key(layer, shape)
            if key not in found:
                found[key] = {
                    "what": describe(layer),
                    "class": type(layer),
                    "config": layer.get_config(),
                    "shape": shape,
                    "layers": [],
                    "models": [],
                    "input_grad": needs_input_grad,
                }
            entry = found[key]
            entry["input_grad"] |= needs_input_grad
            entry["layers"].append(f"{name}/{layer.name}")
            if name not in entry["models"]:
                entry["models"].append(name)
        del model
        keras.backend.clear_session()
    entries = list(found.values())
    if dilated:
        t, h, w = clip
        layer = keras.layers.Conv3D(
            128, 3, dilation_rate=(1, 2, 2), padding="same", use_bias=False, name="dilated"
        )
        entries.append(
            {
                "what": describe(layer),
                "class": keras.layers.Conv3D,
                "config": layer.get_config(),
                "shape": (batch_size, max(1, t // 2), h // 8, w // 8, 128),
                "layers": ["(not in the zoo)"],
                "models": [],
                "input_grad": True,
            }
        )
    return entries


def conv_flops(config, input_shape, output_shape):
    """Forward FLOPs (2 x multiply-adds) of a Conv3D."""
    kernel = np.prod(config["kernel_size"])
    in_channels = input_shape[-1] // config.get("groups", 1)
    return 2.0 * np.prod(output_shape) * kernel * in_channels


def passes(layer, is_conv, with_input_grad):
    """The functions timed for one layer: forward, input grad (when a
    training step needs it: some layer before it has weights), filter grad."""

    def forward(x):
        return layer(x)

    def input_grad(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return tape.gradient(y, x, output_gradients=upstream)

    def filter_grad(x, upstream):
        with tf.GradientTape() as tape:
            y = layer(x)
        return tape.gradient(y, layer.kernel, output_gradients=upstream)

    result = {"forward": forward}
    if with_input_grad:
        result["grad_input"] = input_grad
    if is_conv:
        result["grad_filter"] = filter_grad
    return result


def time_call(function, args, repeats):
    def run():
        out = function(*args)
        out.numpy()  # wait for the result

    started = time.perf_counter()
    run()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), first


def survey(entries, repeats, modes, plain_conv3d=False):
    rows = []
    for index, entry in enumerate(entries, start=1):
        cls = entry["class"]
        if plain_conv3d and issubclass(cls, keras.layers.Conv3D):
            cls = keras.layers.Conv3D
        layer = cls.from_config(entry["config"])
        x = tf.random.stateless_normal(entry["shape"], seed=(index, 0))
        y = layer(x)
        upstream = tf.random.stateless_normal(y.shape, seed=(index, 1))
        is_conv = isinstance(layer, keras.layers.Conv3D)
        flops = conv_flops(entry["config"], entry["shape"], y.shape) if is_conv else None
        for pass_name, function in passes(layer, is_conv, entry["input_grad"]).items():
            args = (x,) if pass_name == "forward" else (x, upstream)
            row = {
                "what": entry["what"],
                "layer_class": cls.__name__,
                "input": "x".join(map(str, entry["shape"])),
                "pass": pass_name,
                "gflop": None if flops is None else flops / 1e9,
                "models": entry["models"],
                "layers": entry["layers"],
            }
            # interleave the modes, one call each, so both see the same load
            compiled = {mode: tf.function(function, jit_compile=(mode == "xla")) for mode in modes}
            for mode in modes:
                try:
                    median, first = time_call(compiled[mode], args, repeats)
                    row[f"{mode}_ms"] = round(median * 1e3, 2)
                    row[f"{mode}_first_ms"] = round(first * 1e3, 1)
                except (tf.errors.OpError, ValueError, NotImplementedError) as error:
                    row[f"{mode}_ms"] = None
                    row[f"{mode}_error"] = (
                        f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    )
            rows.append(row)
            print(format_row(row, modes), flush=True)
    return rows


def flag_cliffs(rows, modes, factor):
    """Adds `cliff` (a list of reasons, empty when none) to every row."""
    medians = {}
    for mode in modes:
        for pass_name in ("forward", "grad_input", "grad_filter"):
            rates = [
                r["gflop"] / (r[f"{mode}_ms"] / 1e3)
                for r in rows
                if r["pass"] == pass_name and r["gflop"] and r.get(f"{mode}_ms")
            ]
            if rates:
                medians[mode, pass_name] = statistics.median(rates)
    for row in rows:
        reasons = []
        for mode in modes:
            ms = row.get(f"{mode}_ms")
            if ms is None:
                reasons.append(f"{mode} failed")
                continue
            if row["gflop"]:
                rate = row["gflop"] / (ms / 1e3)
                row[f"{mode}_gflops"] = round(rate, 1)
                median = medians.get((mode, row["pass"]))
                if median and rate * factor < median:
                    reasons.append(f"{mode} at {rate:.1f} GFLOP/s, median {median:.1f}")
        if len(modes) == 2 and all(row.get(f"{m}_ms") for m in modes):
            tf_ms, xla_ms = row["tf_ms"], row["xla_ms"]
            if tf_ms > factor * xla_ms:
                reasons.append(f"TF {tf_ms / xla_ms:.1f}x slower than XLA")
            if xla_ms > factor * tf_ms:
                reasons.append(f"XLA {xla_ms / tf_ms:.1f}x slower than TF")
        row["cliff"] = reasons
    return rows


def format_row(row, modes):
    cells = [f"{row['what']:<34}", f"{row['input']:<18}", f"{row['pass']:<11}"]
    for mode in modes:
        ms = row.get(f"{mode}_ms")
        cells.append(f"{mode} {'failed' if ms is None else f'{ms:9.1f} ms'}")
    if len(modes) == 2 and row.get("tf_ms") and row.get("xla_ms"):
        cells.append(f"TF/XLA {row['tf_ms'] / row['xla_ms']:6.2f}")
    if row.get("cliff"):
        cells.append("CLIFF: " + "; ".join(row["cliff"]))
    return "  ".join(cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help=f"Zoo models to survey (default: {' '.join(DEFAULT_MODELS)}).",
    )
    parser.add_argument(
        "--clip",
        type=parse_clip,
        default=(8, 112, 112),
        help="Clip size TxHxW (default 8x112x112).",
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed calls per pass and mode (median)."
    )
    parser.add_argument("--modes", nargs="+", choices=("tf", "xla"), default=["tf", "xla"])
    parser.add_argument("--cliff-factor", type=float, default=5.0)
    parser.add_argument(
        "--dilated",
        action="store_true",
        help="Also time a dilated 3x3x3 convolution (not in the zoo).",
    )
    parser.add_argument(
        "--plain-conv3d",
        action="store_true",
        help="Time the convolutions as plain keras.layers.Conv3D "
        "(the zoo uses SpaceToDepthConv3D).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A few minutes: resnet18_3d and i3d at 4x56x56, batch 1, "
        "1 repeat (flags given explicitly still apply).",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="Also write the JSON object with every row to FILE.",
    )
    parser.add_argument(
        "--docs",
        default=None,
        metavar="FILE",
        help="Also write every row as a Markdown page, under the command, date "
        "and machine, to FILE (e.g. docs/benchmarks/layer_cliffs.md).",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="Only layers whose description matches this regular expression, e.g. 's(122|222)'.",
    )
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        quick = dict(models=["resnet18_3d", "i3d"], clip=(4, 56, 56), batch_size=1, repeats=1)
        for name, value in quick.items():
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)
    unknown = [m for m in args.models if m not in zoo.names()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; expected some of {zoo.names()}")

    print(
        f"CPU: {report.cpu_model()} ({os.cpu_count()} logical CPUs); TensorFlow "
        f"{tf.__version__}; TF_ENABLE_ONEDNN_OPTS="
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}",
        flush=True,
    )
    entries = collect_layers(args.models, args.clip, args.batch_size, args.dilated)
    if args.only:
        entries = [e for e in entries if re.search(args.only, e["what"])]
    print(f"{len(entries)} distinct layers", flush=True)
    rows = flag_cliffs(
        survey(entries, args.repeats, args.modes, args.plain_conv3d), args.modes, args.cliff_factor
    )
    print("\nCliffs:")
    for row in rows:
        if row["cliff"]:
            print(format_row(row, args.modes) + f"  ({', '.join(row['layers'][:3])})")
    if not any(row["cliff"] for row in rows):
        print("none")
    result = {
        "cpu": report.cpu_model(),
        "clip": "x".join(map(str, args.clip)),
        "batch_size": args.batch_size,
        "plain_conv3d": args.plain_conv3d,
        "tensorflow": tf.__version__,
        "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=1)
        print(f"\nwrote {args.json}")
    if args.docs:
        write_docs(result, args.modes, report.command("benchmarks.layer_cliffs", argv), args.docs)
        print(f"wrote {args.docs}")
    print(json.dumps(result))
    return 0


def write_docs(result, modes, command_line, path):
    """Every row of `result` as a Markdown page (`benchmarks.report`)."""
    layers = "keras.layers.Conv3D" if result["plain_conv3d"] else "SpaceToDepthConv3D (the zoo's)"
    header = ["layer", "input", "pass", *(f"{mode} ms" for mode in modes), "cliff"]
    rows = [
        [
            row["what"],
            row["input"],
            row["pass"],
            *("failed" if row.get(f"{m}_ms") is None else f"{row[f'{m}_ms']:.1f}" for m in modes),
            "; ".join(row["cliff"]),
        ]
        for row in result["rows"]
    ]
    return report.write_page(
        path,
        "Per-layer CPU cost of the zoo's 3D convolutions and poolings, TensorFlow vs XLA",
        command_line,
        [
            f"Clips of {result['clip']}, batch {result['batch_size']}; convolutions "
            f"as {layers}; medians of the timed calls after one warm-up call.",
            report.markdown_table(header, rows),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
