"""keras-classreg: Class Regularization for video action recognition (Keras 3).

The library part: the `ClassRegularization` layer, `ClipAugmentation`
(device-side crop/resize/flip/normalise of clips), the 3D model zoo
(`keras_classreg.models`), FLOPs counting, model surgery, explanations and
the loaders of published Kinetics weights (`keras_classreg.pretrained`, its
only file I/O). It has no command line; `training` and `serving` build on
it.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_classreg.layers import ClassRegularization, ClipAugmentation  # noqa: E402
from keras_classreg.model import (  # noqa: E402
    ClassRegModel,
    class_regularization_blocks,
    wire_classifiers,
)
from keras_classreg import models  # noqa: E402
from keras_classreg.flops import flops  # noqa: E402
from keras_classreg.folding import fold_class_regularization  # noqa: E402
from keras_classreg.surgery import add_class_regularization  # noqa: E402
from keras_classreg import explain  # noqa: E402
from keras_classreg import pretrained  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ClassRegularization",
    "ClipAugmentation",
    "ClassRegModel",
    "add_class_regularization",
    "class_regularization_blocks",
    "explain",
    "flops",
    "fold_class_regularization",
    "models",
    "pretrained",
    "wire_classifiers",
]
