"""The one reader of a `--class-names` value (`training.export`,
`training.explain`, `training.convert`).

The rule: the value names a file when one exists at that path; otherwise it
is the names themselves, separated by commas (`--class-names cat,dog`).
A file is a JSON list of strings when it ends in `.json`, else one name per
line in class-index order (blank lines at the end are ignored). Names are
stripped of surrounding spaces; an empty name (a blank line between names,
`a,,b`, a trailing comma), a duplicate or no name at all is an error that
names the file and line, or the position in the list. A value without a
comma that is not a file is refused as a missing file (a mistyped path must
not become a class called `classes.txt`).

>>> read_class_names("cat, dog")
['cat', 'dog']
"""

import json
import os

from clipspec.format import check_class_names

EXPECTED = "a file (one name per line, or a JSON list) or names separated by commas"


def read_class_names(value):
    """The class names `value` gives (see the module docstring), as a list;
    `ValueError` with the file, line or position otherwise."""
    text = os.fspath(value)
    if os.path.isfile(text):
        return _from_file(text)
    if "," not in text:
        raise ValueError(f"--class-names {text}: no such file (expected {EXPECTED}).")
    names = [name.strip() for name in text.split(",")]
    for number, name in enumerate(names, start=1):
        if not name:
            raise ValueError(
                f"--class-names {text!r}: name {number} is empty (expected {EXPECTED})."
            )
    return list(check_class_names(names, source="--class-names"))


def _from_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it ({error}).") from None
    if path.endswith(".json"):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of class-name strings.")
        names = [name.strip() for name in names]
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
        for number, line in enumerate(names, start=1):
            if not line:
                raise ValueError(
                    f"{path}, line {number}: empty class name (expected one class "
                    "name per line, in class-index order)."
                )
    if not names:
        raise ValueError(f"{path}: no class names in it.")
    return list(check_class_names(names, source=path))
