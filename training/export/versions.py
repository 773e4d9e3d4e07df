"""Versioned export folders, `EXPORT_BASE/NAME/VERSION/`, written atomically."""

import os
import re

import cliutil
from training.export.saved_model import export_model


def export_version(model, export_base, name, clip_format, version=None, **kwargs):
    """Exports to `export_base/name/version/`, atomically.

    The SavedModel is written to a hidden sibling folder (`.partial-*`)
    and renamed into place, so a server watching `export_base/name` never sees a half-written
    version.

    Args:
        model, clip_format, **kwargs: as for `export_model`.
        export_base: the model base folder's parent (`MODEL_BASE_PATH`).
        name: the model name (a folder name: letters, digits, `._-`).
        version: a positive int, or `None` for the next free number.

    Returns:
        the version folder, as a string.
    """
    if (
        not isinstance(name, str)
        or not re.fullmatch(r"[A-Za-z0-9._-]+", name)
        or name in (".", "..")
    ):
        raise ValueError(
            "Invalid value for argument `name`. Expected a model name made of "
            f"letters, digits, '.', '_' or '-'. Received: name={name!r}"
        )
    base = os.path.join(os.fspath(export_base), name)
    os.makedirs(base, exist_ok=True)
    if version is None:
        version = next_version(base)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            "Invalid value for argument `version`. Expected a "
            f"positive int. Received: version={version!r}"
        )
    target = os.path.join(base, str(version))
    if os.path.exists(target):
        raise ValueError(
            f"Version {version} of model {name!r} already exists at {target}; "
            "versions are immutable (TF Serving may be serving it). Pick "
            "another --version or leave it out for the next free number."
        )
    # a hidden `.partial-*` folder (cliutil.atomic); os.rename refuses to
    # replace a (non-empty) version folder that appeared meanwhile
    with cliutil.atomic_path(target, rename=os.rename) as scratch:
        export_model(model, scratch, clip_format, **kwargs)
    return target


def next_version(model_base):
    """1 + the largest numeric version folder in `model_base` (1 if none)."""
    try:
        entries = os.listdir(model_base)
    except FileNotFoundError:
        entries = []
    return max((int(e) for e in entries if e.isdigit()), default=0) + 1
