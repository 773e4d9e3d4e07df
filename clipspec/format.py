"""`ClipFormat`: how a model's clips are cut, sized and normalised.

One frozen object that every program agreeing on a model's input reads:
training writes it into the run directory (`clip_format.json`), the export
writes it into the SavedModel (asset `clip_format.json` and the
`clip_format` signature), and evaluation, explanation, serving and the
client read it back instead of re-deriving it from flags.

Fields:

- `clip_length` (T) frames per clip, taken every `stride` frames;
- `crop_size` (S): square `S x S` crops;
- `short_side`: the short side frames are decoded at before cropping (the
  prepared data's; default `round(crop_size * 8 / 7)`, 128 for 112);
- `num_clips` x `num_crops` test-time views per video (uniform clips x 1
  centre or 3 crops along the long side);
- `mean`, `std`: per-channel normalisation `(x / 255 - mean) / std`;
- `class_names`: the model's classes, in class-index order;
- `short_video`: `"loop"` or `"pad"` for videos shorter than a clip.

Example:

>>> fmt = ClipFormat(clip_length=8, crop_size=56, class_names=("a", "b"))
>>> fmt.short_side, fmt.num_views
(64, 10)
>>> ClipFormat.from_json(fmt.to_json()) == fmt
True
"""

import dataclasses
import json
import numbers

# Normalisation of [0, 1] pixels: Kinetics RGB statistics as used by Hara et
# al. (3D ResNets): x -> (x / 255 - mean) / std.
DEFAULT_MEAN = (0.4345, 0.4051, 0.3775)
DEFAULT_STD = (0.2768, 0.2713, 0.2737)
SHORT_VIDEO_MODES = ("loop", "pad")
FORMAT_VERSION = 1


def default_short_side(crop_size):
    """The decode-time short side for `crop_size` crops: `round(S * 8 / 7)`
    (Hara et al.'s 128 px for 112 crops), in integer arithmetic.

    >>> default_short_side(112), default_short_side(56), default_short_side(224)
    (128, 64, 256)
    """
    return (16 * int(crop_size) + 7) // 14


def _int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Invalid value for ClipFormat field `{name}`. Expected an int >= "
            f"{minimum}. Received: {name}={value!r}"
        )
    return int(value)


def _floats(name, values, positive):
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != 3 or (positive and min(floats) <= 0):
        expected = "3 positive floats" if positive else "3 floats"
        raise ValueError(
            f"Invalid value for ClipFormat field `{name}`. Expected {expected} "
            f"(one per RGB channel). Received: {name}={values!r}"
        )
    return floats


def check_class_names(class_names, num_classes=None, source="class_names"):
    """Class names as a tuple of distinct, non-empty one-line strings."""
    if isinstance(class_names, (str, bytes)):
        raise ValueError(
            f"Invalid value for `{source}`. Expected a list of "
            f"class names. Received the string {class_names!r}"
        )
    names = tuple(class_names)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name or "\n" in name or "\r" in name:
            raise ValueError(
                f"Invalid value for `{source}`. Expected non-empty strings "
                f"without line breaks. Received: {source}[{index}]={name!r}"
            )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"Invalid value for `{source}`. Expected distinct "
            f"names. Received duplicates: {duplicates}"
        )
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"Invalid value for `{source}`. Expected {num_classes} names (the "
            f"model has {num_classes} classes). Received {len(names)} names."
        )
    return names


@dataclasses.dataclass(frozen=True)
class ClipFormat:
    """The clip contract of one model (see the module docstring)."""

    clip_length: int = 16
    stride: int = 2
    crop_size: int = 112
    short_side: int = None
    num_clips: int = 10
    num_crops: int = 1
    mean: tuple = DEFAULT_MEAN
    std: tuple = DEFAULT_STD
    class_names: tuple = ()
    short_video: str = "loop"

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the fields once
        for name in ("clip_length", "stride", "crop_size", "num_clips"):
            set_(self, name, _int(name, getattr(self, name)))
        if self.short_side is None:
            set_(self, "short_side", default_short_side(self.crop_size))
        set_(self, "short_side", _int("short_side", self.short_side))
        if self.short_side < self.crop_size:
            raise ValueError(
                "Invalid value for ClipFormat field `short_side`. Expected at "
                f"least crop_size={self.crop_size} (frames are cropped after "
                f"decoding). Received: short_side={self.short_side}"
            )
        if isinstance(self.num_crops, bool) or self.num_crops not in (1, 3):
            raise ValueError(
                "Invalid value for ClipFormat field `num_crops`. Expected 1 or "
                f"3. Received: num_crops={self.num_crops!r}"
            )
        set_(self, "mean", _floats("mean", self.mean, positive=False))
        set_(self, "std", _floats("std", self.std, positive=True))
        set_(self, "class_names", check_class_names(self.class_names))
        if self.short_video not in SHORT_VIDEO_MODES:
            raise ValueError(
                "Invalid value for ClipFormat field `short_video`. Expected "
                f"one of {SHORT_VIDEO_MODES}. Received: "
                f"short_video={self.short_video!r}"
            )

    # ------------------------------------------------------------------
    @property
    def num_views(self):
        """Test-time views per video: `num_clips * num_crops`."""
        return self.num_clips * self.num_crops

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        """The model input per clip: `(T, S, S, 3)`."""
        return (self.clip_length, self.crop_size, self.crop_size, 3)

    def replace(self, **changes):
        """A copy with some fields changed (`None` values are ignored, so
        optional command-line overrides can be passed as they are)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "crop_size" in changes and "short_side" not in changes:
            changes["short_side"] = max(self.short_side, default_short_side(changes["crop_size"]))
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------
    def to_dict(self):
        values = dataclasses.asdict(self)
        values.update(
            mean=list(self.mean),
            std=list(self.std),
            class_names=list(self.class_names),
            format_version=FORMAT_VERSION,
        )
        return values

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, values, source="clip format"):
        """Builds a `ClipFormat` from a dict such as `to_dict()` returns.

        Unknown keys are an error (they would be silently ignored
        otherwise), except `format_version`.
        """
        if not isinstance(values, dict):
            raise ValueError(
                f"{source}: expected a JSON object of clip format "
                f"fields. Received: {type(values).__name__}"
            )
        values = dict(values)
        version = values.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source}: clip format version {version!r} is not supported "
                f"(this version reads {FORMAT_VERSION}); update keras-classreg."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"{source}: unknown clip format field(s) "
                f"{', '.join(unknown)}. Expected some of: "
                f"{', '.join(sorted(names))}."
            )
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def from_json(cls, text, source="clip format"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{source}: not valid JSON ({error.msg} at line {error.lineno})."
            ) from None
        return cls.from_dict(values, source)

    @classmethod
    def from_run_config(cls, config, source="config.json", input_shape=None):
        """The clip format of a training run's `config.json` (runs written
        before `clip_format.json` existed). A missing clip length or crop
        size comes from `input_shape` (the config's own, else the given
        model input `(T, S, S, 3)`); other missing fields take the defaults."""
        keys = (
            "clip_length",
            "stride",
            "crop_size",
            "short_side",
            "num_clips",
            "num_crops",
            "mean",
            "std",
            "class_names",
            "short_video",
        )
        values = {k: config[k] for k in keys if config.get(k) is not None}
        shape = config.get("input_shape") or input_shape
        if shape is not None:
            values.setdefault("clip_length", int(shape[0]))
            values.setdefault("crop_size", int(shape[1]))
        return cls.from_dict(values, source)
