"""Decode a video dataset once into sharded TFRecords for training.

Examples:

    python -m training.prepare --layout folder --root synthetic --out prepared
    python -m training.prepare --layout ucf101 --root UCF-101 \\
        --annotations ucfTrainTestlist --split 1 --out ucf101-s1
    python -m training.prepare --layout hmdb51 --root hmdb51 \\
        --annotations testTrainMulti_7030_splits --out hmdb51-s1
    python -m training.prepare --layout kinetics --root k400 \\
        --annotations k400/train.csv k400/validate.csv --out k400

Each video is decoded with PyAV, resized to --short-side, its frames stored
as JPEG in shards `OUT/<subset>-<i>-of-<n>.{frames,index}.tfrecord` (see
docs/data.md); `OUT/manifest.json` lists the class names, shards, per-class
counts and every skipped file with the reason. Rerunning with the same --out
resumes: finished shards are kept, and shards of the old layout (before
format_version 2) are converted without decoding again.
Exit status: 0, or 3 when some files were skipped (the good ones are
written either way).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

def build_parser():
    from training.data import layouts

    parser = argparse.ArgumentParser(
        prog="python -m training.prepare", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--layout", choices=layouts.names(), default="folder",
                        help="How the videos are listed: " + "; ".join(
                            f"{name} = {layouts.get(name).description}"
                            for name in layouts.names()) + ". Default: folder.")
    parser.add_argument("--root", required=True, help="Folder holding the videos.")
    parser.add_argument("--annotations", nargs="+",
                        help="The layout's annotation paths: " + "; ".join(
                            f"{name}: {layouts.get(name).annotations_help}"
                            for name in layouts.names()
                            if layouts.get(name).annotations != "none")
                        + ". Not used by the folder layout.")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3),
                        help="Official split for ucf101/hmdb51. Default: 1.")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="folder layout: share of each class put in the test "
                             "subset. Default: 0.2.")
    parser.add_argument("--seed", type=int, default=0,
                        help="folder layout: seed of the train/test split. Default: 0.")
    parser.add_argument("--missing", choices=("error", "skip"), default="skip",
                        help="A video listed in the annotations but absent on disk: "
                             "'skip' lists it in the manifest's skipped files, 'error' "
                             "stops before decoding. Default: skip.")
    parser.add_argument("--out", required=True, help="Output folder for shards + manifest.")
    parser.add_argument("--short-side", type=int, default=128,
                        help="Resize frames so the short side has this many pixels "
                             "(0 keeps the original size). Default: 128.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="Decoding processes. Default: number of CPUs "
                             f"({os.cpu_count()}).")
    parser.add_argument("--videos-per-shard", type=int, default=64,
                        help="Videos per TFRecord file. Default: 64.")
    parser.add_argument("--jpeg-quality", type=int, default=90,
                        help="JPEG quality of the stored frames, 1-100. Default: 90.")
    parser.add_argument("--max-frames", type=int,
                        help="Keep at most this many frames of each video (from the "
                             "start). Default: all.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    return parser


def load_dataset(args):
    """The `VideoDataset` that the parsed arguments describe."""
    from training.data import layouts

    return layouts.load_dataset(
        args.layout, args.root, args.annotations, split=args.split,
        test_fraction=args.test_fraction, seed=args.seed, missing=args.missing)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from training.data.shard_writer import prepare_dataset

    try:
        dataset = load_dataset(args)
        manifest = prepare_dataset(
            dataset, args.out, short_side=args.short_side or None,
            workers=args.workers, videos_per_shard=args.videos_per_shard,
            jpeg_quality=args.jpeg_quality, max_frames=args.max_frames,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, subset in manifest["subsets"].items():
        print(f"{name}: {subset['videos']} videos, {subset['frames']} frames, "
              f"{len(subset['shards'])} shards")
    decode = manifest["decode"]
    run = decode["this_run"]
    print(f"PyAV decode: {decode['decode_fps']} frames/s per process; this run: "
          f"{run['videos_processed']} videos in {run['wall_seconds']} s with "
          f"{run['workers']} worker(s), {run['shards_reused']} shard(s) reused"
          + (f", {run['shards_converted']} converted from the old layout"
             if run.get("shards_converted") else "") + ".")
    skipped = manifest["skipped"]
    if skipped:
        print(f"Skipped {len(skipped)} file(s):", file=sys.stderr)
        for entry in skipped:
            print(f"  {entry['path']}: {entry['reason']}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
