"""Training step time: what every user gets, what this machine can do, and
what Class Regularization costs, in one run.

For each model and clip size, times `train_on_batch` on one fixed random
batch (models compiled as `training.train` compiles them: SGD momentum 0.9
with weight decay, cross-entropy, top-1/top-5 metrics) and reports

- the **default** configuration: the Class Regularization model as
  `python -m training.train` trains it by default: `TF_ENABLE_ONEDNN_OPTS`
  as that command line sets it (`training.onednn.cli_choice`), XLA as
  `training.compilation.resolve_xla` decides for a zoo model, TensorFlow's
  own thread settings;
- the **best** configuration found over XLA on/off, oneDNN on/off
  (`TF_ENABLE_ONEDNN_OPTS`, read at start-up, hence one subprocess per
  setting) and intra-op thread counts;
- a **forward** pass alone (inference, `training=False`), with and
  without XLA, for scale: a step is forward + backward + update (and
  `training.evaluate` compiles its forward pass with XLA only on GPUs);
- the **ClassReg/base** ratio: the model with and without its Class
  Regularization blocks, default configuration, steps alternating between
  the two (target <= 1.05);
- **default/best** (target <= 1.05: the default is the fastest
  configuration, within noise).

Within a process the variants run in rotation, one step each per round,
so that all of them see the same machine load; figures are medians over
`--steps` rounds after `--warmup` rounds (compilation included there).

    python -m benchmarks.train_step                        # the full table
    python -m benchmarks.train_step --quick                # a few minutes
    python -m benchmarks.train_step --json train_step.json

Prints the CPU model, a Markdown table of the figures and, last, one JSON
line with every figure (`--json FILE` also writes it to a file). Figures in
the documentation come from this script's output, never typed by hand.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import report
from training.onednn import ENV, cli_choice

DEFAULT_MODELS = ("resnet18_3d", "resnet50_3d", "i3d")
DEFAULT_CLIPS = ("8x112x112", "16x112x112")
# --quick: every model at a small clip, default oneDNN and thread settings
# only (XLA on and off), few steps
QUICK = dict(clips=["4x56x56"], steps=2, warmup=1, onednn=[], threads=[0])
TARGET_RATIO = 1.05


def parse_clip(text):
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TxHxW, e.g. 16x112x112; received {text!r}"
        ) from None
    return f"{t}x{h}x{w}"


def physical_cores():
    """Physical cores (sockets x cores per socket) from /proc/cpuinfo, or
    `None` when unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return None
    cores = set()
    physical = core = None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if physical is not None and core is not None:
                cores.add((physical, core))
            physical = core = None
    return len(cores) or None


# ---------------------------------------------------------------------------
# Worker: one process, one oneDNN setting and thread count
# ---------------------------------------------------------------------------
def _worker(args):
    import numpy as np
    import tensorflow as tf

    threads = args.threads[0] if args.threads else 0
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras
    from tensorflow.python.util import _pywrap_util_port

    from keras_classreg import models
    from training.config import TrainConfig
    from training.optimization import make_optimizer

    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    from training.compilation import resolve_xla

    default = resolve_xla(
        None, tf.distribute.get_strategy(), zoo_model=True, mixed_precision=args.mixed_precision
    )
    figures = {
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "default_xla": default.enabled,
        "default_reason": default.reason,
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "results": [],
    }
    config = TrainConfig(data="-", run_dir="-", epochs=1, learning_rate=0.01, warmup_epochs=0)

    def build(name, clip, class_regularization):
        keras.utils.set_random_seed(0)
        t, h, w = (int(v) for v in clip.split("x"))
        model = models.get(
            name,
            num_classes=args.num_classes,
            input_shape=(t, h, w, 3),
            class_regularization=class_regularization,
        )
        return model

    def step_functions(model):
        """`{xla: train function}` of one compiled model, one per XLA mode
        timed (same weights, optimizer and metrics)."""
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch=1000),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=[
                keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
            ],
        )
        functions = {}
        for xla in args.xla_modes:
            model.jit_compile = xla
            model.make_train_function(force=True)
            functions[xla] = model.train_function
        return functions

    for name in args.models:
        for clip in args.clips:
            t, h, w = (int(v) for v in clip.split("x"))
            rng = np.random.default_rng(0)
            x = tf.constant(rng.standard_normal((args.batch_size, t, h, w, 3)), tf.float32)
            y = tf.constant(
                np.eye(args.num_classes, dtype="float32")[
                    rng.integers(0, args.num_classes, args.batch_size)
                ]
            )
            calls = {}
            classreg = build(name, clip, True)
            for xla, function in step_functions(classreg).items():
                calls[f"classreg_xla{int(xla)}"] = _train_call(classreg, function, x, y)
            if args.with_base:
                base = build(name, clip, False)
                for xla, function in step_functions(base).items():
                    calls[f"base_xla{int(xla)}"] = _train_call(base, function, x, y)
            if args.with_forward:
                for xla in args.xla_modes:
                    forward = tf.function(
                        lambda clips, model=classreg: model(clips, training=False), jit_compile=xla
                    )
                    calls[f"forward_xla{int(xla)}"] = lambda f=forward, x=x: f(x).numpy()
            times = {key: [] for key in calls}
            failures = {}
            for round_ in range(args.warmup + args.steps):
                for key, call in calls.items():
                    if key in failures:
                        continue
                    started = time.perf_counter()
                    try:
                        call()
                    except Exception as error:  # noqa: BLE001 (reported, not hidden)
                        failures[key] = (
                            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
                        )
                        continue
                    if round_ >= args.warmup:
                        times[key].append(time.perf_counter() - started)
                print(
                    f"[worker onednn={int(figures['onednn'])} threads={figures['threads']}] "
                    f"{name} {clip} round {round_ + 1}/{args.warmup + args.steps}: "
                    + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in times.items() if v),
                    file=sys.stderr,
                    flush=True,
                )
            figures["results"].append(
                {
                    "model": name,
                    "clip": clip,
                    "ms": {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items() if v},
                    "ratios": _ratios(times),
                    "failures": failures,
                }
            )
            del calls, classreg
            keras.backend.clear_session()
    print(json.dumps(figures))


