"""Evaluate a trained model: clip- and video-level top-1/top-5, per class.

Every test video is cut into `num_clips` uniformly spaced clips x
`num_crops` spatial crops ("views", built by `training.data.clip_dataset`
in test mode). Clip-level accuracy scores every view on its own; the
video-level score of a video is the mean of its views' softmax
probabilities. Per-class accuracy and the confusion matrix are video-level.

    python -m training.evaluate --model runs/r18/best.keras --data prepared \\
        --num-clips 10 --num-crops 3 --out runs/r18/eval

writes `report.json` and `confusion_matrix.png` to `--out`. Clip length,
stride, crop size, normalisation and class names come from the
`config.json` beside the model (a training run directory) unless given.
"""

import argparse
import os
import sys
import warnings

import numpy as np

import cliutil
from clipspec.format import ClipFormat
from clipspec.rundir import RunDir, load_model
from training import data as video_data
from training import onednn


# ---------------------------------------------------------------------------
# Scores → report (pure NumPy)
# ---------------------------------------------------------------------------
def _top_k_hits(probabilities, labels, k):
    k = min(k, probabilities.shape[1])
    # a label is in the top k when fewer than k classes score strictly higher
    label_scores = probabilities[np.arange(len(labels)), labels]
    higher = (probabilities > label_scores[:, None]).sum(axis=1)
    return higher < k


def compute_report(view_probabilities, view_labels, view_videos, class_names):
    """The accuracy report from per-view probabilities.

    Args:
        view_probabilities: float `[V, K]`, one softmax row per view.
        view_labels: int `[V]`, the true class of each view's video.
        view_videos: int `[V]`, which video each view belongs to.
        class_names: the `K` class names (index = label).

    Returns:
        a JSON-ready dict: `clip` and `video` `{top1, top5, count}`,
        `per_class` (video-level accuracy and count per class),
        `mean_class_accuracy`, `confusion_matrix` (rows: true class,
        columns: predicted, video counts) and `videos` (per video: label,
        prediction, its score and the number of views).
    """
    probabilities = np.asarray(view_probabilities, dtype=np.float64)
    labels = np.asarray(view_labels, dtype=np.int64)
    videos = np.asarray(view_videos, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ValueError(
            f"Expected view probabilities of shape [views, {num_classes}] "
            f"({num_classes} class names). Received: {probabilities.shape}"
        )
    if not (len(labels) == len(videos) == len(probabilities)) or not len(labels):
        raise ValueError(
            "Expected as many labels and video ids as views (at least one). "
            f"Received: {len(probabilities)} views, {len(labels)} labels, "
            f"{len(videos)} video ids."
        )
    video_ids, inverse = np.unique(videos, return_inverse=True)
    views_per_video = np.bincount(inverse)
    video_scores = np.zeros((len(video_ids), num_classes))
    np.add.at(video_scores, inverse, probabilities)
    video_scores /= views_per_video[:, None]
    video_labels = np.zeros(len(video_ids), dtype=np.int64)
    video_labels[inverse] = labels
    if np.any(video_labels[inverse] != labels):
        raise ValueError("Views of one video carry different labels.")

    predicted = video_scores.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (video_labels, predicted), 1)
    per_class = []
    for index, name in enumerate(class_names):
        count = int(confusion[index].sum())
        per_class.append(
            {
                "class": name,
                "videos": count,
                "top1": float(confusion[index, index] / count) if count else None,
            }
        )
    present = [row["top1"] for row in per_class if row["top1"] is not None]
    return {
        "class_names": list(class_names),
        "clip": {
            "top1": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "top5": float(np.mean(_top_k_hits(probabilities, labels, 5))),
            "count": int(len(labels)),
        },
        "video": {
            "top1": float(np.mean(predicted == video_labels)),
            "top5": float(np.mean(_top_k_hits(video_scores, video_labels, 5))),
            "count": int(len(video_ids)),
        },
        "top5_k": int(min(5, num_classes)),
        "chance_top1": 1.0 / num_classes,
        "per_class": per_class,
        "mean_class_accuracy": float(np.mean(present)) if present else None,
        "confusion_matrix": confusion.tolist(),
        "videos": [
            {
                "video": int(video_ids[i]),
                "label": int(video_labels[i]),
                "predicted": int(predicted[i]),
                "score": float(video_scores[i, predicted[i]]),
                "views": int(views_per_video[i]),
            }
            for i in range(len(video_ids))
        ],
    }


