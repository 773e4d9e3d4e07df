"""The registry of explanation methods.

An explanation method maps the activations `A` (`[N, t, h, w, C_l]`) that a
Class Regularization block receives to one volume `[N, t, h, w]` per clip,
for the class each clip is explained for. `keras_classreg.explanations`
applies it at every block, zooms and normalises the volumes, and the
command lines (`python -m training.explain --method`) and the export's
`explain` signatures take their choices from here: adding a method is one
decorated function in one module imported before use (the built-ins,
`methods.py`, are imported by the package), nothing else edited.

Example:

>>> import keras
>>> @register("channel_max", "largest activation over the channels "
...           "(class-agnostic)")
... def channel_max(block, activations, class_index):
...     return keras.ops.max(keras.ops.cast(activations, "float32"), axis=-1)
>>> "channel_max" in names()
True
>>> _ = _METHODS.remove("channel_max")  # (keep the doctest side-effect free)
"""

import dataclasses

from cliutil.registry import Registry

DEFAULT_METHOD = "class_evidence"


@dataclasses.dataclass(frozen=True)
class ExplanationMethod:
    """A registered method: its name, a one-line description and
    `block_map(block, activations, class_index) -> [N, t, h, w]` (graph
    code; `class_index` is an int32 tensor `[N]`)."""

    name: str
    description: str
    block_map: object


_METHODS = Registry("explanation method")


def register(name, description):
    """Decorator registering `block_map(block, activations, class_index)`
    under `name`."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "Invalid value for argument `name`. Expected an identifier such "
            f"as 'class_evidence'. Received: name={name!r}"
        )
    return _METHODS.register(
        name, lambda block_map: ExplanationMethod(name, description, block_map)
    )


def names():
    """The registered method names, sorted."""
    return _METHODS.names()


def get(name):
    """The `ExplanationMethod` registered as `name` (a clear error if none)."""
    return _METHODS.get(name)
