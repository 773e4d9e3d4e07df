"""The whole chain on CPU, end to end: what `make demo` runs.

    python -m demo --out demo_out

1. synthesize  moving-shape videos whose class is the motion (real .mp4s)
2. prepare     decode them once into TFRecord shards + manifest.json
3. train       a Class Regularization model (ResNet-18-3D at 8x64x64)
4. evaluate    clip/video top-1 on the held-out videos (must beat chance)
5. export      a versioned SavedModel for TF Serving
6. serve       start `python -m serving.server` on it, classify one video
               through gRPC
7. explain     per-block class-evidence pictures of one video

Each step is a small function `step(demo)` that reads what earlier steps
recorded in `demo` and records its own artefacts; `STEPS` lists them in
order. Every artefact's path is printed at the end (and written to
`OUT/artefacts.json`). Re-running resumes: finished synthesis, shards and
training runs are reused. The demo sits on top of both `training` and
`serving` (which never import each other).
"""

import dataclasses
import json
import os
import sys
import time

import cliutil
from training import onednn

MODEL_NAME = "classreg"
# A quarter of the published widths (1/16 of the parameters): on the demo's
# 288 training videos it learns as well as full width, in far less time
# (python -m benchmarks.demo_time measures it)
DEFAULT_WIDEN_FACTOR = 0.25


@dataclasses.dataclass
class Demo:
    """The demo's settings and what its steps have produced so far."""

    out: str
    classes: int = 6
    per_class: int = 64
    frames: int = 32
    size: int = 64
    model: str = "resnet18_3d"
    # None: DEFAULT_WIDEN_FACTOR for models whose builder has a
    # widen_factor (the zoo's ResNets), the model's own widths otherwise
    widen_factor: float = None
    clip_length: int = 8
    crop_size: int = 64
    epochs: int = 7
    batch_size: int = 8
    learning_rate: float = 0.002
    seed: int = 0
    num_clips: int = 4
    artefacts: dict = dataclasses.field(default_factory=dict)
    facts: dict = dataclasses.field(default_factory=dict)

    def path(self, *parts):
        return os.path.join(os.path.abspath(self.out), *parts)

    def record(self, name, path, note=""):
        self.artefacts[name] = {"path": os.path.abspath(path), "note": note}


def _say(message):
    print(f"[demo] {message}", flush=True)


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------
def step_synthesize(demo):
    from training.data import load_folder, write_synthetic_dataset

    root = demo.path("videos")
    marker = os.path.join(root, "synth.json")
    wanted = {
        "per_class": demo.per_class,
        "frames": demo.frames,
        "size": demo.size,
        "seed": demo.seed,
    }
    done = json.load(open(marker)) if os.path.isfile(marker) else {}
    if (
        all(done.get(k) == v for k, v in wanted.items())
        and len(done.get("classes", [])) == demo.classes
    ):
        demo.facts["dataset"] = load_folder(root, test_fraction=0.25, seed=demo.seed)
        _say(f"synthetic videos already in {root}")
    else:
        demo.facts["dataset"] = write_synthetic_dataset(
            root,
            classes=demo.classes,
            per_class=demo.per_class,
            frames=demo.frames,
            size=demo.size,
            seed=demo.seed,
            test_fraction=0.25,
            progress=True,
        )
    dataset = demo.facts["dataset"]
    demo.facts["class_names"] = list(dataset.class_names)
    demo.facts["test_video"] = next(
        str(item.path) for item in dataset.items if item.subset == "test"
    )
    demo.record(
        "videos",
        root,
        f"{len(dataset.items)} .mp4 files, classes: {', '.join(dataset.class_names)}",
    )


def step_prepare(demo):
    from training.data import prepare_dataset

    out = demo.path("prepared")
    manifest = prepare_dataset(
        demo.facts["dataset"], out, short_side=demo.size, workers=min(2, os.cpu_count() or 1)
    )
    counts = {name: s["videos"] for name, s in manifest["subsets"].items()}
    if manifest["skipped"]:
        raise RuntimeError(f"prepare skipped videos: {manifest['skipped']}")
    demo.facts["prepared"] = out
    demo.record(
        "shards",
        os.path.join(out, "manifest.json"),
        f"TFRecord shards, videos per subset: {counts}",
    )


def _model_options(demo):
    """The builder's `widen_factor`: as given, or DEFAULT_WIDEN_FACTOR where
    the builder takes one; a given width for a builder without one is an
    error."""
    import inspect

    from training.model_building import resolve_model_builder

    builder = resolve_model_builder(demo.model)
    takes_width = "widen_factor" in inspect.signature(builder).parameters
    if demo.widen_factor is None:
        return {"widen_factor": DEFAULT_WIDEN_FACTOR} if takes_width else {}
    if not takes_width:
        raise ValueError(
            f"--widen-factor {demo.widen_factor}: model {demo.model!r} "
            "has no widen_factor argument; leave --widen-factor out."
        )
    return {"widen_factor": demo.widen_factor}