def _train_call(model, function, x, y):
    def call():
        model.train_function = function
        logs = model.train_on_batch(x, y, return_dict=True)
        float(logs["loss"])  # wait for the step

    return call


def _ratios(times):
    """Median of the per-round ClassReg/base ratios (same round, same load)."""
    ratios = {}
    for xla in (1, 0):
        a, b = times.get(f"classreg_xla{xla}"), times.get(f"base_xla{xla}")
        if a and b and len(a) == len(b):
            ratios[f"classreg_over_base_xla{xla}"] = round(
                statistics.median(p / q for p, q in zip(a, b)), 4
            )
    return ratios


# ---------------------------------------------------------------------------
# Parent: runs the workers, collates, prints, writes the page
# ---------------------------------------------------------------------------
def _run_worker(args, onednn, threads, default):
    env = dict(os.environ)
    env.pop(ENV, None)
    if onednn is None:  # as python -m training.train sets it
        onednn = cli_choice(environ=env)[0]
    if onednn is not None:
        env[ENV] = onednn
    # the worker imports the same checkout as this process
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "benchmarks.train_step",
        "--worker",
        "--models",
        *args.models,
        "--clips",
        *args.clips,
        "--batch-size",
        str(args.batch_size),
        "--num-classes",
        str(args.num_classes),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(threads),
        "--xla-modes",
        *(["1", "0"] if not args.xla_only else ["1"]),
    ]
    if default:
        command += ["--with-base", "--with-forward"]
    if args.mixed_precision:
        command.append("--mixed-precision")
    label = (
        f"{'default: ' if default else ''}{ENV}={env.get(ENV, '(unset)')}, "
        f"threads {threads or 'default'}"
    )
    print(f"== {label}", flush=True)
    started = time.perf_counter()
    process = subprocess.run(command, env=env, cwd=root, stdout=subprocess.PIPE, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"label": label, "error": f"worker exited with {process.returncode}"}
    figures = json.loads(lines[-1])
    figures.update(
        label=label,
        onednn_env=onednn,
        default=default,
        seconds=round(time.perf_counter() - started, 1),
    )
    return figures


def _config_name(figures, xla):
    return (
        f"XLA {'on' if xla else 'off'}, oneDNN {'on' if figures['onednn'] else 'off'}, "
        f"{figures['threads']} threads"
    )


