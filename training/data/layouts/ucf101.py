"""UCF-101: `classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`."""

from training.data.layouts.base import (
    AnnotationError,
    _check_split,
    _Collector,
    _read_lines,
    _require_dir,
)
from training.data.layouts.registry import register_layout


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
                path,
                number,
                f"expected '<index> <ClassName>' (e.g. '1 ApplyEyeMakeup'); got {line!r}",
            )
        index, name = int(parts[0]), parts[1]
        if index != len(names) + 1:
            raise AnnotationError(
                path,
                number,
                f"class indices must count up from 1; expected {len(names) + 1}, got {index}",
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
    collector = _Collector(
        class_names,
        missing,
        {
            "layout": "ucf101",
            "root": str(root),
            "split": split,
            "annotations": [str(class_file)] + [str(f) for f in files.values()],
        },
    )
    for subset, list_file in files.items():
        for number, line in _read_lines(list_file):
            parts = line.split()
            expected = (
                "'<ClassName>/<video> <index>'" if subset == "train" else "'<ClassName>/<video>'"
            )
            if len(parts) not in (1, 2) or (subset == "train" and len(parts) != 2):
                raise AnnotationError(list_file, number, f"expected {expected}; got {line!r}")
            relative = parts[0].replace("\\", "/")
            if "/" not in relative:
                raise AnnotationError(
                    list_file, number, f"expected a path '<ClassName>/<video>'; got {relative!r}"
                )
            folder = relative.split("/")[0]
            label = lookup(folder)
            if label is None:
                raise AnnotationError(
                    list_file, number, f"unknown class {folder!r} (not in {class_file.name})"
                )
            if len(parts) == 2:
                if not parts[1].isdigit():
                    raise AnnotationError(
                        list_file, number, f"the class index must be an integer; got {parts[1]!r}"
                    )
                index = int(parts[1])
                if index - 1 != label:
                    raise AnnotationError(
                        list_file,
                        number,
                        f"class index {index} does not match folder "
                        f"{folder!r} (index {label + 1} in {class_file.name})",
                    )
            collector.add(root / relative, label, subset, list_file, number)
    return collector.dataset()


@register_layout(
    "ucf101",
    "UCF-101: classInd.txt + trainlist0N/testlist0N.txt (official splits 1-3)",
    annotations="one",
    annotations_help="the folder with classInd.txt and the lists",
)
def _load(root, annotations, options):
    return load_ucf101(root, annotations[0], options.split, options.missing)
