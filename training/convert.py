"""Convert published Kinetics weights into a run directory.

    python -m training.convert --source 3d-resnets \\
        --weights r3d50_K_200ep.pth --out runs/r3d50_k700
    python -m training.convert --source kinetics-i3d \\
        --weights kinetics-i3d/data/checkpoints/rgb_imagenet/model.ckpt \\
        --out runs/i3d_k400

writes a run directory (`clipspec.RunDir`): `OUT/final.keras` (the zoo
model holding the published weights, no Class Regularization blocks,
computing the original network's function), `OUT/clip_format.json` (the
`ClipFormat` the weights expect: clip length, stride, crop, short side,
views, mean, std, class names) and `OUT/config.json` in the format
`python -m training.train` writes (the model and its architecture options
`model_options`, the clip fields, and under `pretrained` where it all came
from). `training.evaluate`, `training.export` and
`training.explain` take the directory (or its `final.keras`) as a trained
run's; `python -m training.train --init-from OUT` fine-tunes from it (the
paper's protocol, see docs/pretrained.md).

The loading itself is `keras_classreg.pretrained`; this is its command
line.
"""

import json
import os
import sys

import cliutil
from clipspec.format import ClipFormat
from clipspec.rundir import RunDir
from training.config import TrainConfig

SOURCES = ("3d-resnets", "kinetics-i3d")
DEFAULT_CLIP_LENGTH = {"3d-resnets": 16, "kinetics-i3d": 64}
DEFAULT_CROP_SIZE = {"3d-resnets": 112, "kinetics-i3d": 224}


def convert(
    source,
    weights,
    out,
    clip_length=None,
    crop_size=None,
    class_names=None,
    release=None,
    conv1_t_stride=1,
    no_max_pool=False,
):
    """Loads published weights and writes them as a run directory.

    Args:
        source: `"3d-resnets"` (a kenshohara/3D-ResNets-PyTorch `.pth`) or
            `"kinetics-i3d"` (a deepmind/kinetics-i3d checkpoint prefix,
            `.index` file or folder).
        weights: the file.
        out: the run directory to create (must not hold a model yet).
        clip_length, crop_size: the Keras model's clip shape; default the
            source's (16 x 112 x 112; I3D 64 x 224 x 224).
        class_names: names in class-index order; default the shipped
            Kinetics list where one applies.
        release, conv1_t_stride, no_max_pool: 3D-ResNets only, see
            `keras_classreg.pretrained.load_3d_resnets_pth`.

    Returns:
        the absolute run directory.
    """
    from keras_classreg import pretrained
    from training import callbacks as run_callbacks

    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}. Expected one of: {', '.join(SOURCES)}.")
    out = os.path.abspath(out)
    for name in ("final.keras", "best.keras"):
        if os.path.exists(os.path.join(out, name)):
            raise FileExistsError(f"{out} already holds {name}; choose a new --out directory.")
    clip_length = DEFAULT_CLIP_LENGTH[source] if clip_length is None else clip_length
    crop_size = DEFAULT_CROP_SIZE[source] if crop_size is None else crop_size
    for name, value in (
        ("clip_length", clip_length),
        ("crop_size", crop_size),
        ("conv1_t_stride", conv1_t_stride),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1 (got {value!r}).")
    input_shape = (clip_length, crop_size, crop_size, 3)
    if source == "3d-resnets":
        loaded = pretrained.load_3d_resnets_pth(
            weights,
            input_shape=input_shape,
            conv1_t_stride=conv1_t_stride,
            no_max_pool=no_max_pool,
            release=release,
            class_names=class_names,
        )
    else:
        if release is not None or conv1_t_stride != 1 or no_max_pool:
            raise ValueError(
                "--release, --conv1-t-stride and --no-max-pool apply to --source 3d-resnets only."
            )
        loaded = pretrained.load_kinetics_i3d(
            weights, input_shape=input_shape, class_names=class_names
        )
    os.makedirs(out, exist_ok=True)
    run_callbacks.save_model_atomically(loaded.model, os.path.join(out, "final.keras"))
    write_run_config(out, loaded)
    return out


def write_run_config(out, loaded):
    """Writes the run directory's `config.json` (in the format of
    `training.train`'s `resolved_config`) and `clip_format.json` for a
    converted model."""
    import keras
    import tensorflow as tf

    import keras_classreg

    clip = loaded.clip_format
    clip_format = ClipFormat(
        clip_length=clip["clip_length"],
        stride=clip["stride"],
        crop_size=clip["crop_size"],
        short_side=clip["short_side"],
        num_clips=clip["num_clips"],
        num_crops=clip["num_crops"],
        mean=clip["mean"],
        std=clip["std"],
        class_names=clip["class_names"] or (),
    )
    values = TrainConfig(
        data=None,
        run_dir=str(out),
        model=loaded.builder,
        model_options=loaded.builder_options,
        class_regularization=False,
        dropout=loaded.source.get("dropout", 0.0),
        clip_length=clip_format.clip_length,
        stride=clip_format.stride,
        crop_size=clip_format.crop_size,
        mean=list(clip_format.mean),
        std=list(clip_format.std),
        num_clips=clip_format.num_clips,
        num_crops=clip_format.num_crops,
        epochs=0,
    ).to_dict()
    values.update(
        num_classes=int(loaded.model.output_shape[-1]),
        class_names=clip["class_names"],
        input_shape=list(clip_format.input_shape),
        short_side=clip_format.short_side,
        pretrained=loaded.source,
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_classreg": keras_classreg.__version__,
        },
    )
    run = RunDir(out, create=True)
    run.write_config(values)
    run.write_clip_format(clip_format)
    return run


