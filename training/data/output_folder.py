"""`prepare`'s output folder, through `tf.io.gfile`: a local folder or any
filesystem TensorFlow has (`gs://…`, `ram://…`).

Every file `prepare` writes appears whole or not at all: it is written
under a temporary name beside it (`cliutil.partial_path`:
`.partial-<random>-<name>`, random so that two attempts at one shard, on
one machine or two, never write the same file) and renamed into place
(`cliutil.atomic_path` over `tf.io.gfile`). On a local disk the rename is
atomic; on an object store (`gs://`) it is a copy, and an object becomes
visible only once fully written.

Example:

>>> from training.data import output_folder
>>> output_folder.ensure_writable("gs://bucket/k400")
>>> output_folder.write_json("gs://bucket/k400/manifest.json", {"format": "…"})
"""

import json
import os

import tensorflow as tf

import cliutil
from training.data.gfile_paths import join


def _why(error):
    return cliutil.one_line(
        getattr(error, "message", None) or getattr(error, "strerror", None) or error
    )


def ensure_writable(folder):
    """Creates `folder` and checks that files can be written there, before
    anything is decoded; errors name the folder and the cause.

    Raises:
        NotADirectoryError: a file is in the way.
        PermissionError: the folder cannot be created or written.
    """
    folder = os.fspath(folder)
    in_the_way = NotADirectoryError(
        f"--out {cliutil.printable(folder)}: a file is in the way (expected a folder)."
    )
    try:
        tf.io.gfile.makedirs(folder)
    except (tf.errors.OpError, OSError) as error:
        if _file_above(folder):
            raise in_the_way from None
        raise PermissionError(
            f"--out {cliutil.printable(folder)}: cannot create the folder ({_why(error)})."
        ) from None
    if not tf.io.gfile.isdir(folder):
        raise in_the_way
    probe = cliutil.partial_path(join(folder, "prepare-write-check"))
    try:
        with tf.io.gfile.GFile(probe, "w") as handle:
            handle.write("")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as error:
        raise PermissionError(
            f"--out {cliutil.printable(folder)}: cannot write there "
            f"({_why(error)}); choose a writable folder."
        ) from None


def _file_above(folder):
    """True when a file (not a folder) is `folder` or lies on the local
    path to it."""
    if "://" in folder:
        return tf.io.gfile.exists(folder) and not tf.io.gfile.isdir(folder)
    path = os.path.abspath(folder)
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return bool(path) and not os.path.isdir(path)


def names(folder):
    """The names in `folder` (one listing: one request on an object store)."""
    return set(tf.io.gfile.listdir(os.fspath(folder)))


def remove(path):
    tf.io.gfile.remove(os.fspath(path))


def rename(partial, path):
    """`partial` renamed to `path` (replacing it) on any filesystem."""
    tf.io.gfile.rename(partial, path, overwrite=True)


def remove_if_there(path):
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def write_text(path, text):
    """Writes `text` to `path` whole (`cliutil.atomic_path` on
    `tf.io.gfile`)."""
    with (
        cliutil.atomic_path(os.fspath(path), rename=rename, remove=remove_if_there) as partial,
        tf.io.gfile.GFile(partial, "w") as handle,
    ):
        handle.write(text)


def write_json(path, value):
    """`value` as JSON (valid UTF-8 with any file name in it), written whole."""
    write_text(path, cliutil.dumps_json(value) + "\n")


def read_json_object(path):
    """The JSON object in `path`, or None when it is absent, unreadable or
    not an object."""
    try:
        with tf.io.gfile.GFile(os.fspath(path), "r") as handle:
            value = json.loads(handle.read())
    except (tf.errors.OpError, OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
