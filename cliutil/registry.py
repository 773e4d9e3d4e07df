"""Named entries of one kind: the one shape of the project's registries
(the model zoo, the explanation methods, the dataset layouts).

An entry is added once under a name (`add`, or the `register` decorator);
`names()` lists them for the command lines' choices and help; `get(name)`
returns one, and an unknown name is a `ValueError` that lists the names
and suggests the closest. The registry imports nothing: the modules that
define entries import it, and the package that offers them imports those
modules, so there is no import circle. It lives in `cliutil` (which
imports nothing heavy) because the command lines take their choices from
the registries before they load TensorFlow, and the library's registries
use it too.

Example:

>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(side):
...     return side * side
>>> shapes.get("square")(3), shapes.names()
(9, ['square'])
>>> shapes.get("sqare")
Traceback (most recent call last):
...
ValueError: Unknown shape 'sqare' (did you mean 'square'?). Expected one of: square.
"""

import difflib


class Registry:
    """Entries of one `kind` (a word for the messages, e.g. "model name")."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def add(self, name, entry):
        """Registers `entry` as `name`; a name is registered once."""
        if name in self._entries:
            raise ValueError(
                f"{self.kind[:1].upper()}{self.kind[1:]} {name!r} is already registered "
                f"(by {self._entries[name]!r})."
            )
        self._entries[name] = entry
        return entry

    def register(self, name, make_entry=None):
        """Decorator: registers the decorated object as `name` (or
        `make_entry(obj)`, e.g. a record holding it) and returns the object
        unchanged."""

        def decorator(obj):
            self.add(name, obj if make_entry is None else make_entry(obj))
            return obj

        return decorator

    def names(self):
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name):
        """The entry registered as `name` (a `ValueError` naming the choices,
        and the closest one, if none)."""
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"Unknown {self.kind} {name!r}{hint}. Expected one of: {', '.join(self.names())}."
            )
        return self._entries[name]

    def remove(self, name):
        """Unregisters `name` (tests and doctests that register their own)."""
        return self._entries.pop(name)

    def __contains__(self, name):
        return name in self._entries
