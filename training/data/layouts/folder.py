"""The generic folder layout: `root/<class_name>/<video>`."""

import os

import numpy as np

from clipspec.decode import VIDEO_EXTENSIONS
from training.data.layouts.base import (
    VideoDataset,
    VideoItem,
    _require_dir,
)
from training.data.layouts.registry import register_layout


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


@register_layout("folder", "ROOT/<class>/<video>, split by --test-fraction "
                 "(or ROOT/train/<class>, ROOT/test/<class>)")
def _load(root, annotations, options):
    return load_folder(root, options.test_fraction, options.seed)
