"""A model's base folder on disk, as TF Serving's file-system storage path
source reads it: the numeric version folders holding a SavedModel, a stamp
of their files (a version that failed to load is retried when it changes),
the refusal of symbolic links that lead outside a model's folders, and
load errors with the server's paths taken out (what clients may see)."""

import os
import re


def version_folders(base):
    """version number -> path, for numeric folders holding a SavedModel."""
    try:
        entries = os.listdir(base)
    except OSError:
        return {}
    found = {}
    for entry in entries:
        path = os.path.join(base, entry)
        if entry.isdigit() and (
            os.path.isfile(os.path.join(path, "saved_model.pb"))
            or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))
        ):
            found[int(entry)] = path
    return found


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_contained(path, base_path, number):
    """Refuses a version folder that resolves outside its model's base path,
    and any symbolic link inside it (file or folder: `assets/class_names.txt`,
    `variables/`, ...) that resolves outside the version folder: a model
    must not make the server read files it was not given."""
    base = os.path.realpath(base_path)
    real = os.path.realpath(path)
    if not _inside(real, base):
        raise ValueError(
            f"version {number} is a symbolic link to a folder "
            "outside the model's base path; refused"
        )
    for root, folders, files in os.walk(path):
        for entry in folders + files:
            full = os.path.join(root, entry)
            if os.path.islink(full) and not _inside(os.path.realpath(full), real):
                relative = os.path.relpath(full, path)
                raise ValueError(
                    f"version {number}: {relative} is a symbolic "
                    "link to a file outside the version folder; "
                    "refused"
                )


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"():;,]+/)+")


def without_paths(message, base_path):
    """A load error as clients may see it: the model's base path shown as
    `<base_path>`, other absolute folders cut to `.../`."""
    for path in sorted(
        {os.path.realpath(base_path), os.path.abspath(base_path)}, key=len, reverse=True
    ):
        message = message.replace(path.rstrip(os.sep), "<base_path>")
    return _ABSOLUTE_PATH.sub(".../", message)


def files_stamp(path):
    stamp = []
    for root, _, files in os.walk(path):
        for file in sorted(files):
            try:
                info = os.stat(os.path.join(root, file))
            except OSError:
                continue
            stamp.append(
                (os.path.relpath(os.path.join(root, file), path), info.st_size, info.st_mtime_ns)
            )
    return tuple(sorted(stamp))


__all__ = ["check_contained", "files_stamp", "version_folders", "without_paths"]
