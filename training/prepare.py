"""Decode a video dataset once into sharded TFRecords for training.

Examples:

    python -m training.prepare --layout folder --root synthetic --out prepared
    python -m training.prepare --layout ucf101 --root UCF-101 \\
        --annotations ucfTrainTestlist --split 1 --out ucf101-s1
    python -m training.prepare --layout hmdb51 --root hmdb51 \\
        --annotations testTrainMulti_7030_splits --out hmdb51-s1
    python -m training.prepare --layout kinetics --root k400 \\
        --annotations k400/train.csv k400/validate.csv --out k400
    python -m training.prepare --layout kinetics --root /mnt/k400 \\
        --annotations /mnt/k400/train.csv --out gs://bucket/k400 \\
        --runner beam --beam-options "--runner=DataflowRunner --project=P \\
        --region=us-central1 --temp_location=gs://bucket/tmp --sdk_container_image=IMAGE"

Each video is decoded with PyAV (upright, damaged videos keeping their
decodable frames), resized to --short-side, its frames stored as JPEG in
shards `OUT/<subset>-<i>-of-<n>.{frames,index}.tfrecord` (see docs/data.md);
`OUT/manifest.json` lists the class
names, shards, per-class counts, every skipped file with the reason, the
damaged videos kept, and the files not taken (not a video extension,
hidden, the --out folder inside --root ...). --out may be local or any
filesystem TensorFlow has (gs://...). Rerunning with the same --out
resumes: finished shards are kept; Ctrl-C loses at most the shards being
written. Only files prepare wrote are ever replaced or deleted in --out.

--runner local (default) decodes in worker processes here; --runner beam
writes one shard per Apache Beam task, on DirectRunner or, with
--beam-options, on Dataflow, Flink or Spark (needs the [beam] extra).

Exit status: 0 when it finished, also when some files were skipped (they
are listed on stderr and in the manifest: one corrupt file among thousands
should not fail a script); with --strict, 1 when any file was skipped; 1
when no video at all could be used; 2 for a usage error (a missing --root,
an unwritable --out ...); 130 when interrupted.
"""

import argparse
import os
import shlex
import sys

import cliutil
from training.data import beam_runner
from training.data.gfile_paths import join


