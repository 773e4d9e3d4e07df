"""Exporting what training left: a run directory, a `.keras` file or a
`.weights.h5` checkpoint, with the run's `ClipFormat`."""

import os
import pathlib

from clipspec.format import ClipFormat, check_class_names
from clipspec.rundir import RunDir, RunDirError, clip_format_of_model, load_model
from training.class_names import read_class_names
from training.export.versions import export_version


def resolve_clip_format(run, model, class_names_path=None, clip_format_path=None):
    """The clip format to export `model` with: `clip_format_path` (a
    `clip_format.json` or a run's `config.json`), else
    `clipspec.rundir.clip_format_of_model` (the run's, else the model's clip
    shape with the defaults); `class_names_path` (a `--class-names` value)
    overrides the class names. Errors name the file that is missing or
    wrong."""
    if clip_format_path is not None:
        path = pathlib.Path(clip_format_path)
        source = RunDir(path.parent) if path.name == "config.json" else None
        if source is not None:
            clip_format = source.clip_format_for(model)
        else:
            try:
                clip_format = ClipFormat.from_json(path.read_text(encoding="utf-8"), str(path))
            except OSError as error:
                raise ValueError(f"{path}: cannot read it ({error.strerror}).") from None
    else:
        clip_format = clip_format_of_model(model, run)
    if class_names_path is not None:
        clip_format = clip_format.replace(class_names=read_class_names(class_names_path))
    num_classes = int(model.outputs[0].shape[-1])
    if not clip_format.class_names:
        raise ValueError(
            "No class names: the model is not inside a training run directory "
            "(no config.json beside it or above it); pass --class-names (a file "
            "with one name per line, or names separated by commas) or --clip-format FILE."
        )
    check_class_names(
        clip_format.class_names, num_classes, source=class_names_path or "the run's class_names"
    )
    return clip_format


def load_for_export(model_path):
    """`(run or None, Keras model)` for a `.keras` file, a run directory or a
    `.weights.h5` checkpoint (rebuilt from its run's `config.json`)."""
    run, path = RunDir.for_model(model_path)
    if path.name.endswith(".weights.h5"):
        if run is None or not run.has_config:
            raise RunDirError(
                f"{path}: exporting a weights checkpoint needs its run's "
                "config.json (beside it or one folder up) to rebuild the network."
            )
        from training.model_building import build_model

        config = run.config
        missing = [key for key in ("model", "input_shape") if key not in config]
        if missing:
            raise RunDirError(
                f"{run.config_path} lacks "
                f"{', '.join(repr(m) for m in missing)}; cannot "
                f"rebuild the network of {path}."
            )
        options = {
            key: config[key]
            for key in (
                "class_regularization",
                "affection_rates",
                "dropout",
                "class_regularization_options",
            )
            if config.get(key) is not None
        }
        options.update(config.get("model_options") or {})  # the architecture
        num_classes = config.get("num_classes") or run.clip_format.num_classes
        model = build_model(config["model"], num_classes, config["input_shape"], **options)
        model.load_weights(path)
        return run, model
    return run, load_model(path)


def export_run(
    model_path,
    export_base,
    name,
    version=None,
    class_names_path=None,
    clip_format_path=None,
    **kwargs,
):
    """Loads a trained model (run directory, `.keras` or `.weights.h5`) and
    exports it to `export_base/name/version/` with its run's clip format.

    Returns:
        the version folder written.
    """
    run, model = load_for_export(os.fspath(model_path))
    clip_format = resolve_clip_format(run, model, class_names_path, clip_format_path)
    return export_version(model, export_base, name, clip_format, version=version, **kwargs)
