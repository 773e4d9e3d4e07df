"""Dataset layouts: which video files there are, their labels and subsets.

Four layouts, each a loader returning a `VideoDataset`:

- `load_ucf101(root, annotations_dir, split=1)`: UCF-101's `classInd.txt`
  (`1 ApplyEyeMakeup`), `trainlist0N.txt` (`ApplyEyeMakeup/v_..._c01.avi 1`)
  and `testlist0N.txt` (`ApplyEyeMakeup/v_..._c01.avi`), videos at
  `root/<class>/<file>`.
- `load_hmdb51(root, splits_dir, split=1)`: HMDB-51's
  `<class>_test_split<N>.txt` files (`<file> <id>`: 1 = train, 2 = test,
  0 = unused), videos at `root/<class>/<file>`.
- `load_kinetics(root, csv_path)`: Kinetics CSVs
  (`label,youtube_id,time_start,time_end,split`, extra columns ignored),
  videos named `<youtube_id>_<start:06d>_<end:06d>.mp4` under `root`,
  `root/<label>`, `root/<split>` or `root/<split>/<label>` (a label's spaces
  may be written as `_` in folder names).
- `load_folder(root, test_fraction=0.2, seed=0)`: `root/<class_name>/<video>`;
  a seeded, per-class split into train and test.

A malformed annotation raises `AnnotationError` naming the file and line;
a listed video that does not exist raises `MissingVideoError` (or, with
`missing="skip"`, is kept in `VideoDataset.missing` so that `prepare`
reports it).

Example:

>>> from training.data.layouts import load_folder
>>> dataset = load_folder("synthetic/", test_fraction=0.25)
>>> dataset.class_names[:2], len(dataset.subset("train"))
(['clockwise', 'counterclockwise'], 60)
"""

import csv
import dataclasses
import os
import pathlib
import re

import numpy as np

