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

The run's clip format (`clip_format.json`, see `clipspec.RunDir`) supplies
the clip shape, stride, normalisation and class names; flags override it.
`--method` chooses the explanation method (`keras_classreg.explanations`
registry: `class_evidence`, the default, or the class-agnostic
`activation`).
"""

import pathlib
import sys

import cliutil
from clipspec.rundir import RunDir, clip_format_of_model, load_model
from training.class_names import read_class_names


def clip_format_for(model, model_path, class_names=None, stride=None, short_side=None):
    """The clip format to explain `model` with (`clipspec.rundir.
    clip_format_of_model`), with the given overrides; without class names,
    the classes are called `class_<i>`."""
    run, _ = RunDir.for_model(model_path)
    num_classes = int(model.outputs[0].shape[-1])
    clip_format = clip_format_of_model(model, run)
    if not clip_format.class_names and class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    clip_format = clip_format.replace(class_names=class_names, stride=stride, short_side=short_side)
    if clip_format.num_classes != num_classes:
        source = "--class-names" if class_names is not None else str(run.path)
        raise ValueError(
            f"{source}: {clip_format.num_classes} class names for "
            f"a model with {num_classes} classes."
        )
    return clip_format


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


def explain_videos(
    model_path,
    videos,
    out_dir,
    class_name=None,
    block=None,
    num_frames=8,
    focus=False,
    threshold=None,
    scale=None,
    class_names=None,
    stride=None,
    short_side=None,
    num_clips=1,
    clip=0,
    method=None,
    on_error=None,
):
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
    import numpy as np

    from clipspec.decode import VideoDecodeError, check_video_file, decode_video
    from clipspec.explanation_files import (
        output_names,
        update_summary,
        write_explanation,
    )
    from clipspec.sampling import eval_views, normalize
    from keras_classreg.explanations import DEFAULT_METHOD, block_names, explain
    from keras_classreg.explanations import get as get_method

    method = method or DEFAULT_METHOD
    get_method(method)  # an unknown name fails before the model is loaded
    if not 0 <= clip < num_clips:
        raise ValueError(
            f"Invalid value for --clip. Expected an int in [0, {num_clips}). Received: {clip}"
        )
    _, model_file = RunDir.for_model(model_path)
    model = load_model(model_file)
    settings = clip_format_for(model, model_path, class_names, stride, short_side)
    target = None if class_name is None else class_index_of(class_name, settings.class_names)
    if block is not None and block not in block_names(model):
        raise ValueError(
            f"Unknown block {block!r}. The model's blocks: {', '.join(block_names(model))}."
        )
    summaries = []
    names = output_names(videos)  # two videos named alike get two sets of files
    for video in map(pathlib.Path, videos):
        try:
            check_video_file(video)
            frames, fps = decode_video(video, short_side=settings.short_side)
            views = np.asarray(
                eval_views(
                    frames,
                    settings.clip_length,
                    settings.stride,
                    settings.crop_size,
                    num_clips,
                    1,
                )
            )
            clip_frames = views[clip].astype("uint8")
            inputs = normalize(clip_frames, settings.mean, settings.std)
            explanation = explain(model, inputs[None], target, method)
            summary = write_explanation(
                explanation,
                clip_frames,
                settings.class_names,
                out_dir,
                str(video),
                block=block,
                num_frames=num_frames,
                focus=focus,
                threshold=threshold,
                scale=scale,
                fps=fps / settings.stride,
                requested=target is not None,
                name=names[str(video)],
            )
        except (OSError, VideoDecodeError, ValueError) as error:
            if on_error is None:
                raise
            on_error(video, error)
            continue
        update_summary(
            summary,
            method=method,
            clip={
                "index": clip,
                "of": num_clips,
                "clip_length": settings.clip_length,
                "stride": settings.stride,
                "crop_size": settings.crop_size,
            },
        )
        summaries.append(summary)
    return summaries


def explain_one_video(model_path, video, out_dir, **options):
    """`explain_videos` for one video; returns its summary."""
    return explain_videos(model_path, [video], out_dir, **options)[0]


def build_parser():
    parser = cliutil.ArgumentParser(
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
    parser.add_argument(
        "--model",
        required=True,
        help="Trained model: a run directory (its best.keras) "
        "or a .keras file; the run's clip format gives "
        "the clip settings and class names.",
    )
    # Checked against the registry after parsing: listing its methods here
    # would import Keras (and TensorFlow) for --help.
    parser.add_argument(
        "--method",
        default=None,
        help="Explanation method, a name registered in "
        "keras_classreg.explanations (built in: "
        "class_evidence, the default: where each block "
        "sees the class; activation: where each block "
        "is active, whatever the class).",
    )
    parser.add_argument(
        "--video",
        required=True,
        nargs="+",
        help="Video file(s) to explain (anything FFmpeg "
        "decodes). With several, the model is loaded "
        "once and the share of clips where each block's "
        "guess is the model's top class is printed.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="Output folder for <video>_explain.png, <video>_<block>.gif and <video>_explain.json.",
    )
    parser.add_argument(
        "--class",
        dest="class_name",
        default=None,
        help="Show the evidence for this class (name or index) instead of the predicted one.",
    )
    parser.add_argument(
        "--block",
        default=None,
        help="Block whose overlay the GIF shows (default: the deepest, e.g. stage4_classreg).",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=8,
        help="Frames (columns) sampled evenly in the PNG grid (default: 8).",
    )
    parser.add_argument(
        "--focus",
        action="store_true",
        help="Focus view: show the heat map only where the normalised evidence is >= --threshold.",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="Focus threshold in [0, 1]; implies --focus "
        "(default with --focus: 0.2, Saliency Tubes' "
        "value).",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=None,
        help="Integer up-scaling of the frames in the pictures "
        "(default: tiles of at least 160 px).",
    )
    parser.add_argument(
        "--class-names",
        default=None,
        metavar="FILE|A,B,...",
        help="Class names in class-index order: a file (one per line, or a "
        "JSON list) or names separated by commas (default: the run's, else "
        "class_<i>).",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=None,
        help="Temporal stride between clip frames (default: "
        "config.json's, else the training default 2).",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="Resize the video's short side to this before "
        "the centre crop (default: crop size x 8/7, "
        "e.g. 128 for 112).",
    )
    parser.add_argument(
        "--num-clips",
        type=int,
        default=1,
        help="Cut the video into this many uniformly spaced "
        "test clips ... (default: 1, the centre clip)",
    )
    parser.add_argument(
        "--clip",
        type=int,
        default=0,
        help="... and explain clip number CLIP of them (0-based, default: 0).",
    )
    return parser


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        build_parser().error(f"--threshold: expected a value in [0, 1], got {args.threshold}")
    failures = []

    def report(video, error):
        from clipspec.decode import VideoDecodeError

        failures.append(video)
        reason = error.reason if isinstance(error, VideoDecodeError) else cliutil.one_line(error)
        print(
            f"{cliutil.printable(video)}: error: {cliutil.printable(reason)}",
            file=sys.stderr,
            flush=True,
        )

    cliutil.quiet_tensorflow()
    try:
        class_names = None if args.class_names is None else read_class_names(args.class_names)
        summaries = explain_videos(
            args.model,
            args.video,
            args.out,
            class_name=args.class_name,
            block=args.block,
            num_frames=args.frames,
            focus=args.focus,
            threshold=args.threshold,
            scale=args.scale,
            class_names=class_names,
            stride=args.stride,
            short_side=args.short_side,
            num_clips=args.num_clips,
            clip=args.clip,
            method=args.method,
            on_error=report,
        )
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    from clipspec.explanation_files import block_agreement, format_summary

    print(cliutil.printable("\n\n".join(format_summary(s) for s in summaries)))
    if len(summaries) > 1:
        agreement = block_agreement(summaries)
        print(
            f"\nblock guess = model's top class, over {len(summaries)} "
            "clips: " + ", ".join(f"{name} {share:.0%}" for name, share in agreement.items())
        )
    if failures:
        print(f"{len(failures)} of {len(args.video)} videos failed.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
