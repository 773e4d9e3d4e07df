"""What every dataset layout returns: `VideoItem`s in a `VideoDataset`, and
the errors and helpers the layouts share."""

import dataclasses
import os
import pathlib


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video: its file, integer label, class name and subset."""

    path: str
    label: int
    class_name: str
    subset: str


@dataclasses.dataclass
class VideoDataset:
    """The videos of a dataset and its class names (index = label).

    Attributes:
        items: list of `VideoItem`.
        class_names: list of str; `class_names[item.label] == item.class_name`.
        missing: list of `{"path", "reason", "subset"}` dicts for listed
            videos that were not found (only with `missing="skip"`).
        source: a dict describing where the list came from (layout, files).
        ignored: list of `{"path", "reason"}` dicts for files the layout
            saw but did not take (not a video extension, hidden, a video
            listed twice, the output folder ...); `prepare` counts them and
            lists them in the manifest.
        redraw_split: for layouts whose train/test split is drawn here
            rather than given by the dataset (the folder layout), a callable
            `redraw_split(items) -> items` that draws it again over a subset
            of the items: `prepare` draws it over the usable videos only, so
            that a bad file takes no test slot. None for official splits.
    """

    items: list
    class_names: list
    missing: list = dataclasses.field(default_factory=list)
    source: dict = dataclasses.field(default_factory=dict)
    ignored: list = dataclasses.field(default_factory=list)
    redraw_split: object = dataclasses.field(default=None, repr=False, compare=False)

    def subset(self, name):
        """The items of one subset (`"train"`, `"test"`, `"val"` …)."""
        return [item for item in self.items if item.subset == name]

    def subsets(self):
        """The subset names present, in first-seen order."""
        return list(dict.fromkeys(item.subset for item in self.items))

    def __len__(self):
        return len(self.items)


class AnnotationError(ValueError):
    """A malformed or inconsistent annotation file (file and line given)."""

    def __init__(self, path, line, message):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line else self.path
        super().__init__(f"{where}: {message}")


class MissingVideoError(FileNotFoundError):
    """A video listed by the annotations is not on disk."""


def _check_missing(missing):
    if missing not in ("error", "skip"):
        raise ValueError(
            "Invalid value for argument `missing`. Expected 'error' or "
            f"'skip'. Received: missing={missing!r}"
        )


def _check_split(split, allowed=(1, 2, 3)):
    if isinstance(split, bool) or split not in allowed:
        raise ValueError(
            "Invalid value for argument `split`. Expected one of "
            f"{', '.join(map(str, allowed))}. Received: split={split!r}"
        )


def _require_dir(path, what):
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such directory ({what}).")
    return path


def _read_lines(path):
    """`(line_number, text)` for the non-blank lines of a text file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise AnnotationError(
            path, None, f"not a UTF-8 text file ({error.reason} at byte {error.start})"
        ) from error
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


class _Collector:
    """Gathers items, checking that each listed video exists."""

    def __init__(self, class_names, missing, source):
        _check_missing(missing)
        self.class_names = list(class_names)
        self.missing_mode = missing
        self.items = []
        self.missing = []
        self.ignored = []
        self.source = source
        self.seen = {}

    def add(self, path, label, subset, listed_in=None, line=None):
        """Adds a listed video; a video listed twice for one subset is
        taken once (the repeat is in `ignored`), one listed for two subsets
        (train and test) or two classes is an `AnnotationError`."""
        path = os.fspath(path)
        if self._repeated(path, label, subset, listed_in, line):
            return
        if not os.path.lexists(path):
            where = f" (listed in {listed_in}, line {line})" if listed_in else ""
            if self.missing_mode == "error":
                raise MissingVideoError(
                    f"{path}: no such video file{where}. Pass missing='skip' "
                    "(--missing skip) to prepare the videos that exist and "
                    "list the missing ones in the manifest."
                )
            self.missing.append(
                {"path": path, "subset": subset, "reason": f"listed but not found{where}"}
            )
            return
        self.items.append(VideoItem(path, int(label), self.class_names[label], subset))

    def _repeated(self, path, label, subset, listed_in, line):
        key = os.path.normcase(os.path.normpath(path))
        here = f"{listed_in}, line {line}" if listed_in else "the list"
        if key not in self.seen:
            self.seen[key] = (label, subset, here)
            return False
        first_label, first_subset, first = self.seen[key]
        if first_subset != subset:
            raise AnnotationError(
                listed_in,
                line,
                f"{path} is listed for {subset} here and for {first_subset} in "
                f"{first}: a video in both subsets leaks the test set into "
                "training; remove one of the lines",
            )
        if first_label != label:
            raise AnnotationError(
                listed_in,
                line,
                f"{path} is listed as class {self.class_names[label]!r} here "
                f"and as {self.class_names[first_label]!r} in {first}",
            )
        self.ignored.append(
            {
                "path": path,
                "reason": f"listed twice for {subset}: in {first} and in {here}; taken once",
            }
        )
        return True

    def dataset(self):
        return VideoDataset(
            self.items, self.class_names, self.missing, self.source, ignored=self.ignored
        )
