"""Paths of a folder that is local or on a `tf.io.gfile` filesystem
(`gs://…`, `ram://…`), handled without importing TensorFlow (so that
`--help` and the manifest reader stay light).

>>> join("gs://bucket/k400/", "manifest.json")
'gs://bucket/k400/manifest.json'
>>> basename("gs://bucket/k400/train-00000-of-00002.json")
'train-00000-of-00002.json'
"""

import os


def is_url(path):
    """Whether `path` names a `tf.io.gfile` location (`scheme://…`)."""
    return isinstance(path, (str, os.PathLike)) and "://" in os.fspath(path)


def join(folder, name):
    """`folder/name` for a local folder or a `tf.io.gfile` URL."""
    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else os.path.join(folder, name)


def basename(path):
    """The last part of a local path or a URL."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]
