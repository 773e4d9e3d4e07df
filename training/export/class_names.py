"""Reading a class-names file: one name per line, or a JSON list."""

import json

from clipspec.format import check_class_names


def read_class_names(path):
    """Class names from a text file (one per line, in class-index order) or a
    JSON list; every problem names the file (and line)."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: class names file not found.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it ({error}).") from None
    if path.endswith(".json"):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of class-name strings.")
        return list(check_class_names(names, source=path))
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    for number, line in enumerate(names, start=1):
        if not line:
            raise ValueError(
                f"{path}, line {number}: empty class name (expected one class "
                "name per line, in class-index order)."
            )
    return list(check_class_names(names, source=path))
