"""TensorFlow imported quietly on a machine without an NVIDIA driver.

`quiet_tensorflow()` imports TensorFlow without the CUDA start-up noise of
a machine that has no NVIDIA driver at all (`cudart_stub.cc ... Could not
find cuda drivers`, `failed call to cuInit: ... UNKNOWN ERROR (303)` and
absl's "All log messages before absl::InitializeLog()" banner): only those
lines are dropped, only while TensorFlow is imported and enumerates its
devices, and only when `/dev/nvidiactl`, `/proc/driver/nvidia` and
`libcuda` are all absent — on a machine with a driver, a failing `cuInit`
is a real error and is shown. Every other line passes through.
`TF_CPP_MIN_LOG_LEVEL` defaults to 2 (TensorFlow's INFO and WARNING lines
off, errors on) and a value the user sets wins. Hiding the lines with
`TF_CPP_MIN_LOG_LEVEL=3` would hide every TensorFlow error, and
`CUDA_VISIBLE_DEVICES=""` does not stop the stub messages nor the failing
`cuInit` (TensorFlow 2.21, checked).

Likewise TensorFlow's INFO banner "oneDNN custom operations are on" (on
CPUs where oneDNN is on by default, e.g. Intel Xeons; printed twice per
import, set or not set `TF_ENABLE_ONEDNN_OPTS`) is written before TensorFlow's
logging reads `TF_CPP_MIN_LOG_LEVEL`, so the level cannot hide it: it is
dropped the same way, on any machine, while the level hides INFO lines.

A command line calls it once its arguments are parsed (so that `--help`
never loads TensorFlow), before the first function-local
`import tensorflow`.
"""

import contextlib
import os
import re
import sys
import threading

# Start-up lines of TensorFlow's CUDA support on a machine without an NVIDIA
# driver (the stub library says so, then cuInit fails). Nothing else.
_NO_CUDA_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    r"|failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE|"
    r"no CUDA-capable device)"
)
# The INFO line TensorFlow prints where oneDNN is on, before its logging
# honours TF_CPP_MIN_LOG_LEVEL.
_ONEDNN_BANNER = re.compile(r"^I\d{4} .*\] oneDNN custom operations are on\.")


def _start_up_noise():
    """What `quiet_tensorflow` drops: the CUDA lines on a machine without a
    driver, and the oneDNN banner while INFO lines are hidden."""
    patterns = [] if has_nvidia_driver() else [_NO_CUDA_NOISE.pattern]
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") not in ("", "0"):
        patterns.append(_ONEDNN_BANNER.pattern)
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


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
    noise = None if _QUIET_DONE else _start_up_noise()
    if noise is None:
        import tensorflow as tf

        return tf
    # Also when TensorFlow is imported already: its devices (and cuInit)
    # may not be initialised yet.
    with _dropping_stderr_lines(noise):
        import tensorflow as tf

        tf.config.list_physical_devices()  # where cuInit is called
    _QUIET_DONE = True
    return tf


_QUIET_DONE = False
