"""HMDB-51: `<class>_test_split<N>.txt` files (1 = train, 2 = test, 0 = unused)."""

import re

from training.data.layouts.base import (
    AnnotationError,
    _check_split,
    _Collector,
    _read_lines,
    _require_dir,
)
from training.data.layouts.registry import register_layout

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
        raise FileNotFoundError(f"{splits}: no '<class>_test_split{split}.txt' files found.")
    class_names = sorted(files)
    collector = _Collector(
        class_names,
        missing,
        {
            "layout": "hmdb51",
            "root": str(root),
            "split": split,
            "annotations": [str(files[name]) for name in class_names],
        },
    )
    subsets = {"1": "train", "2": "test"}
    for label, name in enumerate(class_names):
        split_file = files[name]
        for number, line in _read_lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(
                    split_file,
                    number,
                    "expected '<video file> <0|1|2>' (1 = train, 2 = test, "
                    f"0 = unused); got {line!r}",
                )
            if parts[1] in subsets:
                collector.add(root / name / parts[0], label, subsets[parts[1]], split_file, number)
    return collector.dataset()


@register_layout(
    "hmdb51",
    "HMDB-51: <class>_test_split<N>.txt files (official splits 1-3)",
    annotations="one",
    annotations_help="the folder with the split files",
)
def _load(root, annotations, options):
    return load_hmdb51(root, annotations[0], options.split, options.missing)
