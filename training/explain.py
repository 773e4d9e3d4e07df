"""Explain a video: per-block class-evidence heat maps as a PNG grid and a GIF.

    python -m training.explain --model runs/demo/best.keras \\
        --video clip.mp4 --out explain_out

decodes the video, takes one test clip (centre crop, as evaluation does),
runs the model once, and writes

- `<stem>_explain.png`: rows = the clip's frames, then one row per Class
  Regularization block (shallow → deep) with the evidence for the class
  (JET over the frame, half weight), labelled with the block's own guess
  and confidence;
- `<stem>_<block>.gif`: the clip with the overlay of one block (the
  deepest by default);
- `<stem>_explain.json`: the predictions and per-block guesses;

and prints the per-block guesses (with several `--video` files, also how
often each block's guess is the model's top class). With `--class NAME` the maps show the
evidence for that class instead of the predicted one.

The model's `config.json` (written by `training.train` beside `best.keras`)
supplies the clip shape, stride, normalisation and class names; flags
override it.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclasses.dataclass
class ClipSettings:
    """How clips are cut and normalised for one model."""

    clip_length: int
    crop_size: int
    stride: int
    mean: tuple
    std: tuple
    class_names: list
    short_side: int


def load_settings(model, model_path, class_names=None, stride=None,
                  short_side=None, mean=None, std=None):
    """Clip settings for `model`: flags, else `config.json` beside the model
    file, else the model's input shape and the data defaults."""
    from training.config import TrainConfig
    from training.data.sampling import DEFAULT_MEAN, DEFAULT_STD

    config_path = pathlib.Path(model_path).parent / "config.json"
    config = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{config_path}: not valid JSON ({error.msg}, line "
                f"{error.lineno}). Fix or remove it, or pass the clip "
                "settings as flags."
            ) from error
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a JSON object.")
    t, h, w, _ = model.inputs[0].shape[1:]
    if None in (t, h, w) or h != w:
        raise ValueError(
            f"The model takes clips of shape {(t, h, w)}; expected a fixed "
            "T x S x S clip (square crops)."
        )
    num_classes = int(model.outputs[0].shape[-1])
    names = class_names if class_names is not None else config.get("class_names")
    if names is None:
        names = [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        source = "--class-names" if class_names is not None else str(config_path)
        raise ValueError(
            f"{source}: {len(names)} class names for a model with "
            f"{num_classes} classes."
        )
    if stride is None:  # the training default when there is no config
        stride = config.get("stride", TrainConfig.stride)
    return ClipSettings(
        clip_length=int(t),
        crop_size=int(h),
        stride=int(stride),
        mean=tuple(mean or config.get("mean") or DEFAULT_MEAN),
        std=tuple(std or config.get("std") or DEFAULT_STD),
        class_names=list(names),
        short_side=int(short_side or config.get("short_side") or round(h * 8 / 7)),
    )


def class_index_of(name, class_names):
    """The index of class `name` (a class name or an index as text)."""
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    raise ValueError(
        f"Unknown class {name!r}. Expected one of: {', '.join(class_names)} "
        f"(or an index in [0, {len(class_names)}))."
    )


def describe(explanation, class_names, sample=0, top_k=3):
    """A JSON-ready summary of one clip's explanation."""
    probabilities = explanation.probabilities[sample]
    top = probabilities.argsort()[::-1][:top_k]
    target = int(explanation.class_index[sample])
    return {
        "top_classes": [
            {"class": class_names[i], "probability": float(probabilities[i])}
            for i in top
        ],
        "predicted_class": class_names[int(explanation.predicted_class[sample])],
        "maps_for_class": class_names[target],
        "blocks": [
            {
                "block": name,
                "guess": class_names[int(explanation.block_classes[sample, b])],
                "confidence": float(explanation.block_confidences[sample, b]),
            }
            for b, name in enumerate(explanation.block_names)
        ],
    }


def explain_videos(model_path, videos, out_dir, class_name=None, block=None,
                   num_frames=8, focus=False, threshold=None, scale=None,
                   class_names=None, stride=None, short_side=None,
                   num_clips=1, clip=0, mean=None, std=None, on_error=None):
    """Explains one clip of each video and writes its PNG grid, GIF and JSON.

    The model is loaded once. Args as the command line's flags; `on_error`
    (optional) is called with `(video, error)` for a video that cannot be
    decoded or explained, and the others go on (without it, the error is
    raised).

    Returns:
        the `write_explanation` summaries (predictions, per-block guesses,
        written files, plus `"clip"`: which test clip of the video), one per
        video explained.
    """
    import keras
    import numpy as np

    from keras_classreg.explain import block_names, explain
    from training.data.decode import VideoDecodeError, decode_video
    from training.data.sampling import normalize, test_views

    model_path = pathlib.Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path}: no such model file.")
    if not 0 <= clip < num_clips:
        raise ValueError(
            f"Invalid value for --clip. Expected an int in [0, {num_clips}). "
            f"Received: {clip}"
        )
    model = keras.saving.load_model(model_path, compile=False)
    settings = load_settings(model, model_path, class_names, stride,
                             short_side, mean, std)
    target = (None if class_name is None
              else class_index_of(class_name, settings.class_names))
    if block is not None and block not in block_names(model):
        raise ValueError(
            f"Unknown block {block!r}. The model's blocks: "
            f"{', '.join(block_names(model))}."
        )
    summaries = []
    for video in map(pathlib.Path, videos):
        try:
            if not video.is_file():
                raise FileNotFoundError(f"{video}: no such video file.")
            frames, fps = decode_video(video, short_side=settings.short_side)
            views = np.asarray(test_views(
                frames, settings.clip_length, settings.stride,
                settings.crop_size, num_clips, 1,
            ))
            clip_frames = views[clip].astype("uint8")
            inputs = normalize(clip_frames, settings.mean, settings.std)
            explanation = explain(model, inputs[None], target)
            summary = write_explanation(
                explanation, clip_frames, settings.class_names, out_dir,
                str(video), block=block, num_frames=num_frames, focus=focus,
                threshold=threshold, scale=scale,
                fps=fps / settings.stride, requested=target is not None,
            )
        except (FileNotFoundError, VideoDecodeError, ValueError) as error:
            if on_error is None:
                raise
            on_error(video, error)
            continue
        summary["clip"] = {"index": clip, "of": num_clips,
                           "clip_length": settings.clip_length,
                           "stride": settings.stride,
                           "crop_size": settings.crop_size}
        _write_json(summary)
        summaries.append(summary)
    return summaries


