"""Kinetics: CSVs `label,youtube_id,time_start,time_end,split`."""

import csv
import os
import pathlib

from training.data.layouts.base import (
    AnnotationError,
    _Collector,
    _require_dir,
)
from training.data.layouts.registry import register_layout

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_KINETICS_SUBSETS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def kinetics_file_name(youtube_id, time_start, time_end, extension=".mp4"):
    """The conventional clip name: `<id>_<start:06d>_<end:06d>.mp4`.

    >>> kinetics_file_name("abc", 10, 20)
    'abc_000010_000020.mp4'
    """
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}{extension}"


def _kinetics_candidates(root, label, split, name):
    labels = dict.fromkeys([label, label.replace(" ", "_")])
    splits = dict.fromkeys(
        [split, *(s for s, v in _KINETICS_SUBSETS.items() if v == _KINETICS_SUBSETS.get(split))]
    )
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
            path,
            number,
            f"column {column!r} must be a whole, non-negative number of seconds; got {text!r}",
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
        raise ValueError(
            "Invalid value for argument `csv_path`. Expected a path "
            "or a non-empty list of paths. Received: []"
        )
    rows = []
    for path in paths:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such annotation file.")
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise AnnotationError(
                    path, 1, f"empty CSV (expected a header {','.join(KINETICS_COLUMNS)})"
                )
            header = [h.strip() for h in header]
            absent = [c for c in KINETICS_COLUMNS if c not in header]
            if absent:
                raise AnnotationError(
                    path,
                    1,
                    f"header lacks column(s) {', '.join(absent)}; "
                    f"expected {','.join(KINETICS_COLUMNS)}; got "
                    f"{','.join(header)}",
                )
            where = {c: header.index(c) for c in KINETICS_COLUMNS}
            for row in reader:
                number = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise AnnotationError(
                        path,
                        number,
                        f"expected {len(header)} fields like the "
                        f"header; got {len(row)}: {','.join(row)!r}",
                    )
                values = {c: row[i].strip() for c, i in where.items()}
                if not values["label"] or not values["youtube_id"]:
                    raise AnnotationError(path, number, "empty label or youtube_id")
                split = values["split"].lower()
                if split not in _KINETICS_SUBSETS:
                    raise AnnotationError(
                        path,
                        number,
                        f"unknown split {values['split']!r}; expected train, val/validate or test",
                    )
                start = _parse_time(values["time_start"], path, number, "time_start")
                end = _parse_time(values["time_end"], path, number, "time_end")
                if end <= start:
                    raise AnnotationError(
                        path, number, f"time_end ({end}) must be after time_start ({start})"
                    )
                rows.append(
                    (path, number, values["label"], values["youtube_id"], start, end, split)
                )
    if class_names is None:
        class_names = sorted({row[2] for row in rows})
    lookup = {name: i for i, name in enumerate(class_names)}
    collector = _Collector(
        class_names,
        missing,
        {
            "layout": "kinetics",
            "root": str(root),
            "annotations": [str(p) for p in paths],
        },
    )
    for path, number, label, youtube_id, start, end, split in rows:
        if label not in lookup:
            raise AnnotationError(
                path,
                number,
                f"unknown class {label!r} (not in the {len(class_names)} given class names)",
            )
        name = kinetics_file_name(youtube_id, start, end)
        candidates = list(_kinetics_candidates(root, label, split, name))
        found = next((c for c in candidates if os.path.lexists(c)), candidates[0])
        collector.add(found, lookup[label], _KINETICS_SUBSETS[split], path, number)
    return collector.dataset()


@register_layout(
    "kinetics",
    "Kinetics: CSV(s) label,youtube_id,time_start,time_end,split",
    annotations="many",
    annotations_help="one or more CSV files",
)
def _load(root, annotations, options):
    return load_kinetics(root, annotations, missing=options.missing)
