"""Per-block explanations of Class Regularization models.

`explain(model, clips)` runs the model once and returns, for every Class
Regularization block, a map of where in the clip that block found the
evidence for the explained class (`Explanation`); `evidence_maps(model)`
is the same as a traceable function (the export's `explain` signatures).
Methods come from a registry (`names()`, `get(name)`, `register`):
`class_evidence` (default) and the class-agnostic `activation`.

Example:

>>> import numpy as np
>>> from keras_classreg import models, explanations
>>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
>>> result = explanations.explain(model, np.zeros((1, 4, 32, 32, 3), "float32"))
>>> result.maps["stage4_classreg"].shape
(1, 4, 32, 32)
"""

# The built-in methods register themselves (in `registry`) on import.
from keras_classreg.explanations import methods  # noqa: F401 (imported to register)
from keras_classreg.explanations.core import (
    FOCUS_THRESHOLD,
    Explanation,
    block_names,
    evidence_maps,
    explain,
    explanation_model,
    normalize_per_clip,
    trilinear_zoom,
)
from keras_classreg.explanations.registry import (
    DEFAULT_METHOD,
    ExplanationMethod,
    get,
    names,
    register,
)

__all__ = [
    "DEFAULT_METHOD",
    "Explanation",
    "ExplanationMethod",
    "FOCUS_THRESHOLD",
    "block_names",
    "evidence_maps",
    "explain",
    "explanation_model",
    "get",
    "names",
    "normalize_per_clip",
    "register",
    "trilinear_zoom",
]
