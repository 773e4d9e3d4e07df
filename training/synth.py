"""Write a synthetic action dataset: moving shapes whose class is the motion.

    python -m training.synth --out synthetic --classes 6 --per-class 20
    python -m training.synth --out hard --classes 14 --preset hard --noise 20

Writes `OUT/<motion>/<motion>_<i>.mp4` (H.264, via PyAV) and `OUT/synth.json`
(the settings). Prepare it with
`python -m training.prepare --layout folder --root OUT --out prepared`.
"""

import argparse
import sys

import cliutil


def _pair(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two numbers 'MIN,MAX' (e.g. 0.1,0.2); got {text!r}"
        ) from None
    return low, high


def build_parser():
    from training.data.synthetic import MOTIONS, PRESETS, SHAPES

    parser = cliutil.ArgumentParser(
        prog="python -m training.synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="Output folder (created).")
    parser.add_argument(
        "--classes",
        type=int,
        default=6,
        help=f"Number of motion classes, 2-{len(MOTIONS)}, taken in "
        f"this order: {', '.join(MOTIONS)}. Default: 6.",
    )
    parser.add_argument("--per-class", type=int, default=20, help="Videos per class. Default: 20.")
    parser.add_argument("--frames", type=int, default=32, help="Frames per video. Default: 32.")
    parser.add_argument(
        "--size", type=int, default=64, help="Frame side in pixels (even). Default: 64."
    )
    parser.add_argument("--fps", type=int, default=25, help="Frame rate. Default: 25.")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Random seed; the same seed and settings write the same videos. Default: 0.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="easy",
        help="Difficulty defaults (the flags below override them). Default: easy.",
    )
    parser.add_argument(
        "--distractors", type=int, help="Extra shapes that wander at random (no class motion)."
    )
    parser.add_argument("--noise", type=float, help="Std of Gaussian pixel noise, in 0-255 levels.")
    parser.add_argument(
        "--camera-jitter", type=float, help="Std in pixels of a per-frame global shake."
    )
    parser.add_argument(
        "--size-range",
        type=_pair,
        metavar="MIN,MAX",
        help="Shape diameter as a fraction of the frame side.",
    )
    parser.add_argument(
        "--speed-range",
        type=_pair,
        metavar="MIN,MAX",
        help="Distance travelled over the video, as a fraction of the frame side.",
    )
    parser.add_argument("--shapes", help=f"Comma-separated subset of {','.join(SHAPES)}.")
    parser.add_argument(
        "--fixed-colour",
        action="store_true",
        help="White shapes on black instead of random colours.",
    )
    return parser


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    from training.data.synthetic import write_synthetic_dataset

    try:
        dataset = write_synthetic_dataset(
            args.out,
            classes=args.classes,
            per_class=args.per_class,
            frames=args.frames,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            preset=args.preset,
            progress=True,
            distractors=args.distractors,
            noise=args.noise,
            camera_jitter=args.camera_jitter,
            size_range=args.size_range,
            speed_range=args.speed_range,
            shapes=args.shapes,
            random_colour=False if args.fixed_colour else None,
        )
    except (ValueError, TypeError, OSError) as error:
        return cliutil.fail(error)
    print(
        f"Wrote {len(dataset)} videos of {len(dataset.class_names)} classes to "
        f"{cliutil.printable(args.out)} ({', '.join(dataset.class_names)})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