def step_train(demo):
    from training.train import train

    options = _model_options(demo)
    demo.widen_factor = options.get("widen_factor")  # recorded as resolved
    run_dir = train(
        {
            "data": demo.facts["prepared"],
            "run_dir": demo.path("run"),
            "model": demo.model,
            "model_options": options,
            "class_regularization": True,
            "clip_length": demo.clip_length,
            "stride": 2,
            "crop_size": demo.crop_size,
            "epochs": demo.epochs,
            "batch_size": demo.batch_size,
            "learning_rate": demo.learning_rate,
            "warmup_epochs": 1.0,
            "seed": demo.seed,
            # left/right and clockwise/counterclockwise swap under a mirror image
            "flip": False,
            # whole frames: random crops can cut the moving shape out of view,
            # and on these few hundred clips the model learns much faster
            # without them (8 epochs: val top-1 0.34 with scale jitter, 0.63+
            # with whole frames)
            "augmentation": "center",
            "keep_checkpoints": 1,
            "num_clips": demo.num_clips,
            "verbose": 2,
        }
    )
    demo.facts["run_dir"] = run_dir
    with open(os.path.join(run_dir, "summary.json")) as file:
        summary = json.load(file)
    # the default configuration (training.compilation decides on XLA per machine)
    demo.facts["train_seconds_per_step"] = summary["seconds_per_step"]
    demo.facts["xla_compiled"] = summary["xla_compiled"]
    _say(
        f"training: {summary['seconds_per_step']:.2f} s per training step "
        f"(validation included), steps "
        f"{'compiled with XLA' if summary['xla_compiled'] else 'not compiled with XLA'}"
    )
    demo.facts["model_path"] = os.path.join(run_dir, "best.keras")
    demo.record("run", run_dir, "config.json, history.csv, tensorboard/, checkpoints/")
    demo.record("model", demo.facts["model_path"], "best epoch by validation top-1")


def step_evaluate(demo):
    from training.evaluate import evaluate, write_report

    report = evaluate(demo.facts["run_dir"], demo.facts["prepared"])
    path, png = write_report(report, demo.path("eval"))
    video, chance = report["video"], report["chance_top1"]
    _say(
        f"video-level top-1 {video['top1']:.3f} on {video['count']} held-out "
        f"videos ({demo.num_clips} clips each); clip-level "
        f"{report['clip']['top1']:.3f}; chance {chance:.3f}"
    )
    demo.facts["top1"] = video["top1"]
    demo.facts["chance_top1"] = chance
    demo.record("report", path, f"video top-1 {video['top1']:.3f} (chance {chance:.3f})")
    demo.record("confusion_matrix", png)
    if video["top1"] < 2 * chance:
        raise RuntimeError(
            f"The demo model reached video top-1 {video['top1']:.3f}, not "
            f"clearly above chance ({chance:.3f}); see {path}."
        )


def step_export(demo):
    from training.export import export_run

    # the next free version number: a re-run adds a version, which the
    # server then serves (the newest)
    version_dir = export_run(demo.facts["run_dir"], demo.path("export"), MODEL_NAME)
    demo.facts["export_base"] = os.path.dirname(version_dir)
    demo.record(
        "savedmodel",
        version_dir,
        "signatures serving_default, predict_normalized, class_names, "
        "clip_format, classify, explain",
    )


def step_serve_and_classify(demo):
    from serving.client import ServingClient, classify_video
    from serving.launch import LocalServer

    log = demo.path("server.log")
    video = demo.facts["test_video"]
    args = [f"--model_name={MODEL_NAME}", f"--model_base_path={demo.facts['export_base']}"]
    with LocalServer(args, log_path=log) as server:
        _say(
            f"serving {demo.facts['export_base']} over gRPC at {server.address} "
            f"(python -m serving.server, pid {server.pid})"
        )
        with ServingClient(server.address, timeout=60) as client:
            client.wait_until_available(MODEL_NAME, timeout=120)
            result = classify_video(client, MODEL_NAME, video, top_k=3)
    top = ", ".join(f"{name} {score:.2f}" for name, score in result.top_k)
    truth = os.path.basename(os.path.dirname(video))
    _say(f"gRPC Predict on {video} (true class: {truth}): {top}")
    path = demo.path("grpc_prediction.json")
    with open(path, "w") as file:
        json.dump(dict(result.to_json(), true_class=truth), file, indent=2)
    demo.record("grpc_prediction", path, f"true {truth}; top-3 {top}")
    demo.record("server_log", log)


def step_explain(demo):
    from training.explain import explain_one_video

    summary = explain_one_video(
        demo.facts["run_dir"], demo.facts["test_video"], demo.path("explain")
    )
    guesses = summary.get("files", {})
    demo.record(
        "explanation_png", guesses["png"], "per-block class evidence (rows) over the clip's frames"
    )
    demo.record("explanation_gif", guesses["gif"], "the deepest block's overlay")
    demo.record("explanation_json", guesses["json"], "per-block guesses")


