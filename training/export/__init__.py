"""Export a trained model as a versioned SavedModel for TensorFlow Serving.

Modules by job:

- `saved_model`: `export_model(model, export_dir, clip_format)` writes one
  self-contained SavedModel (preprocessing in the graph; class names and
  the `ClipFormat` inside it as assets);
- `signatures`: the signatures it offers (`serving_default`,
  `predict_normalized`, `class_names`, `clip_format`, `classify`,
  `explain`/`explain_class`; see `clipspec.signatures`), made by
  signature builders;
- `versions`: `export_version` → `EXPORT_BASE/NAME/VERSION/`, atomically;
- `warmup`: TF Serving warm-up requests, `clip_example` for `classify`;
- `from_run`: `export_run` for a run directory / `.keras` / `.weights.h5`;
- `python -m training.export`: the command line.

Example:

>>> import tempfile
>>> from clipspec import ClipFormat
>>> from keras_classreg import models
>>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
>>> fmt = ClipFormat(clip_length=4, crop_size=32, class_names=("a", "b", "c"))
>>> path = export_version(model, tempfile.mkdtemp(), "tiny", fmt, warmup=False)
>>> path.endswith("tiny/1")
True
"""

import typing

from clipspec.signatures import DEFAULT_TOP_K
from cliutil.lazy import lazy_exports

# Imported on first use, so that `python -m training.export --help` answers
# without loading TensorFlow; named here for tools and readers.
if typing.TYPE_CHECKING:
    from training.export.__main__ import main
    from training.export.from_run import export_run, load_for_export
    from training.export.saved_model import export_model
    from training.export.signatures import (
        SIGNATURE_BUILDERS,
        ExportContext,
        Signature,
        classify_signatures,
        explain_signatures,
        prediction_signatures,
    )
    from training.export.versions import export_version, next_version
    from training.export.warmup import clip_example, write_warmup_requests

_LAZY = {
    "export_run": "training.export.from_run",
    "load_for_export": "training.export.from_run",
    "export_model": "training.export.saved_model",
    "SIGNATURE_BUILDERS": "training.export.signatures",
    "ExportContext": "training.export.signatures",
    "Signature": "training.export.signatures",
    "classify_signatures": "training.export.signatures",
    "explain_signatures": "training.export.signatures",
    "prediction_signatures": "training.export.signatures",
    "export_version": "training.export.versions",
    "next_version": "training.export.versions",
    "clip_example": "training.export.warmup",
    "write_warmup_requests": "training.export.warmup",
    "main": "training.export.__main__",
}

__all__ = [
    "DEFAULT_TOP_K",
    "ExportContext",
    "SIGNATURE_BUILDERS",
    "Signature",
    "classify_signatures",
    "clip_example",
    "explain_signatures",
    "export_model",
    "export_run",
    "export_version",
    "load_for_export",
    "main",
    "next_version",
    "prediction_signatures",
    "write_warmup_requests",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