def collate(reports, args):
    """Per model and clip: default, best, forward and ratio figures."""
    default = next(r for r in reports if r.get("default") and "error" not in r)
    xla = int(default["default_xla"])
    rows = []
    for entry in default["results"]:
        key = (entry["model"], entry["clip"])
        default_ms = entry["ms"].get(f"classreg_xla{xla}")
        candidates = []
        for figures in reports:
            if "error" in figures:
                continue
            match = next((e for e in figures["results"] if (e["model"], e["clip"]) == key), None)
            if match is None:
                continue
            for xla in (1, 0):
                ms = match["ms"].get(f"classreg_xla{xla}")
                if ms is not None:
                    candidates.append((ms, _config_name(figures, xla)))
        best_ms, best_name = min(candidates) if candidates else (None, None)
        rows.append(
            {
                "model": key[0],
                "clip": key[1],
                "batch_size": args.batch_size,
                "default_config": _config_name(default, xla),
                "default_ms": default_ms,
                "best_config": best_name,
                "best_ms": best_ms,
                "default_over_best": (
                    round(default_ms / best_ms, 3) if default_ms and best_ms else None
                ),
                "forward_ms": entry["ms"].get("forward_xla1"),
                "forward_no_xla_ms": entry["ms"].get("forward_xla0"),
                "step_over_forward": (
                    round(default_ms / entry["ms"][f"forward_xla{xla}"], 2)
                    if default_ms and entry["ms"].get(f"forward_xla{xla}")
                    else None
                ),
                "base_ms": entry["ms"].get(f"base_xla{xla}"),
                "classreg_over_base": entry["ratios"].get(f"classreg_over_base_xla{xla}"),
                "classreg_over_base_other_xla": entry["ratios"].get(
                    f"classreg_over_base_xla{1 - xla}"
                ),
                "all": sorted(candidates),
                "failures": {
                    r["label"]: f
                    for r in reports
                    if "error" not in r
                    for e in r["results"]
                    if (e["model"], e["clip"]) == key
                    for f in [e["failures"]]
                    if f
                },
            }
        )
    return rows


def _fmt(ms):
    return "-" if ms is None else (f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.0f} ms")


