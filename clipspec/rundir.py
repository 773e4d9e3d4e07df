"""`RunDir`: the one reader (and writer) of a training run directory.

A run directory is an interface: training writes it, evaluation, export,
explanation, conversion and the reproduction harness read it.

    config.json        the resolved training config (every TrainConfig field
                       plus num_classes, class_names, input_shape, ...)
    clip_format.json   the run's `ClipFormat` (clip length, stride, crop,
                       short side, views, mean, std, class names)
    best.keras         the model of the epoch with the best validation top-1
    final.keras        the model after the last epoch
    summary.json       best epoch and score, last epoch's metrics, timings
    checkpoints/       epoch_NNN.keras after each epoch (newest kept)
    backup/            BackupAndRestore's state while a run is unfinished
    history.csv        one row per epoch (1-based `epoch`)
    tensorboard/       TensorBoard logs
    workers/           under TF_CONFIG: the non-chief workers' files

Runs written before `clip_format.json` existed are read through their
`config.json`.

Example:

>>> run = RunDir("runs/r18")                             # doctest: +SKIP
>>> run.clip_format.stride, run.model_path.name          # doctest: +SKIP
(2, 'best.keras')
>>> run, model_path = RunDir.for_model("runs/r18/checkpoints/epoch_003.keras")  # doctest: +SKIP
"""

import json
import os
import pathlib

import cliutil
from clipspec.format import ClipFormat

CONFIG = "config.json"
CLIP_FORMAT = "clip_format.json"
BEST_MODEL = "best.keras"
FINAL_MODEL = "final.keras"
SUMMARY = "summary.json"
HISTORY = "history.csv"
CHECKPOINTS = "checkpoints"
BACKUP = "backup"
TENSORBOARD = "tensorboard"
WORKERS = "workers"


class RunDirError(ValueError):
    """A run directory (or a file in it) that cannot be used, with the reason."""


def _read_json(path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file.") from None
    except OSError as error:
        raise RunDirError(f"{path}: cannot read it ({error.strerror or error}).") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}).") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: expected a JSON object.")
    return value


