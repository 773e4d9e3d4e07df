"""The training configuration: one dataclass, read from YAML/JSON and the CLI.

Every field of `TrainConfig` is a hyper-parameter or option of
`training.train.train`; its help text (the field's metadata) is also the help
of the matching `python -m training.train --flag`. A config file holds the
same names (YAML or JSON); flags given on the command line override it.

>>> config = TrainConfig(data="prepared/", run_dir="runs/a", epochs=3)
>>> config.lr_schedule
'cosine'
>>> TrainConfig.from_dict({"data": "d", "run_dir": "r", "batch_size": 0})
Traceback (most recent call last):
...
ValueError: Invalid value for config field `batch_size`. ...
"""

import argparse
import dataclasses
import json
import os

DEFAULT_MODEL = "resnet18_3d"
LR_SCHEDULES = ("cosine", "step")
# Builder arguments that TrainConfig sets through its own fields.
BUILDER_ARGUMENTS = (
    "num_classes",
    "input_shape",
    "class_regularization",
    "affection_rates",
    "dropout",
    "class_regularization_options",
)
AUGMENTATIONS = ("scale_jitter", "random_resized_crop", "center")
AUGMENT_ON = ("host", "device")


def json_object(text):
    """Parses a JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON ({error.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object: {text}")
    return value


def _field(default, help, cli=True, **kwargs):
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli, **kwargs})


@dataclasses.dataclass
class TrainConfig:
    """All options of a training run (see each field's help)."""

    # --- data and run -----------------------------------------------------
    data: str = _field(
        None,
        "Prepared dataset: the folder written by `python -m training.prepare` "
        "(or its manifest.json). Required.",
    )
    run_dir: str = _field(
        None,
        "Run directory: config.json, checkpoints/, best.keras, final.keras, "
        "history.csv, tensorboard/, backup/ go here. Re-running the same "
        "command on it resumes an interrupted run. Required.",
    )
    # --- model --------------------------------------------------------------
    model: str = _field(
        None,
        "Model: a name from keras_classreg.models.names(), or "
        "'package.module:builder' / 'path/file.py:builder' for your own "
        "builder taking the zoo's arguments (num_classes, input_shape, "
        "class_regularization, affection_rates, dropout). Default: the model "
        "of the --init-from run (its config.json), else "
        f"{DEFAULT_MODEL}.",
    )
    model_options: dict = _field(
        None,
        "Further builder arguments (the architecture) as JSON, e.g. "
        '\'{"padding": "symmetric", "shortcut": "A"}\'. Default: the '
        "--init-from run's, when it has the same model (a run written by "
        "`python -m training.convert` records those that reproduce the "
        "published network).",
        type=json_object,
    )
    class_regularization: bool = _field(True, "Add a Class Regularization block after each stage.")
    affection_rates: list = _field(
        None,
        "One affection rate per block (e.g. 0.1 0.2 0.3 0.4); default: the "
        "model family's defaults.",
        nargs="+",
        type=float,
    )
    class_regularization_options: dict = _field(
        None,
        "Extra ClassRegularization arguments as JSON, e.g. "
        '\'{"normalization_range": "amplify", "use_bias": true}\'.',
        type=json_object,
    )
    dropout: float = _field(0.0, "Dropout rate before the classifier.")
    init_from: str = _field(
        None,
        "Start from the weights of another model (a .keras file or a run "
        "directory, whose best.keras is used), matched by layer name: the "
        "paper's 'train base -> add Class Regularization -> fine-tune', or a "
        "published Kinetics backbone converted by `python -m training.convert`. "
        "Layers absent from it (the blocks' projections) start fresh, and so "
        "does the classifier when its classes differ from the dataset's. "
        "Unless given, model, model_options, mean and std come from the "
        "run's config.json (the weights' input convention).",
    )
    freeze_backbone: bool = _field(
        False,
        "Train only the classifier and the Class Regularization blocks: every "
        "other layer keeps its (--init-from) weights, batch norms their "
        "statistics.",
    )
    freeze_until: str = _field(
        None,
        "Freeze every layer before the first layer whose name starts with this "
        "stage name (e.g. stage4 for the ResNets: stem and stages 1-3 stay "
        "fixed; Mixed_5b for I3D). The classifier and the Class "
        "Regularization blocks always train.",
    )
    # --- clips --------------------------------------------------------------
    clip_length: int = _field(16, "Frames per clip (T).")
    stride: int = _field(2, "Temporal stride between sampled frames.")
    crop_size: int = _field(112, "Spatial crop size (H = W) of the clips.")
    augmentation: str = _field(
        "scale_jitter",
        "Spatial augmentation of training clips: 'scale_jitter', "
        "'random_resized_crop' or 'center' (none).",
        choices=AUGMENTATIONS,
    )
    augment_on: str = _field(
        "host",
        "Where training clips are resized, flipped and normalised: 'host' "
        "(the tf.data pipeline, on the CPU) or 'device' (the pipeline only "
        "reads and decodes; the model's training step does the rest on the "
        "GPU/TPU, for when the CPU cannot feed the accelerator; slow on a "
        "CPU-only machine). 'device' needs --augmentation scale_jitter or "
        "center. Saved models take float clips either way.",
        choices=AUGMENT_ON,
    )
    flip: bool = _field(
        True,
        "Random horizontal flips of training clips. Turn off when the classes "
        "depend on left/right direction (the synthetic motion dataset).",
    )
    mean: list = _field(
        None,
        "Per-channel mean of [0, 1] pixels; default clipspec.DEFAULT_MEAN (Kinetics).",
        nargs=3,
        type=float,
    )
    std: list = _field(
        None,
        "Per-channel std of [0, 1] pixels; default clipspec.DEFAULT_STD (Kinetics).",
        nargs=3,
        type=float,
    )
    # --- optimisation -------------------------------------------------------
    epochs: int = _field(30, "Number of epochs.")
    batch_size: int = _field(8, "Global batch size (split over all replicas and workers).")
    steps_per_epoch: int = _field(
        None,
        "Training steps per epoch; default: training videos // batch size (at least 1).",
    )
    learning_rate: float = _field(0.05, "Peak learning rate (after warm-up), for the global batch.")
    lr_schedule: str = _field(
        "cosine",
        "'cosine': linear warm-up, then cosine decay to "
        "learning_rate * final_lr_ratio; 'step': linear warm-up, then "
        "x step_gamma at each epoch of step_epochs.",
        choices=LR_SCHEDULES,
    )
    warmup_epochs: float = _field(1.0, "Linear warm-up length in epochs (0: none).")
    final_lr_ratio: float = _field(
        0.0, "Cosine schedule: final learning rate / peak learning rate."
    )
    step_epochs: list = _field(
        None,
        "Step schedule: epochs at which the learning rate is multiplied by "
        "step_gamma; default: at 50%% and 75%% of the epochs.",
        nargs="+",
        type=int,
    )
    step_gamma: float = _field(0.1, "Step schedule: decay factor.")
    momentum: float = _field(0.9, "SGD momentum.")
    nesterov: bool = _field(False, "Use Nesterov momentum.")
    weight_decay: float = _field(
        1e-4,
        "Decoupled weight decay of SGD (not applied to BatchNorm parameters and biases).",
    )
    label_smoothing: float = _field(0.0, "Label smoothing of the cross-entropy.")
    # --- execution ----------------------------------------------------------
    mixed_precision: bool = _field(False, "Train with the mixed_float16 policy (on GPUs).")
    xla: bool = _field(
        None,
        "Compile the training and validation steps with XLA (--xla), or not "
        "(--no-xla); default: the configuration measured fastest where it is "
        "safe: on a CPU with TensorFlow's oneDNN kernels on (python -m "
        "training.train turns them on for x86-64 CPUs with AVX2), a zoo model "
        "trains without XLA; your own models, deterministic and mixed-precision "
        "CPU runs, GPUs and CPUs without oneDNN compile with XLA; several "
        "replicas cannot (see training.compilation; the log says what was "
        "chosen and why).",
    )
    seed: int = _field(0, "Random seed of weights, data order and augmentation.")
    deterministic: bool = _field(
        False,
        "Deterministic data order and TensorFlow ops (slower); with the same "
        "seed, two runs give the same weights. Keeps XLA on CPUs (XLA's CPU "
        "code is deterministic); turns it off on GPUs (the log says so).",
    )
    devices: list = _field(
        None,
        "Devices of MirroredStrategy, e.g. /gpu:0 /gpu:1; default: all local "
        "GPUs, else all logical CPU devices. Ignored under TF_CONFIG "
        "(MultiWorkerMirroredStrategy).",
        nargs="+",
        type=str,
    )
    # --- validation and checkpoints -----------------------------------------
    validation: bool = _field(
        True,
        "Validate after each epoch on val_subset (centre clip of each video); "
        "best.keras is the epoch with the best val top-1.",
    )
    val_subset: str = _field("test", "Subset of the manifest used for validation.")
    val_num_clips: int = _field(1, "Clips per validation video (uniformly spaced, centre crop).")
    num_clips: int = _field(
        10,
        "Test-time clips per video recorded in the run's clip format "
        "(clip_format.json): what evaluation, explanation and serving use "
        "unless told otherwise.",
    )
    num_crops: int = _field(
        1,
        "Test-time crops per clip recorded in the clip format: 1 (centre) or "
        "3 (along the long side).",
        choices=(1, 3),
    )
    keep_checkpoints: int = _field(5, "How many per-epoch checkpoints to keep (0: keep all).")
    verbose: int = _field(1, "0: silent, 1: progress bar, 2: one line per epoch.")

    # -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values, source=None):
        """Builds and validates a config from a plain dict.

        Args:
            values: field names → values (unknown names are an error).
            source: where the values come from (a file name), for errors.
        """
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            where = f" in {source}" if source else ""
            raise ValueError(
                f"Unknown config field(s){where}: {', '.join(unknown)}. "
                f"Expected some of: {', '.join(names)}."
            )
        config = cls(**values)
        config.validate(source)
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    def validate(self, source=None):
        """Raises `ValueError` naming the first invalid field."""
        where = f" (from {source})" if source else ""

        def fail(name, expected):
            raise ValueError(
                f"Invalid value for config field `{name}`. Expected "
                f"{expected}. Received: {name}={getattr(self, name)!r}{where}"
            )

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        for name in ("data", "run_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                fail(name, "a path (it is required)")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            fail("model", "a model name or 'module:builder' (or null: the default)")
        if self.model_options is not None:
            if not isinstance(self.model_options, dict):
                fail("model_options", "a dict of builder arguments")
            reserved = sorted(set(self.model_options) & set(BUILDER_ARGUMENTS))
            if reserved:
                fail(
                    "model_options",
                    "builder arguments other than "
                    f"{', '.join(BUILDER_ARGUMENTS)} (set by their own fields)",
                )
        if self.freeze_until is not None and (
            not isinstance(self.freeze_until, str) or not self.freeze_until
        ):
            fail("freeze_until", "a stage (layer-name prefix) such as 'stage4'")
        if self.freeze_backbone and self.freeze_until is not None:
            fail("freeze_until", "null with freeze_backbone (choose one)")
        for name in (
            "clip_length",
            "stride",
            "crop_size",
            "epochs",
            "batch_size",
            "val_num_clips",
            "num_clips",
        ):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "a positive int")
        if self.steps_per_epoch is not None and (
            not is_int(self.steps_per_epoch) or self.steps_per_epoch < 1
        ):
            fail("steps_per_epoch", "a positive int or null")
        if not is_int(self.keep_checkpoints) or self.keep_checkpoints < 0:
            fail("keep_checkpoints", "an int >= 0")
        if not is_int(self.seed):
            fail("seed", "an int")
        if self.verbose not in (0, 1, 2):
            fail("verbose", "0, 1 or 2")
        if not is_number(self.learning_rate) or self.learning_rate <= 0:
            fail("learning_rate", "a float > 0")
        for name in ("momentum", "label_smoothing", "dropout", "final_lr_ratio"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < 1 + (name == "final_lr_ratio"):
                fail(name, "a float between 0 and 1")
        if not is_number(self.step_gamma) or not 0 < self.step_gamma <= 1:
            fail("step_gamma", "a float in (0, 1]")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            fail("weight_decay", "a float >= 0")
        if not is_number(self.warmup_epochs) or self.warmup_epochs < 0:
            fail("warmup_epochs", "a number of epochs >= 0")
        if self.num_crops not in (1, 3) or isinstance(self.num_crops, bool):
            fail("num_crops", "1 or 3")
        if self.augmentation not in AUGMENTATIONS:
            fail("augmentation", f"one of {AUGMENTATIONS}")
        if self.augment_on not in AUGMENT_ON:
            fail("augment_on", f"one of {AUGMENT_ON}")
        if self.augment_on == "device" and self.augmentation == "random_resized_crop":
            fail("augmentation", "'scale_jitter' or 'center' with augment_on 'device'")
        if self.lr_schedule not in LR_SCHEDULES:
            fail("lr_schedule", f"one of {LR_SCHEDULES}")
        if self.step_epochs is not None and (
            not isinstance(self.step_epochs, (list, tuple))
            or not self.step_epochs
            or not all(is_int(e) and 0 < e < self.epochs for e in self.step_epochs)
            or list(self.step_epochs) != sorted(set(self.step_epochs))
        ):
            fail("step_epochs", f"increasing epochs between 1 and {self.epochs - 1}")
        if self.affection_rates is not None and (
            not isinstance(self.affection_rates, (list, tuple))
            or not all(is_number(r) and 0 <= r <= 1 for r in self.affection_rates)
        ):
            fail("affection_rates", "a list of floats between 0 and 1")
        if self.class_regularization_options is not None and not isinstance(
            self.class_regularization_options, dict
        ):
            fail("class_regularization_options", "a dict of ClassRegularization arguments")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (list, tuple))
                or len(value) != 3
                or not all(is_number(v) for v in value)
                or (name == "std" and not all(v > 0 for v in value))
            ):
                fail(name, "3 numbers (one per RGB channel" + (", > 0)" if name == "std" else ")"))
        if self.devices is not None and (
            not isinstance(self.devices, (list, tuple))
            or not all(isinstance(d, str) for d in self.devices)
        ):
            fail("devices", "a list of device names such as /gpu:0")
        for name in (
            "class_regularization",
            "nesterov",
            "mixed_precision",
            "deterministic",
            "validation",
            "flip",
            "freeze_backbone",
        ):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        if self.xla is not None and not isinstance(self.xla, bool):
            fail("xla", "true, false or null (chosen per machine)")
        if not isinstance(self.val_subset, str):
            fail("val_subset", "a subset name such as 'test'")
        if self.init_from is not None and not isinstance(self.init_from, str):
            fail("init_from", "a path to a .keras file or a run directory")


