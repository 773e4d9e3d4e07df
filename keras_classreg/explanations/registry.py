"""The registry of explanation methods.

An explanation method maps the activations `A` (`[N, t, h, w, C_l]`) that a
Class Regularization block receives to one volume `[N, t, h, w]` per clip,
for the class each clip is explained for. `keras_classreg.explanations`
applies it at every block, zooms and normalises the volumes, and the
command lines (`python -m training.explain --method`) and the export's
`explain` signatures take their choices from here: adding a method is one
decorated function in one new module, nothing else edited.

Example:

>>> import keras
>>> @register("channel_max", "largest activation over the channels "
...           "(class-agnostic)")
... def channel_max(block, activations, class_index):
...     return keras.ops.max(keras.ops.cast(activations, "float32"), axis=-1)
>>> "channel_max" in names()
True
>>> _ = _METHODS.pop("channel_max")  # (keep the doctest side-effect free)
"""

import dataclasses

DEFAULT_METHOD = "class_evidence"


@dataclasses.dataclass(frozen=True)
class ExplanationMethod:
    """A registered method: its name, a one-line description and
    `block_map(block, activations, class_index) -> [N, t, h, w]` (graph
    code; `class_index` is an int32 tensor `[N]`)."""

    name: str
    description: str
    block_map: object


_METHODS = {}


def register(name, description):
    """Decorator registering `block_map(block, activations, class_index)`
    under `name`."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "Invalid value for argument `name`. Expected an identifier such "
            f"as 'class_evidence'. Received: name={name!r}"
        )

    def decorator(block_map):
        if name in _METHODS:
            raise ValueError(
                f"Explanation method {name!r} is already registered "
                f"(by {_METHODS[name].block_map!r})."
            )
        _METHODS[name] = ExplanationMethod(name, description, block_map)
        return block_map

    return decorator


def names():
    """The registered method names, sorted."""
    _load_builtin()
    return sorted(_METHODS)


def get(name):
    """The `ExplanationMethod` registered as `name` (a clear error if none)."""
    _load_builtin()
    if name not in _METHODS:
        raise ValueError(
            f"Unknown explanation method {name!r}. Expected one of: {', '.join(sorted(_METHODS))}."
        )
    return _METHODS[name]


def _load_builtin():
    # The built-in methods register themselves on import.
    from keras_classreg.explanations import methods  # noqa: F401