class RunDir:
    """A training run directory (see the module docstring for its files).

    Args:
        path: the folder. It must exist unless `create=True`.
        create: make the folder (and its parents) if absent.
    """

    def __init__(self, path, create=False):
        self.path = pathlib.Path(os.fspath(path)).absolute()
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise RunDirError(f"{self.path}: no such run directory.")
        elif not self.path.is_dir():
            raise RunDirError(
                f"{self.path}: not a folder (a run directory is the folder training.train wrote)."
            )
        self._config = None

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

    # -- finding runs ----------------------------------------------------
    @classmethod
    def is_run(cls, path):
        """Whether `path` is a folder holding a run's `config.json`."""
        return (pathlib.Path(os.fspath(path)) / CONFIG).is_file()

    @classmethod
    def for_model(cls, model_or_dir):
        """`(run or None, model file)` for a `--model` argument.

        A folder is a run directory (its `best.keras`, else `final.keras`);
        a model file belongs to the run whose `config.json` is beside it or
        one folder up (`RUN/checkpoints/epoch_003.keras`); a file outside
        any run gives `(None, file)`.
        """
        path = pathlib.Path(os.fspath(model_or_dir))
        if path.is_dir():
            run = cls(path)
            return run, run.model_path
        if not path.exists():
            raise RunDirError(f"{path}: no such model file or run directory.")
        for folder in (path.parent, path.parent.parent):
            if cls.is_run(folder):
                return cls(folder), path.absolute()
        return None, path.absolute()

    # -- files -------------------------------------------------------------
    def file(self, name):
        return self.path / name

    @property
    def config_path(self):
        return self.file(CONFIG)

    @property
    def config(self):
        """The resolved training config (`config.json`) as a dict."""
        if self._config is None:
            self._config = _read_json(self.config_path)
        return self._config

    @property
    def has_config(self):
        return self.config_path.is_file()

    @property
    def clip_format(self):
        """The run's `ClipFormat`: `clip_format.json`, or for older runs the
        clip fields of `config.json`."""
        path = self.file(CLIP_FORMAT)
        if path.is_file():
            return ClipFormat.from_dict(_read_json(path), str(path))
        return ClipFormat.from_run_config(self.config, str(self.config_path))

    def clip_format_for(self, model):
        """The run's `ClipFormat`, checked against the clip shape `model`
        takes (an older run's config that lacks the clip shape gets it from
        the model)."""
        shape = tuple(model.inputs[0].shape[1:])
        path = self.file(CLIP_FORMAT)
        if path.is_file():
            clip_format = self.clip_format
        else:
            clip_format = ClipFormat.from_run_config(
                self.config, str(self.config_path), input_shape=shape
            )
        if clip_format.input_shape != shape:
            raise RunDirError(
                f"{self.path}: the run's clip format says clips of "
                f"{clip_format.input_shape} but model '{model.name}' takes "
                f"{shape}; is the model from another run?"
            )
        return clip_format

    @property
    def model_path(self):
        """`best.keras`, else `final.keras` (the error names the folder)."""
        for name in (BEST_MODEL, FINAL_MODEL):
            if self.file(name).is_file():
                return self.file(name)
        raise RunDirError(
            f"{self.path} holds neither {BEST_MODEL} nor {FINAL_MODEL} (an "
            "unfinished or empty run); pass a model file such as "
            f"{self.path / CHECKPOINTS}/epoch_NNN.keras."
        )

    @property
    def is_finished(self):
        return self.file(FINAL_MODEL).is_file()

    def worker(self, task_type, task_index):
        """The folder of a non-chief worker's files (`workers/TYPE-INDEX`)."""
        return self.path / WORKERS / f"{task_type}-{task_index}"

    # -- writing -----------------------------------------------------------
    def remove_partial_files(self):
        """Deletes the half-written files (`cliutil.partial_path` names,
        `.partial-*`) that a killed process left in the run directory and
        its checkpoints; returns their names."""
        removed = []
        for folder in (self.path, self.path / CHECKPOINTS):
            if folder.is_dir():
                for item in folder.glob(cliutil.PARTIAL_PREFIX + "*"):
                    item.unlink()
                    removed.append(item.name)
        return removed

    def write_config(self, values):
        cliutil.write_json(self.config_path, values)
        self._config = dict(values)

    def write_clip_format(self, clip_format):
        cliutil.write_json(self.file(CLIP_FORMAT), clip_format.to_dict())

    def write_summary(self, values):
        cliutil.write_json(self.file(SUMMARY), values)


def clip_format_of_model(model, run=None):
    """The `ClipFormat` to use `model` with: the one place that decides it
    when the model does not carry one.

    In a run directory (`run` with a `config.json`): the run's
    (`RunDir.clip_format_for`, checked against the model). Outside one: the
    model's clip shape `T x S x S` with `ClipFormat`'s defaults and no class
    names (the caller decides what to do without names: `training.export`
    asks for them, `training.explain` numbers the classes).
    """
    if run is not None and run.has_config:
        return run.clip_format_for(model)
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 4 or None in shape[:3] or shape[1] != shape[2]:
        raise ValueError(
            f"Model '{model.name}' takes clips of shape {shape}; expected a fixed "
            "T x S x S x C clip (square crops)."
        )
    return ClipFormat(clip_length=int(shape[0]), crop_size=int(shape[1]))


def load_model(path):
    """Loads a `.keras` model file for inference (no optimizer state), with
    an error that names the file."""
    import keras

    import keras_classreg  # noqa: F401  (registers the custom layers)

    path = pathlib.Path(os.fspath(path))
    if not path.is_file():
        raise RunDirError(f"{path}: model file not found.")
    if path.suffix != ".keras":
        raise RunDirError(f"{path}: expected a .keras model file.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise RunDirError(
            f"{path}: could not load the Keras model ({type(error).__name__}: {error})."
        ) from error
