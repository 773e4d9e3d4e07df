"""Package attributes imported on first use (PEP 562).

A package whose `__init__` re-exports names from modules built on
TensorFlow keeps `import package` (and every command line's `--help`)
light by importing each name's module only when the name is first used:

    from cliutil.lazy import lazy_exports

    if typing.TYPE_CHECKING:  # what tools and readers follow
        from training.data.pipeline import clip_dataset

    _LAZY = {"clip_dataset": "training.data.pipeline"}
    __all__ = sorted(_LAZY)
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

The `TYPE_CHECKING` import names the same modules as the table, so type
checkers, IDEs and import graphs see every dependency; only the running
program defers it. (`tests/test_architecture.py` checks that the two
agree.)

Example:

>>> namespace = {"__name__": "pkg"}
>>> getattr_, dir_ = lazy_exports("pkg", namespace, {"sqrt": "math"})
>>> getattr_("sqrt")(9.0), "sqrt" in namespace, "sqrt" in dir_()
(3.0, True, True)
"""

import importlib


def lazy_exports(package, namespace, table):
    """The module-level `__getattr__` and `__dir__` of `package`.

    Args:
        package: the package's `__name__` (for the error message).
        namespace: its `globals()`; a name is stored there once imported,
            so later uses are plain attribute lookups.
        table: `{attribute: module that defines it}`.

    Returns:
        `(__getattr__, __dir__)`.
    """

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