from training.data.decode import VIDEO_EXTENSIONS


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
    """

    items: list
    class_names: list
    missing: list = dataclasses.field(default_factory=list)
    source: dict = dataclasses.field(default_factory=dict)

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
            path, None, f"not a UTF-8 text file ({error.reason} at byte "
                        f"{error.start})"
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
        self.source = source

    def add(self, path, label, subset, listed_in=None, line=None):
        path = os.fspath(path)
        if not os.path.lexists(path):
            where = f" (listed in {listed_in}, line {line})" if listed_in else ""
            if self.missing_mode == "error":
                raise MissingVideoError(
                    f"{path}: no such video file{where}. Pass missing='skip' "
                    "(--missing skip) to prepare the videos that exist and "
                    "list the missing ones in the manifest."
                )
            self.missing.append({"path": path, "subset": subset,
                                 "reason": f"listed but not found{where}"})
            return
        self.items.append(VideoItem(path, int(label), self.class_names[label], subset))

    def dataset(self):
        return VideoDataset(self.items, self.class_names, self.missing, self.source)


# --------------------------------------------------------------------------
# UCF-101
# --------------------------------------------------------------------------
def _class_lookup(class_names):
    exact = {name: i for i, name in enumerate(class_names)}
    folded = {name.lower(): i for i, name in enumerate(class_names)}
    return lambda name: exact.get(name, folded.get(name.lower()))


def _read_ucf_class_index(path):
    names, seen = [], {}
    for number, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(
                path, number, f"expected '<index> <ClassName>' (e.g. "
                              f"'1 ApplyEyeMakeup'); got {line!r}"
            )
        index, name = int(parts[0]), parts[1]
        if index != len(names) + 1:
            raise AnnotationError(
                path, number, f"class indices must count up from 1; expected "
                              f"{len(names) + 1}, got {index}"
            )
        if name in seen:
            raise AnnotationError(
                path, number, f"class {name!r} already defined on line {seen[name]}"
            )
        seen[name] = number
        names.append(name)
    if not names:
        raise AnnotationError(path, None, "no classes listed")
    return names


def load_ucf101(root, annotations_dir, split=1, missing="error"):
    """UCF-101 with the official split files.

    Args:
        root: folder holding `<ClassName>/v_<ClassName>_gXX_cYY.avi`.
        annotations_dir: folder holding `classInd.txt`, `trainlist0N.txt`
            and `testlist0N.txt` (the `ucfTrainTestlist` folder).
        split: 1, 2 or 3.
        missing: `"error"` (default) raises on a listed video that is not on
            disk; `"skip"` records it in `VideoDataset.missing`.

    Returns:
        a `VideoDataset` with subsets `"train"` and `"test"`; labels are
        `classInd.txt`'s indices minus one.
    """
    _check_split(split)
    root = _require_dir(root, "UCF-101 videos")
    annotations = _require_dir(annotations_dir, "UCF-101 split files")
    class_file = annotations / "classInd.txt"
    class_names = _read_ucf_class_index(class_file)
    lookup = _class_lookup(class_names)
    files = {s: annotations / f"{s}list{split:02d}.txt" for s in ("train", "test")}
    collector = _Collector(class_names, missing, {
        "layout": "ucf101", "root": str(root), "split": split,
        "annotations": [str(class_file)] + [str(f) for f in files.values()],
    })
    for subset, list_file in files.items():
        for number, line in _read_lines(list_file):
            parts = line.split()
            expected = ("'<ClassName>/<video> <index>'" if subset == "train"
                        else "'<ClassName>/<video>'")
            if len(parts) not in (1, 2) or (subset == "train" and len(parts) != 2):
                raise AnnotationError(
                    list_file, number, f"expected {expected}; got {line!r}"
                )
            relative = parts[0].replace("\\", "/")
            if "/" not in relative:
                raise AnnotationError(
                    list_file, number,
                    f"expected a path '<ClassName>/<video>'; got {relative!r}"
                )
            folder = relative.split("/")[0]
            label = lookup(folder)
            if label is None:
                raise AnnotationError(
                    list_file, number,
                    f"unknown class {folder!r} (not in {class_file.name})"
                )
            if len(parts) == 2:
                if not parts[1].isdigit():
                    raise AnnotationError(
                        list_file, number,
                        f"the class index must be an integer; got {parts[1]!r}"
                    )
                index = int(parts[1])
                if index - 1 != label:
                    raise AnnotationError(
                        list_file, number,
                        f"class index {index} does not match folder "
                        f"{folder!r} (index {label + 1} in {class_file.name})"
                    )
            collector.add(root / relative, label, subset, list_file, number)
    return collector.dataset()


# --------------------------------------------------------------------------
# HMDB-51
# --------------------------------------------------------------------------
_HMDB_NAME = re.compile(r"^(?P<name>.+)_test_split(?P<split>[1-3])\.txt$")


def load_hmdb51(root, splits_dir, split=1, missing="error"):
    """HMDB-51 with the official `<class>_test_split<N>.txt` files.

    Args:
        root: folder holding `<class>/<video>.avi`.
        splits_dir: folder holding the split files (`testTrainMulti_7030_splits`).
        split: 1, 2 or 3.
        missing: `"error"` or `"skip"` (see `load_ucf101`).

    Returns:
        a `VideoDataset` with subsets `"train"` (id 1) and `"test"` (id 2);
        videos with id 0 are not used. Classes in alphabetical order.
    """
    _check_split(split)
    root = _require_dir(root, "HMDB-51 videos")
    splits = _require_dir(splits_dir, "HMDB-51 split files")
    files = {}
    for path in splits.iterdir():
        match = _HMDB_NAME.match(path.name)
        if match and int(match["split"]) == split:
            files[match["name"]] = path
    if not files:
        raise FileNotFoundError(
            f"{splits}: no '<class>_test_split{split}.txt' files found."
        )
    class_names = sorted(files)
    collector = _Collector(class_names, missing, {
        "layout": "hmdb51", "root": str(root), "split": split,
        "annotations": [str(files[name]) for name in class_names],
    })
    subsets = {"1": "train", "2": "test"}
    for label, name in enumerate(class_names):
        split_file = files[name]
        for number, line in _read_lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(
                    split_file, number,
                    "expected '<video file> <0|1|2>' (1 = train, 2 = test, "
                    f"0 = unused); got {line!r}"
                )
            if parts[1] in subsets:
                collector.add(root / name / parts[0], label, subsets[parts[1]],
                              split_file, number)
    return collector.dataset()


# --------------------------------------------------------------------------
# Kinetics
# --------------------------------------------------------------------------
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_KINETICS_SUBSETS = {"train": "train", "training": "train", "val": "val",
                     "valid": "val", "validate": "val", "validation": "val",
                     "test": "test", "testing": "test"}


def kinetics_file_name(youtube_id, time_start, time_end, extension=".mp4"):
    """The conventional clip name: `<id>_<start:06d>_<end:06d>.mp4`.

    >>> kinetics_file_name("abc", 10, 20)
    'abc_000010_000020.mp4'
    """
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}{extension}"


def _kinetics_candidates(root, label, split, name):
    labels = dict.fromkeys([label, label.replace(" ", "_")])
    splits = dict.fromkeys([split, *(s for s, v in _KINETICS_SUBSETS.items()
                                     if v == _KINETICS_SUBSETS.get(split))])
    yield root / name
    for folder in labels:
        yield root / folder / name
    for s in splits:
        yield root / s / name
        for folder in labels:
            yield root / s / folder / name


def _parse_time(text, path, number, column):
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(
            path, number, f"column {column!r} must be a number of seconds; got {text!r}"
        ) from None
    if value < 0 or value != int(value):
        raise AnnotationError(
            path, number,
            f"column {column!r} must be a whole, non-negative number of seconds; got {text!r}"
        )
    return int(value)


def load_kinetics(root, csv_path, class_names=None, missing="error"):
    """Kinetics (400/600/700) from its annotation CSV(s).

    Args:
        root: folder holding the clips (see the module docstring for the
            folder arrangements searched).
        csv_path: a CSV path or a list of them (e.g. `train.csv` and
            `validate.csv`), with columns `label,youtube_id,time_start,
            time_end,split`.
        class_names: the class list (index = label); default: the sorted
            labels found in the CSV(s). With a list given, a label not in it
            is an error (an unknown class).
        missing: `"error"` or `"skip"` (see `load_ucf101`).

    Returns:
        a `VideoDataset`; subsets `"train"`, `"val"` (CSV `validate`/`val`)
        and `"test"`.
    """
    root = _require_dir(root, "Kinetics videos")
    paths = [csv_path] if isinstance(csv_path, (str, os.PathLike)) else list(csv_path)
    if not paths:
        raise ValueError("Invalid value for argument `csv_path`. Expected a path "
                         "or a non-empty list of paths. Received: []")
    rows = []
    for path in paths:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such annotation file.")
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise AnnotationError(path, 1, "empty CSV (expected a header "
                                               f"{','.join(KINETICS_COLUMNS)})")
            header = [h.strip() for h in header]
            absent = [c for c in KINETICS_COLUMNS if c not in header]
            if absent:
                raise AnnotationError(
                    path, 1, f"header lacks column(s) {', '.join(absent)}; "
                             f"expected {','.join(KINETICS_COLUMNS)}; got "
                             f"{','.join(header)}"
                )
            where = {c: header.index(c) for c in KINETICS_COLUMNS}
            for row in reader:
                number = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise AnnotationError(
                        path, number, f"expected {len(header)} fields like the "
                                      f"header; got {len(row)}: {','.join(row)!r}"
                    )
                values = {c: row[i].strip() for c, i in where.items()}
                if not values["label"] or not values["youtube_id"]:
                    raise AnnotationError(path, number, "empty label or youtube_id")
                split = values["split"].lower()
                if split not in _KINETICS_SUBSETS:
                    raise AnnotationError(
                        path, number, f"unknown split {values['split']!r}; expected "
                                      "train, val/validate or test"
                    )
                start = _parse_time(values["time_start"], path, number, "time_start")
                end = _parse_time(values["time_end"], path, number, "time_end")
                if end <= start:
                    raise AnnotationError(
                        path, number, f"time_end ({end}) must be after time_start ({start})"
                    )
                rows.append((path, number, values["label"], values["youtube_id"],
                             start, end, split))
    if class_names is None:
        class_names = sorted({row[2] for row in rows})
    lookup = {name: i for i, name in enumerate(class_names)}
    collector = _Collector(class_names, missing, {
        "layout": "kinetics", "root": str(root),
        "annotations": [str(p) for p in paths],
    })
    for path, number, label, youtube_id, start, end, split in rows:
        if label not in lookup:
            raise AnnotationError(
                path, number, f"unknown class {label!r} (not in the "
                              f"{len(class_names)} given class names)"
            )
        name = kinetics_file_name(youtube_id, start, end)
        candidates = list(_kinetics_candidates(root, label, split, name))
        found = next((c for c in candidates if os.path.lexists(c)), candidates[0])
        collector.add(found, lookup[label], _KINETICS_SUBSETS[split], path, number)
    return collector.dataset()


# --------------------------------------------------------------------------
# Generic folder layout
# --------------------------------------------------------------------------
def load_folder(root, test_fraction=0.2, seed=0):
    """`root/<class_name>/<video>` with a seeded, per-class train/test split.

    Classes are the sub-folders of `root` in sorted order; videos are the
    files with a video extension (`VIDEO_EXTENSIONS`, any case), found
    recursively. If `root` has `train/` and `test/` sub-folders that both
    hold class folders, those are used as the subsets instead of a split.

    Args:
        root: the dataset folder.
        test_fraction: float in [0, 1): share of each class's videos put in
            `"test"` (rounded to nearest, at least one when a class has two
            or more videos and the fraction is positive).
        seed: int; the same seed gives the same split.

    Returns:
        a `VideoDataset`.
    """
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float))
            or not 0 <= test_fraction < 1):
        raise ValueError(
            "Invalid value for argument `test_fraction`. Expected a float in "
            f"[0, 1). Received: test_fraction={test_fraction!r}"
        )
    root = _require_dir(root, "dataset root")
    source = {"layout": "folder", "root": str(root)}
    pre_split = [root / "train", root / "test"]
    if all(p.is_dir() and _class_dirs(p) for p in pre_split):
        names = sorted({d.name for p in pre_split for d in _class_dirs(p)})
        items = []
        for folder in pre_split:
            for label, name in enumerate(names):
                for path in _videos(folder / name):
                    items.append(VideoItem(path, label, name, folder.name))
        return VideoDataset(items, names, [], {**source, "split": "folders"})
    classes = _class_dirs(root)
    if not classes:
        raise FileNotFoundError(
            f"{root}: no class folders found; expected root/<class_name>/<video>."
        )
    names = [d.name for d in classes]
    items = []
    for label, folder in enumerate(classes):
        videos = _videos(folder)
        order = np.random.default_rng([int(seed), label]).permutation(len(videos))
        n_test = int(np.floor(len(videos) * test_fraction + 0.5))
        if test_fraction > 0 and len(videos) >= 2:
            n_test = min(max(n_test, 1), len(videos) - 1)
        test = set(order[:n_test].tolist())
        for i, path in enumerate(videos):
            items.append(VideoItem(path, label, folder.name,
                                   "test" if i in test else "train"))
    if not items:
        raise FileNotFoundError(
            f"{root}: the class folders hold no video files (extensions: "
            f"{' '.join(VIDEO_EXTENSIONS)})."
        )
    return VideoDataset(items, names, [], {**source, "test_fraction": test_fraction,
                                           "seed": seed})


def _class_dirs(root):
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.name)


def _videos(folder):
    found = []
    for directory, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                found.append(os.path.join(directory, name))
    return found
