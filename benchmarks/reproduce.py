"""Reproduction study: does Class Regularization help, everything else equal?

For one prepared dataset and one model this script trains, per seed:

    base        the model without Class Regularization, E epochs
    classreg    the same model with Class Regularization, E epochs
    base+cr_ft  the paper's protocol: `base` (after its E epochs) → add
                Class Regularization (`init_from`, blocks start fresh) →
                fine-tune F epochs
    base_cont   `base` continued for the same F epochs without it (control)
    alpha=A     optional ablation: `classreg` with the same affection rate A
                in every block (e.g. 0, 0.1, 0.2, 0.4), E epochs

Inside a seed every arm gets the same data order and augmentation (the
training pipeline's `seed` with `deterministic=True`), the same budget and
hyper-parameters, and the same initial weights: one untrained base model per
seed is saved first and every from-scratch arm starts from it by layer name
(`init_from`), so `classreg` differs from `base` only by its blocks. With
`alpha=0` the blocks are the identity, so that arm must match `base` (a
check of the harness itself).

Each run is evaluated at its last epoch (fixed budget, no choice of epoch on
the test set) with multi-view video-level top-1/top-5
(`training.evaluate.evaluate`). Written to `--out`:

    results.json   every figure: per arm mean ± std, per-seed values, wall
                   time, paired differences, step-time overhead, settings
    results.md     the same as Markdown tables
    curves.png     validation top-1 per epoch, mean ± std band per arm
    runs/          one `training.train` run directory per arm and seed

Runs finish → their results are cached; re-running the same command resumes
an interrupted study (and an interrupted run) instead of starting over.

`--docs DIR` also copies the finished study's results into the docs with
the command, the date and the machine:

    DIR/reproduction.md               results.md under a generated-file header
    DIR/reproduction_results.json     results.json
    DIR/reproduction_curves.png       curves.png

The harness is `benchmarks.reproduction`.

Examples:

    # a prepared dataset (python -m training.prepare ...)
    python -m benchmarks.reproduce --data prepared/synth --model resnet18_3d \\
        --clip-length 8 --crop-size 32 --epochs 12 --finetune-epochs 4 \\
        --seeds 3 --ablation 0 0.1 0.2 0.4 --out docs/repro

    # UCF-101 split 1 straight from its folder (prepared on the way):
    python -m benchmarks.reproduce --layout ucf101 --root UCF-101 \\
        --annotations ucfTrainTestlist --prepared prepared/ucf101 \\
        --model resnet101_3d --clip-length 16 --crop-size 112 \\
        --epochs 200 --finetune-epochs 20 --batch-size 64 --out repro_ucf101
"""

import argparse
import os
import pathlib
import shutil
import sys

import cliutil
from benchmarks import report
from training.config import load_config_file
from training.data import layouts

DOCS_FILES = {"results.json": "reproduction_results.json", "curves.png": "reproduction_curves.png"}


def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m benchmarks.reproduce",
        description=__doc__.split("\n\n")[0] + " Trains base vs Class "
        "Regularization (same data order, augmentation, initial weights, budget "
        "and hyper-parameters) over several seeds, plus the paper's protocol "
        "(base → add ClassReg → fine-tune) against base continued, and writes "
        "results.json, results.md and curves.png.",
        epilog=__doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("data (one of --data or --layout)")
    source.add_argument(
        "--data", help="Prepared dataset folder (written by python -m training.prepare)."
    )
    source.add_argument(
        "--layout", choices=layouts.names(), help="Prepare a raw dataset first: its layout."
    )
    source.add_argument("--root", help="With --layout: the folder of videos.")
    source.add_argument(
        "--annotations",
        nargs="+",
        help="With --layout: the layout's annotation paths (e.g. "
        "ucfTrainTestlist/, testTrainMulti_7030_splits/).",
    )
    source.add_argument("--split", type=int, default=1, help="With --layout: split 1-3.")
    source.add_argument(
        "--prepared",
        help="With --layout: where to write the prepared shards (default: OUT/prepared).",
    )
    source.add_argument(
        "--short-side",
        type=int,
        default=128,
        help="With --layout: resize frames' short side to this.",
    )

    study = parser.add_argument_group("study")
    study.add_argument("--out", required=True, help="Study folder (results + runs/).")
    study.add_argument(
        "--seeds", type=int, default=3, help="Number of seeds (0, 1, ...); default 3."
    )
    study.add_argument("--first-seed", type=int, default=0, help="Seed of the first run.")
    study.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        metavar="F",
        help="Paper protocol: fine-tune base + ClassReg (and base "
        "alone) for F epochs after the E epochs; 0 skips these arms.",
    )
    study.add_argument(
        "--finetune-lr", type=float, help="Peak learning rate of the F epochs (default: lr / 10)."
    )
    study.add_argument(
        "--ablation",
        type=float,
        nargs="*",
        default=(),
        metavar="ALPHA",
        help="Affection rates for a uniform-α ablation (the same α in "
        "every block), e.g. 0 0.1 0.2 0.4.",
    )
    study.add_argument(
        "--ablation-seeds",
        type=int,
        default=1,
        help="On how many seeds the ablation runs (default 1).",
    )
    study.add_argument(
        "--eval-clips", type=int, default=4, help="Clips per test video for the video-level score."
    )
    study.add_argument(
        "--eval-crops", type=int, default=1, choices=(1, 3), help="Spatial crops per clip (1 or 3)."
    )
    study.add_argument(
        "--no-overhead",
        action="store_true",
        help="Skip the training-step timing of base vs ClassReg.",
    )

    training = parser.add_argument_group("training (shared by every arm)")
    training.add_argument(
        "--config", help="YAML/JSON file of training.train fields (the flags below override it)."
    )
    training.add_argument("--model", default="resnet18_3d", help="Zoo model name.")
    training.add_argument(
        "--epochs", type=int, default=12, metavar="E", help="Epochs of the from-scratch arms."
    )
    training.add_argument("--batch-size", type=int, default=16)
    training.add_argument("--learning-rate", type=float, default=0.05)
    training.add_argument("--clip-length", type=int, default=8)
    training.add_argument("--stride", type=int, default=2)
    training.add_argument("--crop-size", type=int, default=32)
    training.add_argument(
        "--affection-rates",
        type=float,
        nargs="+",
        help="Rates of the ClassReg arms (default: the model's).",
    )
    training.add_argument(
        "--no-deterministic",
        action="store_true",
        help="Faster, but data order then varies between arms.",
    )
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="When the study has finished, also write DIR/reproduction.md (its "
        "tables under the command, date and machine), "
        "DIR/reproduction_results.json and DIR/reproduction_curves.png "
        "(e.g. docs/benchmarks).",
    )
    return parser