def load_config_file(path):
    """Reads a YAML (`.yaml`/`.yml`) or JSON config file into a dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ValueError(
                f"Invalid YAML in config file {path}{line}: {getattr(error, 'problem', error)}"
            ) from None
    elif path.endswith(".json"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"Invalid JSON in config file {path} line {error.lineno}: {error.msg}"
            ) from None
    else:
        raise ValueError(f"Config file {path}: expected a .yaml, .yml or .json file.")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(
            f"Config file {path}: expected a mapping of field names to values "
            f"at the top level. Received: {type(values).__name__}"
        )
    return values


def add_config_arguments(parser, cls=TrainConfig):
    """Adds one `--flag` per `cls` field (with its help) to `parser`.

    Flags default to "not given" (`argparse.SUPPRESS`), so only flags the
    user typed override a config file.
    """
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        shown = "" if default is None else f" (default: {default})"
        kwargs = {"default": argparse.SUPPRESS, "dest": field.name, "help": meta["help"] + shown}
        if field.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = meta.get(
                "type", field.type if field.type in (int, float, str) else str
            )
            for key in ("nargs", "choices"):
                if key in meta:
                    kwargs[key] = meta[key]
            if "choices" not in meta:
                kwargs["metavar"] = field.name.upper()
        parser.add_argument(flag, **kwargs)
    return parser


def config_from_args(args, cls=TrainConfig):
    """`TrainConfig` from parsed CLI args: the `--config` file, then flags."""
    values = {}
    source = None
    if getattr(args, "config", None):
        values = load_config_file(args.config)
        source = args.config
    names = {field.name for field in dataclasses.fields(cls)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    values.update(overrides)
    return cls.from_dict(values, source=source)
