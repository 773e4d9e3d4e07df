"""`python -m training.export`: a trained model → EXPORT_BASE/NAME/VERSION/."""

import sys

import cliutil
from clipspec.signatures import DEFAULT_TOP_K


def build_parser():
    parser = cliutil.ArgumentParser(
        prog="python -m training.export",
        description=(
            "Export a trained model as a versioned SavedModel, "
            "EXPORT_BASE/NAME/VERSION/, ready for TensorFlow Serving or "
            "`python -m serving.server`. Signatures: serving_default (uint8 "
            "clips of any size -> probabilities and top-k class names), "
            "predict_normalized, class_names, clip_format (the clip length, "
            "stride, crop, views and normalisation clients must use), classify "
            "(tf.Examples of JPEG frames) and, for Class Regularization "
            "models, explain / explain_class. The class names, the clip format, "
            "the resizing and the normalisation live inside the SavedModel: "
            "copying the version folder is enough."
        ),
        epilog=(
            "Example: python -m training.export --model runs/a --export-base "
            "exports --name classreg"
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        help="The trained model: a run directory (its "
        "best.keras, else final.keras), a .keras file (e.g. "
        "RUN_DIR/checkpoints/epoch_005.keras) or a "
        ".weights.h5 checkpoint inside a run directory.",
    )
    parser.add_argument(
        "--clip-format",
        default=None,
        metavar="FILE",
        help="A clip_format.json (or a run's config.json) to "
        "export with. Default: the run's, when the model is "
        "in a run directory.",
    )
    parser.add_argument(
        "--class-names",
        default=None,
        metavar="FILE|A,B,...",
        help="Class names in class-index order: a file (one per line, or a "
        "JSON list) or names separated by commas; overrides the run's.",
    )
    parser.add_argument(
        "--export-base",
        required=True,
        help="Folder holding one sub-folder per model name (TF Serving's MODEL_BASE_PATH).",
    )
    parser.add_argument(
        "--name",
        required=True,
        help="Model name: the sub-folder and the name clients request (TF Serving's MODEL_NAME).",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="Version number (default: the next free one). "
        "A running server picks up the new version and "
        "swaps it in.",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help="How many top classes the signatures return "
        f"(capped at the number of classes). Default: {DEFAULT_TOP_K}.",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="Do not write assets.extra/tf_serving_warmup_requests.",
    )
    parser.add_argument(
        "--no-fold",
        action="store_true",
        help="Export the Class Regularization blocks as "
        "trained (projection + classifier kernel) instead of "
        "folded (each block holds its class weights W_l = "
        "W^T P; same outputs, smaller and faster at small "
        "batches). Default: fold.",
    )
    return parser


@cliutil.entry_point()
def main(argv=None):
    args = build_parser().parse_args(argv)
    from clipspec.rundir import RunDir

    try:
        RunDir.for_model(args.model)  # a wrong --model fails before TensorFlow loads
        cliutil.quiet_tensorflow()
        from training.export.from_run import export_run

        path = export_run(
            args.model,
            args.export_base,
            args.name,
            version=args.version,
            class_names_path=args.class_names,
            clip_format_path=args.clip_format,
            top_k=args.top_k,
            warmup=not args.no_warmup,
            fold=not args.no_fold,
        )
    except (ValueError, OSError, ImportError) as error:
        return cliutil.fail(error)
    print(cliutil.printable(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