def explain_video(model_path, video, out_dir, **options):
    """`explain_videos` for one video; returns its summary."""
    return explain_videos(model_path, [video], out_dir, **options)[0]


def block_agreement(summaries):
    """Per block, the fraction of clips whose block guess is the model's
    top class: how early in depth the network settles on its answer."""
    if not summaries:
        return {}
    names = [b["block"] for b in summaries[0]["blocks"]]
    return {
        name: sum(s["blocks"][i]["guess"] == s["predicted_class"]
                  for s in summaries) / len(summaries)
        for i, name in enumerate(names)
    }


def write_explanation(explanation, frames, class_names, out_dir, video_name,
                      sample=0, block=None, num_frames=8, focus=False,
                      threshold=None, scale=None, fps=8.0, requested=False):
    """Renders one clip's explanation: `<stem>_explain.png` (grid),
    `<stem>_<block>.gif` (one block's overlay) and `<stem>_explain.json`.

    Args:
        explanation: a `keras_classreg.explain.Explanation`.
        frames: uint8 `[T, H, W, 3]`, the clip exactly as the model saw it
            (before normalisation).
        class_names: the `K` class names.
        out_dir: output folder (created).
        video_name: the video's path or name, for titles and file names.
        sample: which clip of the explanation's batch.
        block: the block of the GIF (default: the deepest).
        num_frames, scale: grid columns and integer up-scaling (default:
            tiles of at least 160 px).
        focus, threshold: the focus view (threshold default 0.2).
        fps: frame rate of the GIF.
        requested: whether the maps' class was requested (for the title).

    Returns:
        the `describe` summary with `"video"` and `"files"` added.
    """
    from keras_classreg.explain import FOCUS_THRESHOLD
    from training import viz

    names = explanation.block_names
    block = names[-1] if block is None else block
    if block not in names:
        raise ValueError(
            f"Unknown block {block!r}. The model's blocks: {', '.join(names)}."
        )
    if focus and threshold is None:
        threshold = FOCUS_THRESHOLD
    if scale is None:  # tiles of at least 160 px
        scale = max(1, -(-160 // min(frames.shape[1:3])))
    summary = describe(explanation, class_names, sample)
    top = " | ".join(f"{c['class']} {c['probability']:.2f}"
                     for c in summary["top_classes"])
    title = [f"{pathlib.Path(video_name).name}: model top classes: {top}",
             f"maps for class: {summary['maps_for_class']} "
             f"({'requested' if requested else 'predicted'})"]
    rows = [
        (b["block"], explanation.maps[b["block"]][sample],
         f"guess: {b['guess']}\nconfidence: {b['confidence']:.2f}")
        for b in summary["blocks"]
    ]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = pathlib.Path(video_name).stem
    png = out_dir / f"{stem}_explain.png"
    gif = out_dir / f"{stem}_{block}.gif"
    report = out_dir / f"{stem}_explain.json"
    viz.save_png(viz.render_grid(frames, rows, title, num_frames, scale,
                                 threshold=threshold), png)
    guess = summary["blocks"][names.index(block)]
    viz.save_gif(viz.render_animation(
        frames, explanation.maps[block][sample],
        caption=[f"{block}: {guess['guess']} {guess['confidence']:.2f}",
                 f"for: {summary['maps_for_class']}"],
        scale=scale, threshold=threshold,
    ), gif, fps=max(1.0, fps))
    summary["video"] = str(video_name)
    summary["files"] = {"png": str(png), "gif": str(gif), "json": str(report)}
    _write_json(summary)
    return summary


def _write_json(summary):
    pathlib.Path(summary["files"]["json"]).write_text(
        json.dumps(summary, indent=2) + "\n")


def format_summary(summary):
    """The per-block guesses as a small text table."""
    lines = [
        f"video: {summary['video']}",
        "model: " + " | ".join(f"{c['class']} {c['probability']:.3f}"
                               for c in summary["top_classes"]),
        f"maps for class: {summary['maps_for_class']}",
        f"{'block':<24}{'guess':<24}confidence",
    ]
    for block in summary["blocks"]:
        lines.append(f"{block['block']:<24}{block['guess']:<24}"
                     f"{block['confidence']:.3f}")
    lines += [f"wrote {path}" for path in summary["files"].values()]
    return "\n".join(lines)


def _class_names_arg(text):
    path = pathlib.Path(text)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines()
                 if line.strip()]
    else:
        names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no class names in {text!r}")
    return names


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.explain",
        description=(
            "Per-layer class-specific explanation of a video: for every "
            "Class Regularization block, where in the clip that block sees "
            "the class (sum_c A[t,h,w,c] W_l[k,c], zoomed to the clip, "
            "min-max normalised), and which class the block itself guesses. "
            "Writes a PNG grid (blocks x frames), a GIF of one block's "
            "overlay and a JSON summary, and prints the guesses."
        ),
        epilog=(
            "Example: python -m training.explain --model runs/demo/best.keras "
            "--video clip.mp4 --out explain_out --class jump --focus"
        ),
    )
    parser.add_argument("--model", required=True,
                        help="Trained model (.keras), e.g. runs/demo/best.keras; "
                             "its config.json, if beside it, gives the clip "
                             "settings and class names.")
    parser.add_argument("--video", required=True, nargs="+",
                        help="Video file(s) to explain (anything FFmpeg "
                             "decodes). With several, the model is loaded "
                             "once and the share of clips where each block's "
                             "guess is the model's top class is printed.")
    parser.add_argument("--out", required=True,
                        help="Output folder for <video>_explain.png, "
                             "<video>_<block>.gif and <video>_explain.json.")
    parser.add_argument("--class", dest="class_name", default=None,
                        help="Show the evidence for this class (name or "
                             "index) instead of the predicted one.")
    parser.add_argument("--block", default=None,
                        help="Block whose overlay the GIF shows (default: the "
                             "deepest, e.g. stage4_classreg).")
    parser.add_argument("--frames", type=int, default=8,
                        help="Frames (columns) sampled evenly in the PNG grid "
                             "(default: 8).")
    parser.add_argument("--focus", action="store_true",
                        help="Focus view: show the heat map only where the "
                             "normalised evidence is >= --threshold.")
    parser.add_argument("--threshold", type=float, default=None,
                        help="Focus threshold in [0, 1]; implies --focus "
                             "(default with --focus: 0.2, Saliency Tubes' "
                             "value).")
    parser.add_argument("--scale", type=int, default=None,
                        help="Integer up-scaling of the frames in the pictures "
                             "(default: tiles of at least 160 px).")
    parser.add_argument("--class-names", type=_class_names_arg, default=None,
                        help="Class names, comma-separated or a file with one "
                             "per line (default: config.json's, else class_<i>).")
    parser.add_argument("--stride", type=int, default=None,
                        help="Temporal stride between clip frames (default: "
                             "config.json's, else the training default 2).")
    parser.add_argument("--short-side", type=int, default=None,
                        help="Resize the video's short side to this before "
                             "the centre crop (default: config.json's "
                             "short_side, else crop size x 8/7, e.g. 128 for 112).")
    parser.add_argument("--num-clips", type=int, default=1,
                        help="Cut the video into this many uniformly spaced "
                             "test clips ... (default: 1, the centre clip)")
    parser.add_argument("--clip", type=int, default=0,
                        help="... and explain clip number CLIP of them "
                             "(0-based, default: 0).")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        build_parser().error(
            f"--threshold: expected a value in [0, 1], got {args.threshold}")
    failures = []

    def report(video, error):
        failures.append(video)
        print(f"error: {error}", file=sys.stderr)

    try:
        summaries = explain_videos(
            args.model, args.video, args.out, class_name=args.class_name,
            block=args.block, num_frames=args.frames, focus=args.focus,
            threshold=args.threshold, scale=args.scale,
            class_names=args.class_names, stride=args.stride,
            short_side=args.short_side, num_clips=args.num_clips,
            clip=args.clip, on_error=report,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n\n".join(format_summary(s) for s in summaries))
    if len(summaries) > 1:
        agreement = block_agreement(summaries)
        print(f"\nblock guess = model's top class, over {len(summaries)} "
              "clips: " + ", ".join(f"{name} {share:.0%}"
                                   for name, share in agreement.items()))
    if failures:
        print(f"{len(failures)} of {len(args.video)} videos failed.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
