"""What every command line of the project shares: how it fails, how it is
interrupted, and how it loads TensorFlow.

- A user error (a missing file, a bad value, data that does not fit the
  model) is one line on stderr, `error: <what, naming the thing>`, and exit
  status 2 (`fail`); never a traceback. Bugs still show their traceback.
- Ctrl-C is `interrupted` (plus, for resumable commands, "rerun the same
  command to resume") and exit status 130, without a traceback
  (`entry_point`).
- `--help` never imports TensorFlow: command-line modules import it (and
  Keras, and TF Serving's protos, which import it) on first use through
  `lazy_import`, so `--help` answers in well under a second.
- `quiet_tensorflow()` imports TensorFlow without the CUDA start-up noise
  of a machine that has no NVIDIA driver at all (`cudart_stub.cc ... Could
  not find cuda drivers`, `failed call to cuInit: ... UNKNOWN ERROR (303)`
  and absl's "All log messages before absl::InitializeLog()" banner):
  only those lines are dropped, only while TensorFlow is imported and
  enumerates its devices, and only when `/dev/nvidiactl`,
  `/proc/driver/nvidia` and `libcuda` are all absent — on a machine with a
  driver, a failing `cuInit` is a real error and is shown. Every other line
  passes through. `TF_CPP_MIN_LOG_LEVEL` defaults to 2 (TensorFlow's INFO
  and WARNING lines off, errors on) and a value the user sets wins.
  Hiding the lines with `TF_CPP_MIN_LOG_LEVEL=3` would hide every
  TensorFlow error, and `CUDA_VISIBLE_DEVICES=""` does not stop the stub
  messages nor the failing `cuInit` (TensorFlow 2.21, checked).
- `printable(path)`: a file name as it can be printed (bytes of a
  non-UTF-8 name, kept by `os.fsdecode` as surrogates, shown as `\\xe9`).
- `dumps_json` / `write_json`: JSON that stays valid UTF-8 with any file
  name (a non-UTF-8 name's bytes are written as `\\udcXX` escapes, which
  `json.loads` turns back into the same `str`, and `os.fsencode` into the
  same bytes).
"""

import argparse
import contextlib
import functools
import importlib
import json
import os
import re
import sys
import threading
import types

USER_ERROR = 2
INTERRUPTED = 130
RESUME_HINT = "rerun the same command to resume"

# Start-up lines of TensorFlow's CUDA support on a machine without an NVIDIA
# driver (the stub library says so, then cuInit fails). Nothing else.
_NO_CUDA_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    r"|failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE|"
    r"no CUDA-capable device)"
)


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


# A worker process checks this often (seconds) whether its parent lives.
PARENT_CHECK_SECONDS = 0.5


def watch_parent(parent):
    """Initializer of worker processes (`ProcessPoolExecutor(initializer=
    watch_parent, initargs=(os.getpid(),))`): ignore Ctrl-C (the main
    process stops its workers) and exit as soon as the parent process is
    gone (e.g. killed with SIGKILL) instead of waiting forever for work.
    It lives here, in a module that imports nothing heavy, so that a
    worker does not import TensorFlow to run it."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# ---------------------------------------------------------------------------
# JSON with any file name
# ---------------------------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(value, indent=2):
    """`json.dumps(value, ensure_ascii=False)` that is valid UTF-8 also when
    a string holds lone surrogates (a non-UTF-8 file name)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically (a temporary file, then
    a rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(dumps_json(value) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# TensorFlow, imported late and quietly
# ---------------------------------------------------------------------------
def has_nvidia_driver():
    """Whether this machine has an NVIDIA driver (device files, the kernel
    module's /proc entry or the libcuda library)."""
    if any(
        os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version")
    ):
        return True
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None


@contextlib.contextmanager
def _dropping_stderr_lines(pattern):
    """Lines written to file descriptor 2 meanwhile (also by C++ code) that
    match `pattern` are dropped; the others are passed on as they come."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):  # no usable stderr
        yield
        return
    try:  # room for TensorFlow's start-up lines without a reader (Linux)
        import fcntl

        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass

    def forward():
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not pattern.search(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    reader = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader ends
        reader.join(timeout=5)
        os.close(saved)


def quiet_tensorflow():
    """Imports TensorFlow (and enumerates its devices) without the CUDA
    start-up noise of a machine without an NVIDIA driver; returns it. See
    the module docstring for what is dropped and why."""
    global _QUIET_DONE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _QUIET_DONE or has_nvidia_driver():
        import tensorflow as tf

        return tf
    # Also when TensorFlow is imported already: its devices (and cuInit)
    # may not be initialised yet.
    with _dropping_stderr_lines(_NO_CUDA_NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices()  # where cuInit is called
    _QUIET_DONE = True
    return tf


_QUIET_DONE = False


class _LazyModule(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__dict__["_target"] = name

    def _load(self):
        module = self.__dict__.get("_module")
        if module is None:
            # the modules loaded this way are those built on TensorFlow
            quiet_tensorflow()
            module = importlib.import_module(self.__dict__["_target"])
            self.__dict__["_module"] = module
        return module

    def __getattr__(self, name):
        return getattr(self._load(), name)

    def __dir__(self):
        return dir(self._load())


def lazy_import(name):
    """A stand-in for module `name` (one built on TensorFlow) that imports
    it on first attribute use, TensorFlow first through
    `quiet_tensorflow`."""
    module = sys.modules.get(name)
    return module if module is not None else _LazyModule(name)
