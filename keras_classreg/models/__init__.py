"""The 3D model zoo: builders and a registry of names.

>>> from keras_classreg import models
>>> "resnet50_3d" in models.names()
True
>>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
"""

# The builder modules register their names on import.
from keras_classreg.models.i3d import I3D_AFFECTION_RATES, i3d
from keras_classreg.models.registry import MODELS
from keras_classreg.models.resnet3d import (
    RESNET_AFFECTION_RATES,
    resnet3d,
    resnext101_3d,
    wide_resnet50_3d,
)


def names():
    """The registered model names, e.g. `resnet50_3d`, `i3d`."""
    return MODELS.names()


def builder(name):
    """The builder function registered as `name` (its signature lists the
    keyword arguments `get` accepts).

    >>> import inspect
    >>> "widen_factor" in inspect.signature(builder("resnet18_3d")).parameters
    True
    """
    return MODELS.get(name)


def get(name, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments."""
    return builder(name)(**kwargs)


__all__ = [
    "I3D_AFFECTION_RATES",
    "RESNET_AFFECTION_RATES",
    "builder",
    "get",
    "i3d",
    "names",
    "resnet3d",
    "resnext101_3d",
    "wide_resnet50_3d",
]
