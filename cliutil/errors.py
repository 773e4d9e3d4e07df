"""How a command line fails: one line, a known exit status, no traceback.

- A user error (a missing file, a bad value, data that does not fit the
  model) is one line on stderr, `error: <what, naming the thing>`, and exit
  status 2 (`fail`, `ArgumentParser`); never a traceback. Bugs still show
  their traceback.
- Ctrl-C is `interrupted` (plus, for resumable commands, "rerun the same
  command to resume") and exit status 130, without a traceback
  (`entry_point`).
- `DataWarning`s (about the data, not the code) print as one
  `warning: ...` line (`plain_warnings`).
- `printable(path)`: a file name as it can be printed (bytes of a
  non-UTF-8 name, kept by `os.fsdecode` as surrogates, shown as `\\xe9`).
"""

import argparse
import contextlib
import functools
import os
import sys

USER_ERROR = 2
INTERRUPTED = 130
RESUME_HINT = "rerun the same command to resume"


def printable(text):
    """`text` (e.g. a path from `os.fsdecode`) with undecodable bytes shown
    as `\\xNN`, so that printing it never raises."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(error):
    """An exception's message on one line (its type when it has none)."""
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = f"missing key {error.args[0]!r}"
    return printable(text or type(error).__name__)


def fail(error, code=USER_ERROR):
    """Prints `error: <message>` (one line) to stderr; returns `code`."""
    message = error if isinstance(error, str) else one_line(error)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors are one line too:
    `error: <what> (see <prog> --help)`, exit status 2."""

    def error(self, message):
        print(f"error: {printable(message)} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(USER_ERROR)


def entry_point(resume=False):
    """Decorator for a command line's `main(argv)`: Ctrl-C prints
    `interrupted` (with the resume hint when `resume`) and returns 130
    instead of a traceback."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                hint = f"; {RESUME_HINT}" if resume else ""
                print(f"\ninterrupted{hint}.", file=sys.stderr, flush=True)
                return INTERRUPTED

        return wrapper

    return decorate


class DataWarning(UserWarning):
    """Something about the data a person should know (a class without test
    videos, skipped files): printed by the command lines as one
    `warning: ...` line."""


@contextlib.contextmanager
def plain_warnings():
    """Within it, `DataWarning`s print as `warning: <message>` (no file and
    line: they are about the data, not the code); other warnings as usual."""
    import warnings

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"warning: {printable(message)}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            yield
    finally:
        warnings.showwarning = previous