# ---------------------------------------------------------------------------
# Model + data → report
# ---------------------------------------------------------------------------
def evaluate(
    model,
    data,
    subset="test",
    clip_format=None,
    num_clips=None,
    num_crops=None,
    clip_length=None,
    stride=None,
    crop_size=None,
    batch_size=8,
    progress=True,
    xla=None,
):
    """Evaluates `model` on a prepared dataset's `subset`.

    Args:
        model: a Keras model, or a model file / run directory (its run's
            `ClipFormat` then gives the defaults below).
        data: the prepared dataset folder (or its manifest.json).
        subset: which subset of the manifest.
        clip_format: the model's `clipspec.ClipFormat`; default: the run's,
            else the model's input shape with the defaults (stride 2,
            Kinetics mean/std, the manifest's class names).
        num_clips, num_crops, clip_length, stride, crop_size: override the
            clip format's test-time views and clip shape.
        batch_size: views per forward pass.
        progress: show a progress bar.
        xla: compile the forward pass with XLA. `None` (default): with a
            GPU only. On CPUs XLA's forward pass of the zoo's models was
            measured slower than TensorFlow's kernels (`python -m
            benchmarks.train_step` measures both); a forward pass has no
            strided-convolution gradient, so no model of your own hits that
            CPU cliff either. The choice replaces the `jit_compile` a
            trained model's file carries; `settings` in the report records
            it and whether TensorFlow's oneDNN kernels were on.

    Returns:
        the report of `compute_report` plus the evaluation settings.

    Example:

        report = evaluate("runs/r18", "prepared", num_clips=4)
        print(report["video"]["top1"])
    """
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        run, model_path = RunDir.for_model(model)
        model = load_model(model_path)
        if clip_format is None and run is not None:
            clip_format = run.clip_format_for(model)
    if xla is None:
        import tensorflow as tf

        xla = bool(tf.config.list_logical_devices("GPU"))
    model.jit_compile = bool(xla)
    model.predict_function = None
    manifest = video_data.load_manifest(data)
    subset_videos = check_evaluation_data(manifest, subset)
    if clip_format is None:
        _, length, size = model.input_shape[:3]
        clip_format = ClipFormat(clip_length=length, crop_size=size)
    if not clip_format.class_names:
        clip_format = clip_format.replace(class_names=manifest["class_names"])
    clip_format = clip_format.replace(
        num_clips=num_clips,
        num_crops=num_crops,
        clip_length=clip_length,
        stride=stride,
        crop_size=crop_size,
    )
    class_names = list(clip_format.class_names)
    if len(class_names) != model.output_shape[-1]:
        raise ValueError(
            f"The model predicts {model.output_shape[-1]} classes but its clip "
            f"format names {len(class_names)}."
        )
    check_same_classes(manifest, class_names)
    empty = [row["class"] for row in _per_class_counts(manifest, subset) if not row["videos"]]
    dataset = video_data.clip_dataset(
        data,
        subset=subset,
        mode="test",
        clip_length=clip_format.clip_length,
        stride=clip_format.stride,
        crop_size=clip_format.crop_size,
        batch_size=batch_size,
        num_clips=clip_format.num_clips,
        num_crops=clip_format.num_crops,
        mean=clip_format.mean,
        std=clip_format.std,
        short_video=clip_format.short_video,
    )
    probabilities, labels, videos = _predict_views(
        model,
        dataset,
        total=-(-subset_videos * clip_format.num_views // batch_size),
        progress=progress,
    )
    report = compute_report(probabilities, labels, videos, class_names)
    paths = video_data.video_paths(manifest, subset)
    for row in report["videos"]:
        row["path"] = paths.get(row["video"])
    report["warnings"] = []
    if empty:
        line = (
            f"{len(empty)} class(es) have no {subset} videos in "
            f"{manifest['root']} ({', '.join(empty)}): their accuracy is "
            "not measured (per_class top1 null) and mean_class_accuracy "
            "averages the other classes."
        )
        report["warnings"].append(line)
        warnings.warn(cliutil.DataWarning(line), stacklevel=2)
    report["settings"] = {
        "model": os.path.abspath(model_path) if model_path else model.name,
        "data": os.path.abspath(os.fspath(data)),
        "subset": subset,
        "num_clips": clip_format.num_clips,
        "num_crops": clip_format.num_crops,
        "clip_length": clip_format.clip_length,
        "stride": clip_format.stride,
        "crop_size": clip_format.crop_size,
        "mean": list(clip_format.mean),
        "std": list(clip_format.std),
        "xla": bool(model.jit_compile),
        "onednn": onednn.onednn_enabled(),
    }
    return report


def check_evaluation_data(manifest, subset):
    """The number of videos of `subset`; `ValueError` naming the problem
    when there is no such subset or it has no videos."""
    subsets = manifest["subsets"]
    if subset not in subsets:
        raise ValueError(
            f"Subset {subset!r} is not in {manifest['root']} (its subsets: "
            f"{', '.join(subsets) or 'none'})."
        )
    count = int(subsets[subset].get("videos", 0))
    if not count:
        skipped = [e for e in manifest.get("skipped", []) if e.get("subset") in (subset, None)]
        why = (
            f"{len(skipped)} of its videos were skipped by prepare (see "
            "'skipped' in its manifest.json)"
            if skipped
            else "it is empty"
        )
        raise ValueError(
            f"Subset {subset!r} of {manifest['root']} has no videos to evaluate: {why}."
        )
    return count


def check_same_classes(manifest, class_names):
    """`ValueError` when the prepared data's classes are not the model's
    (same names, same order): labels would not line up."""
    data = list(manifest["class_names"])
    if data == list(class_names):
        return
    only_data = [c for c in data if c not in class_names]
    only_model = [c for c in class_names if c not in data]

    def some(names):
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")

    if only_data or only_model:
        detail = "; ".join(
            part
            for part in (
                f"only the data has {some(only_data)}" if only_data else "",
                f"only the model has {some(only_model)}" if only_model else "",
            )
            if part
        )
    else:
        detail = "the same names in another order"
    raise ValueError(
        f"The classes of {manifest['root']} ({len(data)}) are not the model's "
        f"({len(class_names)}): {detail}. Evaluate on data prepared with the "
        "model's classes."
    )


def _per_class_counts(manifest, subset):
    counts = manifest["subsets"][subset].get("per_class", {})
    return [{"class": name, "videos": int(counts.get(name, 0))} for name in manifest["class_names"]]


def _predict_views(model, dataset, total, progress):
    """Per-view probabilities, labels and video ids of a test-mode dataset."""
    from tqdm import tqdm

    probabilities, labels, videos = [], [], []
    for clips, label, video in tqdm(
        dataset, total=total, unit="batch", desc="evaluating", disable=not progress
    ):
        probabilities.append(np.asarray(model.predict_on_batch(clips)))
        labels.append(label.numpy())
        videos.append(video.numpy())
    if not probabilities:
        raise ValueError("The evaluation dataset is empty.")
    return (np.concatenate(probabilities), np.concatenate(labels), np.concatenate(videos))


def plot_confusion_matrix(report, path):
    """Writes the report's (video-level) confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion_matrix"], dtype=np.float64)
    names = report["class_names"]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = min(4 + 0.35 * len(names), 30)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(
        image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class's videos"
    )
    if len(names) <= 40:
        axes.set_xticks(range(len(names)), names, rotation=90)
        axes.set_yticks(range(len(names)), names)
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                if matrix[i, j]:
                    axes.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        color="white" if normalised[i, j] > 0.5 else "black",
                        fontsize=8,
                    )
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    video = report["video"]
    axes.set_title(f"video-level confusion: top-1 {video['top1']:.1%} ({video['count']} videos)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(report, out_dir):
    """Writes `report.json` and `confusion_matrix.png` into `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    png = plot_confusion_matrix(report, os.path.join(out_dir, "confusion_matrix.png"))
    report = dict(report, confusion_matrix_png=os.path.abspath(png))
    path = os.path.join(out_dir, "report.json")
    cliutil.write_json(path, report)
    return path, png


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m training.evaluate",
        description=(
            "Clip- and video-level (multi-view) top-1/top-5, per-class "
            "accuracy and confusion matrix of a trained model, written as "
            "report.json + confusion_matrix.png."
        ),
        epilog="Example: python -m training.evaluate --model runs/r18/best.keras "
        "--data prepared --num-clips 10 --num-crops 3 --out runs/r18/eval",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="A run directory (its best.keras, else "
        "final.keras) or a .keras file; the run's "
        "clip_format.json supplies the clip format.",
    )
    parser.add_argument(
        "--data", required=True, help="Prepared dataset folder (or its manifest.json)."
    )
    parser.add_argument("--subset", default="test", help="Subset to evaluate (default: test).")
    parser.add_argument(
        "--num-clips",
        type=int,
        help="Uniformly spaced clips per video (default: the "
        "run's clip format, 10 unless trained otherwise).",
    )
    parser.add_argument(
        "--num-crops",
        type=int,
        choices=(1, 3),
        help="Spatial crops per clip: 1 (centre) or 3 (default: the run's clip format).",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="Views per forward pass (default: 8)."
    )
    parser.add_argument("--clip-length", type=int, help="Frames per clip (default: the run's).")
    parser.add_argument("--stride", type=int, help="Frame stride (default: the run's).")
    parser.add_argument("--crop-size", type=int, help="Crop size (default: the run's).")
    parser.add_argument("--out", help="Output folder (default: eval/ beside the model).")
    parser.add_argument(
        "--xla",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Compile the forward pass with XLA (default: only "
        "with a GPU; slower than TensorFlow's kernels on CPUs).",
    )
    return parser


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("num_clips", "batch_size", "clip_length", "stride", "crop_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return cliutil.fail(
                f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})."
            )
    model_dir = (
        args.model if os.path.isdir(args.model) else os.path.dirname(os.path.abspath(args.model))
    )
    out = args.out or os.path.join(model_dir, "eval")
    onednn.prefer_onednn()  # before TensorFlow starts: it reads it once
    try:
        video_data.load_manifest(args.data)  # a wrong --data fails at once
        cliutil.quiet_tensorflow()
        with cliutil.plain_warnings():
            report = evaluate(
                args.model,
                args.data,
                subset=args.subset,
                num_clips=args.num_clips,
                num_crops=args.num_crops,
                clip_length=args.clip_length,
                stride=args.stride,
                crop_size=args.crop_size,
                batch_size=args.batch_size,
                xla=args.xla,
            )
        path, png = write_report(report, out)
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    clip, video = report["clip"], report["video"]
    print(
        f"clip-level  top-1 {clip['top1']:.4f}  top-{report['top5_k']} "
        f"{clip['top5']:.4f}  ({clip['count']} views)"
    )
    print(
        f"video-level top-1 {video['top1']:.4f}  top-{report['top5_k']} "
        f"{video['top5']:.4f}  ({video['count']} videos; chance "
        f"{report['chance_top1']:.4f})"
    )
    settings = report["settings"]
    why = (
        "as asked"
        if args.xla is not None
        else "the default " + ("with a GPU" if settings["xla"] else "on CPUs, measured faster")
    )
    print(
        f"forward pass: XLA {'on' if settings['xla'] else 'off'} ({why}), TensorFlow's "
        f"oneDNN kernels {'on' if settings['onednn'] else 'off'}"
    )
    print(f"report: {path}\nconfusion matrix: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
