"""What every command line of the project shares (the bottom layer: it
imports nothing of ours, and nothing heavy).

- `cliutil.errors`: a user error is one `error: ...` line and exit status 2,
  Ctrl-C is `interrupted` and 130, data warnings are one `warning:` line,
  file names of any bytes print (`printable`).
- `cliutil.tf_startup`: `quiet_tensorflow()` imports TensorFlow without the
  CUDA start-up noise of a machine without an NVIDIA driver.
- `cliutil.workers`: `watch_parent`, the initializer of worker processes
  that end with their parent.
- `cliutil.atomic`: files that appear whole or not at all, under one
  temporary-name scheme (`.partial-<random>-<name>`) that the clean-ups
  know.
- `cliutil.json_text`: JSON that stays valid UTF-8 with any file name,
  written atomically, read with a one-line error.
- `cliutil.registry`: `Registry`, the one shape of the registries (model
  zoo, explanation methods, dataset layouts): a decorator, `names()`, and
  `get(name)` whose error suggests the closest name.
- `cliutil.lazy`: package attributes imported on first use, so that
  `--help` and decoding workers never load TensorFlow.

`--help` never imports TensorFlow: a command-line module imports it (and
Keras, and TF Serving's protos, which import it) inside the functions that
use it, after `quiet_tensorflow()`, and names it for tools under
`typing.TYPE_CHECKING`.

Example:

>>> import cliutil
>>> parser = cliutil.ArgumentParser(prog="tool")
>>> cliutil.USER_ERROR, cliutil.INTERRUPTED
(2, 130)
"""

from cliutil.atomic import PARTIAL_PREFIX, atomic_path, is_partial, partial_path, write_text
from cliutil.errors import (
    INTERRUPTED,
    RESUME_HINT,
    USER_ERROR,
    ArgumentParser,
    DataWarning,
    entry_point,
    fail,
    one_line,
    plain_warnings,
    printable,
)
from cliutil.json_text import dumps_json, read_json, write_json
from cliutil.tf_startup import has_nvidia_driver, quiet_tensorflow
from cliutil.workers import PARENT_CHECK_SECONDS, watch_parent

__all__ = [
    "INTERRUPTED",
    "PARENT_CHECK_SECONDS",
    "PARTIAL_PREFIX",
    "RESUME_HINT",
    "USER_ERROR",
    "ArgumentParser",
    "DataWarning",
    "atomic_path",
    "dumps_json",
    "entry_point",
    "fail",
    "has_nvidia_driver",
    "is_partial",
    "one_line",
    "partial_path",
    "plain_warnings",
    "printable",
    "quiet_tensorflow",
    "read_json",
    "watch_parent",
    "write_json",
    "write_text",
]
