"""TensorFlow's oneDNN CPU kernels: whether they are on, and turning them on
for a command line before TensorFlow starts.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads: unset, its
x86-64 Linux builds turn oneDNN on only on CPUs with AVX512-VNNI, AVX-VNNI,
AVX512-BF16 or AMX (`IsMKLEnabled` in tensorflow/core/util/util.cc), and
leave it off elsewhere (for instance on AMD EPYCs without those).
`python -m benchmarks.train_step` measured the zoo's training steps with
oneDNN on and XLA off fastest on both CPUs it ran on, including one where
TensorFlow leaves oneDNN off (docs/benchmarks/train_step.md). So the
training and evaluation command lines (and the demo) call `prefer_onednn` before they
import TensorFlow: on an x86-64 CPU with AVX2 (oneDNN's optimised kernels
target AVX2 and newer) it sets `TF_ENABLE_ONEDNN_OPTS=1` unless the user set
the variable;
deterministic runs keep TensorFlow's own choice (that is what their bitwise
repeatability was tested with). Library users set the variable themselves
(docs/training.md). `onednn_enabled` asks the running TensorFlow, which is
what `training.compilation.resolve_xla` decides with.

This module does not import TensorFlow at module level.
"""

import os
import platform
import sys

ENV = "TF_ENABLE_ONEDNN_OPTS"
_X86_64 = ("x86_64", "amd64")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (`avx2`, `avx512_vnni`, ...) as Linux lists
    them; empty when unknown (no /proc/cpuinfo)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cli_choice(deterministic=False, environ=None, machine=None, flags=None):
    """What a command line sets `TF_ENABLE_ONEDNN_OPTS` to before TensorFlow
    starts, and why.

    Args:
        deterministic: the run asks for deterministic ops (then nothing is
            changed).
        environ: the environment the run will see (default `os.environ`).
        machine, flags: `platform.machine()` and `cpu_flags()` (for tests).

    Returns:
        `(value, note)`: `"1"` or `None` (leave the variable as it is), and
        a sentence for the log.
    """
    environ = os.environ if environ is None else environ
    machine = (platform.machine() if machine is None else machine).lower()
    if ENV in environ:
        return None, f"oneDNN: {ENV}={environ[ENV]} as set by the user."
    if deterministic:
        return None, "oneDNN: TensorFlow's default kept (--deterministic)."
    if machine not in _X86_64:
        return None, f"oneDNN: TensorFlow's default kept ({machine or 'unknown'} CPU)."
    flags = cpu_flags() if flags is None else flags
    if "avx2" not in flags:
        return None, "oneDNN: TensorFlow's default kept (an x86-64 CPU without AVX2)."
    return "1", (
        f"oneDNN: on ({ENV}=1, set for this x86-64 CPU with AVX2: the zoo's steps "
        f"were measured fastest with it; {ENV}=0 to turn it off)."
    )


def prefer_onednn(deterministic=False, machine=None, flags=None):
    """Sets `TF_ENABLE_ONEDNN_OPTS` in this process as `cli_choice` says;
    call it before TensorFlow is imported.

    Returns:
        a sentence for the log saying what was done and why.
    """
    value, note = cli_choice(deterministic, machine=machine, flags=flags)
    if value is None:
        return note
    if "tensorflow" in sys.modules:
        return f"oneDNN: TensorFlow's default kept (TensorFlow loaded before {ENV} was set)."
    os.environ[ENV] = value
    return note


def onednn_enabled():
    """Whether the running TensorFlow uses its oneDNN kernels (imports
    TensorFlow)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