def build_parser():
    from training.data import layouts

    parser = cliutil.ArgumentParser(
        prog="python -m training.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--layout",
        choices=layouts.names(),
        default="folder",
        help="How the videos are listed: "
        + "; ".join(f"{name} = {layouts.get(name).description}" for name in layouts.names())
        + ". Default: folder.",
    )
    parser.add_argument("--root", required=True, help="Folder holding the videos.")
    parser.add_argument(
        "--annotations",
        nargs="+",
        help="The layout's annotation paths: "
        + "; ".join(
            f"{name}: {layouts.get(name).annotations_help}"
            for name in layouts.names()
            if layouts.get(name).annotations != "none"
        )
        + ". Not used by the folder layout.",
    )
    parser.add_argument(
        "--split",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="Official split for ucf101/hmdb51. Default: 1.",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="folder layout: share of each class put in the test subset. Default: 0.2.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="folder layout: seed of the train/test split. Default: 0.",
    )
    parser.add_argument(
        "--missing",
        choices=("error", "skip"),
        default="skip",
        help="A video listed in the annotations but absent on disk: "
        "'skip' lists it in the manifest's skipped files, 'error' "
        "stops before decoding. Default: skip.",
    )
    parser.add_argument("--out", required=True, help="Output folder for shards + manifest.")
    parser.add_argument(
        "--short-side",
        type=int,
        default=128,
        help="Resize frames so the short side has this many pixels "
        "(0 keeps the original size). Default: 128.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help=f"Decoding processes. Default: number of CPUs ({os.cpu_count()}).",
    )
    parser.add_argument(
        "--videos-per-shard", type=int, default=64, help="Videos per TFRecord file. Default: 64."
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=90,
        help="JPEG quality of the stored frames, 1-100. Default: 90.",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        help="Keep at most this many frames of each video (from the start). Default: all.",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="Exit with status 1 when any file was skipped (default: 0, the skipped files listed).",
    )
    parser.add_argument(
        "--runner",
        choices=("local", "beam"),
        default="local",
        help="local: decode in --workers processes here (default); beam: one "
        "Apache Beam task per shard (the [beam] extra), see --beam-options.",
    )
    parser.add_argument(
        "--beam-options",
        default="",
        metavar='"--runner=... ..."',
        help="--runner beam: Beam's pipeline options in one string, e.g. "
        '"--runner=DataflowRunner --project=P --region=R '
        '--temp_location=gs://B/tmp --sdk_container_image=IMAGE". Default: '
        "DirectRunner in this process.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    return parser


def load_dataset(args):
    """The `VideoDataset` that the parsed arguments describe (the --out
    folder is never listed as data)."""
    from training.data import layouts

    return layouts.load_dataset(
        args.layout,
        args.root,
        args.annotations,
        split=args.split,
        test_fraction=args.test_fraction,
        seed=args.seed,
        missing=args.missing,
        exclude=(args.out,),
    )


def _list(title, entries, limit=None):
    if not entries:
        return
    print(f"{title}:", file=sys.stderr)
    shown = entries if limit is None else entries[:limit]
    for entry in shown:
        print(
            f"  {cliutil.printable(entry['path'])}: {cliutil.printable(entry['reason'])}",
            file=sys.stderr,
        )
    if len(shown) < len(entries):
        print(f"  ... and {len(entries) - len(shown)} more (all in manifest.json)", file=sys.stderr)


def report(manifest, out):
    """Prints what `prepare_dataset` did (counts on stdout, the files it
    skipped, damaged videos, files not taken and warnings on stderr)."""
    for name, subset in manifest["subsets"].items():
        print(
            f"{name}: {subset['videos']} videos, {subset['frames']} frames, "
            f"{len(subset['shards'])} shards"
        )
    decode = manifest["decode"]
    run = decode["this_run"]
    speed = (
        f"{decode['decode_fps']} frames/s per process"
        if decode["decode_fps"]
        else "no frames decoded"
    )
    if not run["videos_processed"]:
        how = "nothing to decode"
    elif run.get("runner") == "beam":
        how = "by Apache Beam, one task per shard"
    elif run["workers"]:
        how = f"with {run['workers']} worker processes"
    else:
        how = "in this process"
    if run.get("runner") != "beam" and run["workers_requested"] > max(run["workers"], 1):
        how += f" (--workers {run['workers_requested']}: never more than the videos to decode)"
    print(
        f"PyAV decode: {speed}; this run: {run['videos_processed']} videos in "
        f"{run['wall_seconds']} s {how}, {run['shards_reused']} shard(s) reused."
    )
    _list(f"Skipped {len(manifest['skipped'])} file(s)", manifest["skipped"])
    _list(
        f"Kept {len(manifest['damaged'])} damaged video(s) with their decodable frames",
        manifest["damaged"],
    )
    _list(
        f"Not taken: {len(manifest['ignored'])} file(s) or folder(s)", manifest["ignored"], limit=20
    )
    for line in manifest["warnings"]:
        print(f"warning: {cliutil.printable(line)}", file=sys.stderr)
    print(f"manifest: {cliutil.printable(join(out, 'manifest.json'))}")


def _beam_options_attached(argv):
    """`--beam-options VALUE` as `--beam-options=VALUE`: argparse would take
    a lone value that starts with `--` (`"--runner=DirectRunner"`) for an
    option of its own."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, word in enumerate(argv[:-1]):
        if word == "--beam-options":
            argv[i : i + 2] = [f"--beam-options={argv[i + 1]}"]
            break
    return argv


@cliutil.entry_point(resume=True)
def main(argv=None):
    args = build_parser().parse_args(_beam_options_attached(argv))
    if args.runner == "beam" and not beam_runner.available():
        return cliutil.fail(beam_runner.MISSING + ".")
    try:
        beam_options = shlex.split(args.beam_options)
    except ValueError as error:
        return cliutil.fail(f"--beam-options {args.beam_options!r}: {error}.")
    if beam_options and args.runner != "beam":
        return cliutil.fail("--beam-options needs --runner beam.")
    try:
        dataset = load_dataset(args)
        cliutil.quiet_tensorflow()
        from training.data.shard_writer import prepare_dataset

        manifest = prepare_dataset(
            dataset,
            args.out,
            short_side=args.short_side or None,
            workers=args.workers,
            videos_per_shard=args.videos_per_shard,
            jpeg_quality=args.jpeg_quality,
            max_frames=args.max_frames,
            progress=not args.quiet,
            runner=args.runner,
            beam_options=beam_options,
        )
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    report(manifest, args.out)
    if not any(s["videos"] for s in manifest["subsets"].values()):
        return cliutil.fail(
            f"no usable video: all {len(manifest['skipped'])} "
            "listed file(s) were skipped (reasons above and in "
            "manifest.json).",
            code=1,
        )
    if args.strict and manifest["skipped"]:
        return cliutil.fail(f"--strict: {len(manifest['skipped'])} file(s) were skipped.", code=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