def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m training.convert",
        description=(
            "Convert published Kinetics weights (Hara et al.'s 3D ResNets, "
            "DeepMind's I3D) into a run directory: OUT/final.keras and "
            "OUT/config.json with the weights' clip format and class names."
        ),
        epilog=(
            "Then: python -m training.train --data PREPARED --run-dir RUN "
            "--init-from OUT [--freeze-until stage4] fine-tunes it with Class "
            "Regularization on your classes. See docs/pretrained.md."
        ),
    )
    parser.add_argument(
        "--source",
        required=True,
        choices=SOURCES,
        help="3d-resnets: a kenshohara/3D-ResNets-PyTorch .pth file; "
        "kinetics-i3d: a deepmind/kinetics-i3d RGB checkpoint.",
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="The .pth file, or the I3D checkpoint prefix "
        "(.../rgb_imagenet/model.ckpt), its .index file or folder.",
    )
    parser.add_argument("--out", required=True, help="Run directory to write.")
    parser.add_argument(
        "--clip-length",
        type=int,
        help="Frames per clip of the Keras model (default: 16 for "
        "3d-resnets, 64 for kinetics-i3d).",
    )
    parser.add_argument(
        "--crop-size",
        type=int,
        help="Crop size (default: 112 for 3d-resnets, 224 for "
        "kinetics-i3d: the sizes the weights were trained at).",
    )
    parser.add_argument(
        "--class-names",
        metavar="FILE|A,B,...",
        help="Class names in class-index order: a file (one per line, or a "
        "JSON list) or names separated by commas; needed for models whose classes are not "
        "Kinetics-400/600/700 (e.g. 3D-ResNets' Moments in Time "
        "or merged-dataset files).",
    )
    parser.add_argument(
        "--release",
        choices=("2018", "2020"),
        help="3d-resnets: which release's input convention applies "
        "(default: detected from the file; see docs/pretrained.md).",
    )
    parser.add_argument(
        "--conv1-t-stride",
        type=int,
        default=1,
        help="3d-resnets: the --conv1_t_stride the model was trained "
        "with (default 1, as all published files).",
    )
    parser.add_argument(
        "--no-max-pool",
        action="store_true",
        help="3d-resnets: the model was trained with --no_max_pool (no published file was).",
    )
    return parser


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    cliutil.quiet_tensorflow()
    try:
        class_names = None
        if args.class_names:
            from training.class_names import read_class_names

            class_names = read_class_names(args.class_names)
        out = convert(
            args.source,
            args.weights,
            args.out,
            clip_length=args.clip_length,
            crop_size=args.crop_size,
            class_names=class_names,
            release=args.release,
            conv1_t_stride=args.conv1_t_stride,
            no_max_pool=args.no_max_pool,
        )
    except (ValueError, OSError) as error:
        return cliutil.fail(error)
    with open(os.path.join(out, "config.json"), encoding="utf-8") as file:
        config = json.load(file)
    report = config["pretrained"]["weights"]
    print(f"converted {args.weights} -> {out}")
    print(
        f"  model {config['model']} {config['model_options']}, "
        f"{config['num_classes']} classes, input {config['input_shape']}"
    )
    print(
        f"  weights: {report['loaded']} loaded, {len(report['ignored'])} ignored "
        f"(optimizer state, batch-norm counters), of {report['entries']} entries"
    )
    print(
        f"  clips: {config['clip_length']} frames, stride {config['stride']}, short "
        f"side {config['short_side']}, crop {config['crop_size']}, mean "
        f"{[round(v, 4) for v in config['mean']]}, std {[round(v, 4) for v in config['std']]}"
    )
    source = config["pretrained"]
    print(f"  class names: {source['class_names_source']}")
    if config["class_names"] is None:
        print(
            "  warning: no class names; evaluate and export need them "
            "(re-run with --class-names FILE).",
            file=sys.stderr,
        )
    if "release" in source:
        print(f"  release {source['release']}: {source['release_evidence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