def prepare_raw(args):
    """Prepares `--layout/--root/--annotations` as `python -m training.prepare` would."""
    from training.data import prepare_dataset

    prepared = args.prepared or os.path.join(args.out, "prepared")
    dataset = layouts.load_dataset(
        args.layout, args.root, args.annotations or (), split=args.split, missing="skip"
    )
    manifest = prepare_dataset(dataset, prepared, short_side=args.short_side)
    if manifest["skipped"]:
        print(
            f"prepare: skipped {len(manifest['skipped'])} unreadable or missing "
            f"video(s); listed in {prepared}/manifest.json",
            file=sys.stderr,
        )
    return prepared


def write_docs(out, docs_dir, command_line):
    """Copies a finished study in `out` into `docs_dir` (see the module
    docstring); returns the page's path."""
    out, docs_dir = pathlib.Path(out), pathlib.Path(docs_dir)
    missing = [name for name in ("results.md", *DOCS_FILES) if not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out}: the study has not written {', '.join(missing)}; run it to the "
            "end first (re-running the same command resumes it)."
        )
    body = (out / "results.md").read_text(encoding="utf-8")
    title, _, body = body.partition("\n")
    title = title.lstrip("# ").strip() or "Class Regularization reproduction study"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for source, target in DOCS_FILES.items():
        shutil.copyfile(out / source, docs_dir / target)
    return report.write_page(
        docs_dir / "reproduction.md",
        title,
        command_line,
        [
            body.strip(),
            f"![validation top-1 per epoch]({DOCS_FILES['curves.png']})",
            f"Every figure: [`{DOCS_FILES['results.json']}`]({DOCS_FILES['results.json']}).",
        ],
    )


@cliutil.entry_point(resume=True)
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.layout):
        parser.error("give either --data (a prepared dataset) or --layout with --root")
    if args.layout and not args.root:
        parser.error("--layout needs --root (the folder of videos)")
    if args.layout and layouts.get(args.layout).annotations != "none" and not args.annotations:
        parser.error(
            f"--layout {args.layout} needs --annotations "
            f"({layouts.get(args.layout).annotations_help})"
        )
    for name in ("seeds", "epochs", "eval_clips", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.finetune_epochs < 0 or args.ablation_seeds < 0:
        parser.error("--finetune-epochs and --ablation-seeds must be >= 0")
    if any(not 0 <= a <= 1 for a in args.ablation):
        parser.error(f"--ablation rates must be between 0 and 1; received {args.ablation}")
    common = load_config_file(args.config) if args.config else {}
    common.update(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        clip_length=args.clip_length,
        stride=args.stride,
        crop_size=args.crop_size,
        deterministic=not args.no_deterministic,
        verbose=2,
    )
    if args.affection_rates:
        common["affection_rates"] = args.affection_rates
    cliutil.quiet_tensorflow()
    try:
        data = args.data or prepare_raw(args)
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    command = report.command("benchmarks.reproduce", argv)
    from benchmarks import reproduction

    try:
        study = reproduction.run_study(
            data,
            args.out,
            common,
            seeds=range(args.first_seed, args.first_seed + args.seeds),
            finetune_epochs=args.finetune_epochs,
            finetune_lr=args.finetune_lr,
            ablation=args.ablation,
            ablation_seeds=args.ablation_seeds,
            eval_views=(args.eval_clips, args.eval_crops),
            measure_overhead=not args.no_overhead,
            command=command,
        )
    except (ValueError, FileNotFoundError) as error:
        return cliutil.fail(error)
    print(reproduction.markdown(study))
    if args.docs:
        try:
            page = write_docs(args.out, args.docs, command)
        except OSError as error:
            return cliutil.fail(f"--docs: {cliutil.one_line(error)}")
        print(f"docs: {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