STEPS = (
    step_synthesize,
    step_prepare,
    step_train,
    step_evaluate,
    step_export,
    step_serve_and_classify,
    step_explain,
)


def run_demo(demo, steps=STEPS):
    """Runs `steps` in order; returns `demo` with every artefact recorded."""
    if step_train in steps:
        _model_options(demo)  # a model/width mismatch fails before any work
    os.makedirs(demo.out, exist_ok=True)
    started = time.perf_counter()
    for number, step in enumerate(steps, start=1):
        _say(f"step {number}/{len(steps)}: {step.__name__.removeprefix('step_')}")
        begun = time.perf_counter()
        step(demo)
        seconds = time.perf_counter() - begun
        demo.facts.setdefault("seconds", {})[step.__name__] = round(seconds, 1)
        _say(
            f"step {number}/{len(steps)} done in {seconds:.1f} s "
            f"({time.perf_counter() - started:.0f} s so far)"
        )
    demo.facts["total_seconds"] = round(time.perf_counter() - started, 1)
    with open(demo.path("artefacts.json"), "w") as file:
        json.dump(
            {
                "artefacts": demo.artefacts,
                "seconds": demo.facts["seconds"],
                "total_seconds": demo.facts["total_seconds"],
                "settings": {
                    field.name: getattr(demo, field.name)
                    for field in dataclasses.fields(demo)
                    if field.name not in ("out", "artefacts", "facts")
                },
                **{
                    name: demo.facts[name]
                    for name in ("train_seconds_per_step", "xla_compiled", "top1", "chance_top1")
                    if name in demo.facts
                },
            },
            file,
            indent=2,
        )
    return demo


HELP = {
    "classes": "Motion classes of the synthetic dataset (2-14).",
    "per_class": "Videos per class (a quarter are held out for evaluation).",
    "frames": "Frames per synthetic video.",
    "size": "Frame size of the synthetic videos (and the prepared short side).",
    "model": "Model: a keras_classreg.models name or 'module:builder'.",
    "widen_factor": (
        "The model builder's widen_factor (1.0: the published "
        "widths; a quarter has 1/16 of the parameters) "
        f"(default: {DEFAULT_WIDEN_FACTOR} for models "
        "that have one, e.g. the ResNets; i3d has none)"
    ),
    "clip_length": "Frames per clip (stride 2).",
    "crop_size": "Clip crop size.",
    "epochs": "Training epochs.",
    "batch_size": "Global batch size.",
    "learning_rate": "Peak learning rate (1 warm-up epoch, then cosine).",
    "seed": "Seed of the videos, the split and the training.",
    "num_clips": "Test-time clips per video (evaluation and serving).",
}


def build_parser():
    defaults = Demo(out="demo_out")
    parser = cliutil.ArgumentParser(
        prog="python -m demo",
        description=(
            "The whole chain on CPU: synthesize motion videos -> prepare "
            "shards -> train a Class Regularization model -> evaluate -> "
            "export a SavedModel -> serve it over gRPC and classify a video "
            "-> explain it. Prints where every artefact is."
        ),
    )
    parser.add_argument("--out", default="demo_out", help="Output folder (default: demo_out).")
    for name, text in HELP.items():
        value = getattr(defaults, name)
        if value is None:  # the help says what None means
            parser.add_argument("--" + name.replace("_", "-"), type=float, help=text + ".")
            continue
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(value),
            default=value,
            help=f"{text} (default: {value})",
        )
    return parser


@cliutil.entry_point(resume=True)
def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in (
        "classes",
        "per_class",
        "frames",
        "size",
        "clip_length",
        "crop_size",
        "epochs",
        "batch_size",
        "num_clips",
    ):
        if getattr(args, name) < 1:
            return cliutil.fail(
                f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})."
            )
    if args.widen_factor is not None and not args.widen_factor > 0:
        return cliutil.fail(f"--widen-factor must be > 0 (got {args.widen_factor}).")
    print(onednn.prefer_onednn(), flush=True)  # before TensorFlow starts: it reads it once
    cliutil.quiet_tensorflow()
    try:
        demo = run_demo(Demo(**vars(args)))
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    except RuntimeError as error:  # a step's result is not what the demo needs
        return cliutil.fail(error, code=1)
    width = max(len(name) for name in demo.artefacts)
    print(f"\nDone in {demo.facts['total_seconds']:.0f} s. Artefacts:")
    for name, entry in demo.artefacts.items():
        note = f"  ({entry['note']})" if entry["note"] else ""
        print(f"  {name:<{width}}  {entry['path']}{note}")
    print(f"  {'index':<{width}}  {demo.path('artefacts.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