def summary_lines(rows):
    lines = [
        "| model | clip | default step | best step (configuration) | default / best "
        "| forward (XLA) | forward (no XLA) | step / forward | base step "
        "| ClassReg / base |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["classreg_over_base"]
        mark = "" if ratio is None or ratio <= TARGET_RATIO else " (over target)"
        speed = row["default_over_best"]
        speed_mark = "" if speed is None or speed <= TARGET_RATIO else " (over target)"
        lines.append(
            f"| {row['model']} | {row['clip']} | {_fmt(row['default_ms'])} | "
            f"{_fmt(row['best_ms'])} ({row['best_config']}) | "
            f"{speed if speed is not None else '-'}{speed_mark} | "
            f"{_fmt(row['forward_ms'])} | {_fmt(row['forward_no_xla_ms'])} | "
            f"{row['step_over_forward'] or '-'} | "
            f"{_fmt(row['base_ms'])} | {ratio if ratio is not None else '-'}{mark} |"
        )
    return lines


def grid_lines(rows):
    lines = ["| model | clip | configuration | ClassReg step |", "|---|---|---|---|"]
    for row in rows:
        for ms, name in row["all"]:
            lines.append(f"| {row['model']} | {row['clip']} | {name} | {_fmt(ms)} |")
        for label, failures in row["failures"].items():
            for variant, message in failures.items():
                lines.append(
                    f"| {row['model']} | {row['clip']} | {label}, {variant} | failed: {message} |"
                )
    return lines


def _tensorflow_version():
    from importlib import metadata

    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python -m benchmarks.train_step --models resnet18_3d "
        "--clips 8x112x112 --steps 3",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help=f"Zoo models (default: {' '.join(DEFAULT_MODELS)}).",
    )
    parser.add_argument(
        "--clips",
        nargs="+",
        type=parse_clip,
        default=list(DEFAULT_CLIPS),
        help=f"Clip sizes TxHxW (default: {' '.join(DEFAULT_CLIPS)}).",
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=400, help="Classes (Kinetics-400: 400).")
    parser.add_argument("--steps", type=int, default=5, help="Timed rounds.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed rounds first (compilation).")
    parser.add_argument(
        "--onednn",
        nargs="*",
        default=["0", "1"],
        choices=("0", "1"),
        help="TF_ENABLE_ONEDNN_OPTS values to try besides the default (none: only the default).",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=None,
        help="Intra-op thread counts to try, 0 = TensorFlow's default "
        "(default: 0 and the number of physical cores if it differs).",
    )
    parser.add_argument(
        "--xla-only",
        action="store_true",
        help="Skip the XLA-off variants (they can take minutes per step "
        "on some CPUs without the models' space-to-depth gradients).",
    )
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPUs).")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A few minutes: clip 4x56x56, 2 steps, TensorFlow's default "
        "oneDNN and thread settings only (XLA on and off); other "
        "flags given explicitly still apply.",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="Also write the JSON object with every figure to FILE.",
    )
    parser.add_argument(
        "--docs",
        default=None,
        metavar="FILE",
        help="Also write both tables as Markdown, with the command, "
        "date and machine, to FILE (docs/benchmarks/train_step.md).",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-base", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-forward", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--xla-modes", nargs="+", type=int, default=[1, 0], help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for name, value in QUICK.items():
            if f"--{name}" not in given:
                setattr(args, name, value)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be >= 1, --warmup >= 0")
    if args.worker:
        args.xla_modes = [bool(v) for v in args.xla_modes]
        _worker(args)
        return 0
    from keras_classreg import models

    unknown = [m for m in args.models if m not in models.names()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; expected some of {models.names()}")
    cores = physical_cores()
    threads = (
        args.threads
        if args.threads is not None
        else sorted({0} | ({cores} if cores and cores != os.cpu_count() else set()))
    )
    meta = {
        "command": report.command("benchmarks.train_step", argv),
        "cpu": report.cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": cores,
        "batch_size": args.batch_size,
        "num_classes": args.num_classes,
        "steps": args.steps,
        "warmup": args.warmup,
        "mixed_precision": args.mixed_precision,
        "date": datetime.date.today().isoformat(),
    }
    print(
        f"CPU: {meta['cpu']} ({meta['logical_cpus']} logical CPUs, {cores or '?'} physical cores)",
        flush=True,
    )
    started = time.perf_counter()
    reports = [_run_worker(args, None, 0, default=True)]
    if "error" in reports[0]:
        print(f"the default configuration failed: {reports[0]['error']}", file=sys.stderr)
        return 1
    meta["gpus"] = reports[0]["gpus"]
    meta["default_env"] = reports[0]["label"]
    meta["default_xla_reason"] = reports[0]["default_reason"]
    default_onednn = "1" if reports[0]["onednn"] else "0"
    for onednn in [] if meta["gpus"] else args.onednn:
        for count in threads:
            if onednn == default_onednn and count == 0:
                continue  # that is the default configuration
            reports.append(_run_worker(args, onednn, count, default=False))
    for count in [] if meta["gpus"] else threads:
        if count and default_onednn not in args.onednn:
            reports.append(_run_worker(args, None, count, default=False))
    meta["seconds"] = time.perf_counter() - started
    rows = collate(reports, args)
    print()
    print("\n".join(summary_lines(rows)))
    print()
    print("\n".join(grid_lines(rows)))
    meta["tensorflow"] = _tensorflow_version()
    result = {
        "meta": meta,
        "rows": rows,
        "workers": [{k: v for k, v in r.items() if k != "results"} for r in reports],
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=1)
        print(f"\nwrote {args.json}")
    if args.docs:
        write_docs(rows, meta, args.docs)
        print(f"wrote {args.docs}")
    print(json.dumps(result))
    return 0


def write_docs(rows, meta, path):
    """Both tables as a Markdown page (`benchmarks.report`)."""
    settings = (
        f"Batch {meta['batch_size']}, {meta['num_classes']} classes, mixed "
        f"precision {'on' if meta['mixed_precision'] else 'off'}; medians of "
        f"{meta['steps']} rounds after {meta['warmup']} warm-up round(s), the "
        "variants in rotation. The **default** configuration is what `python -m "
        "training.train` runs by default (Class Regularization model, "
        "TF_ENABLE_ONEDNN_OPTS as that command line sets it, XLA as "
        "training.compilation decides, TensorFlow's thread defaults); **best** is "
        "the fastest over XLA on/off, oneDNN on/off and thread counts (target for "
        f"default / best <= {TARGET_RATIO}); **ClassReg / base** compares the model "
        f"with and without its blocks in the default configuration (target <= "
        f"{TARGET_RATIO}). Physical cores: {meta['physical_cores'] or '?'}; "
        f"whole run {meta['seconds']:.0f} s.\n\n"
        f"Default here: {meta['default_env']}; {meta['default_xla_reason']}."
    )
    return report.write_page(
        path,
        "Training step: default vs best configuration, forward pass, Class Regularization's cost",
        meta["command"],
        [
            settings,
            "\n".join(summary_lines(rows)),
            "Every configuration:",
            "\n".join(grid_lines(rows)),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
