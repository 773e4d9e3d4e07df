"""Files that appear whole or not at all: written under a temporary name
beside the target, then renamed into place (atomic on one local
filesystem; on an object store an object appears only once written).

One temporary-name scheme for every writer: `.partial-<random>-<name>`
beside the file (`partial_path`). The random part keeps two attempts apart
(two processes, or a retried task in one process); the leading dot keeps
the file out of listings that skip hidden names (TF Serving's version
folders, `glob("*")`); the name keeps its suffix, which some writers check
(Keras saves only to `*.keras`). What a killed writer leaves is found by
that prefix (`is_partial`): `clipspec.RunDir.remove_partial_files` and
`prepare`'s output folder remove it.

`atomic_path` yields the temporary path to write and does the rename; the
rename and the removal are arguments, so the same helper serves the local
disk (the default) and `tf.io.gfile` filesystems:

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with atomic_path(os.path.join(folder, "a.txt")) as partial:
...     _ = open(partial, "w").write("done")
>>> os.listdir(folder)
['a.txt']
"""

import contextlib
import os
import shutil
import uuid

PARTIAL_PREFIX = ".partial-"


def partial_path(path):
    """The temporary name `path` is written under: `.partial-<random>-<name>`
    in the same folder (a `str` for a `str`, else a `pathlib` path)."""
    folder, name = os.path.split(os.fspath(path))
    partial = os.path.join(folder, f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:12]}-{name}")
    return partial if isinstance(path, str) else type(path)(partial)


def is_partial(path):
    """Whether `path` (or a bare file name) is a temporary name of
    `partial_path`."""
    return os.path.basename(os.fspath(path)).startswith(PARTIAL_PREFIX)


def _remove_local(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def atomic_path(path, rename=os.replace, remove=_remove_local):
    """Yields `partial_path(path)` to write (a file or a folder); when the
    block ends without error, renames it to `path` with `rename(partial,
    path)`; on any error (Ctrl-C included) removes it with `remove(partial)`
    and re-raises."""
    partial = partial_path(path)
    try:
        yield partial
        rename(partial, path)
    except BaseException:
        remove(partial)
        raise


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` whole."""
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
