"""keras-classreg: Class Regularization for video action recognition (Keras 3).

The library part: the `ClassRegularization` layer (and its inference form
`FoldedClassRegularization`), `ClipAugmentation` (device-side
crop/resize/flip/normalise of clips), the 3D model zoo
(`keras_classreg.models`), FLOPs counting, model surgery, per-block
explanations (`keras_classreg.explanations`) and the loaders of published
Kinetics weights (`keras_classreg.pretrained`, its only file I/O). It has no
command line; `clipspec`, `training` and `serving` build on it.

`__version__` is the installed distribution's (`setup.cfg` is the one place
the number is written).
"""

import importlib.metadata

from keras_classreg import explanations, models, pretrained
from keras_classreg.classreg_model import (
    ClassRegModel,
    class_regularization_blocks,
    wire_classifiers,
)
from keras_classreg.flops import flops
from keras_classreg.folding import fold_class_regularization
from keras_classreg.layers import (
    ClassRegularization,
    ClipAugmentation,
    FoldedClassRegularization,
)
from keras_classreg.surgery import add_class_regularization

try:
    __version__ = importlib.metadata.version("keras-classreg")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ClassRegularization",
    "ClipAugmentation",
    "ClassRegModel",
    "FoldedClassRegularization",
    "add_class_regularization",
    "class_regularization_blocks",
    "explanations",
    "flops",
    "fold_class_regularization",
    "models",
    "pretrained",
    "wire_classifiers",
]
