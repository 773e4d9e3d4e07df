"""JSON that stays valid UTF-8 with any file name: a non-UTF-8 name's bytes
(kept by `os.fsdecode` as lone surrogates) are written as `\\udcXX`
escapes, which `json.loads` turns back into the same `str`, and
`os.fsencode` into the same bytes."""

import json
import os
import re

from cliutil.atomic import write_text

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(value, indent=2):
    """`json.dumps(value, ensure_ascii=False)` that is valid UTF-8 also when
    a string holds lone surrogates (a non-UTF-8 file name)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json(path, value):
    """Writes `value` as JSON to `path` whole (`cliutil.atomic`)."""
    write_text(path, dumps_json(value) + "\n")


def read_json(path):
    """The JSON value in `path`; a file that is not JSON raises `ValueError`
    naming it, the line and what is wrong."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: not valid JSON ({error.msg} at line {error.lineno})."
            ) from None
