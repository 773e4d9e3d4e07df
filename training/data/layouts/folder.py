"""The generic folder layout: `root/<class_name>/<video>`.

Listing: class folders are the sub-folders of `root` (sorted); videos are
the files under them, recursively, whose extension is a video extension
(`clipspec.decode.VIDEO_EXTENSIONS`, any case). Symbolic links to folders
are followed (a folder reached twice, e.g. through a link loop, is listed
once). Every file or folder not taken — another extension, a hidden name
(leading `.`), a file beside the class folders, the excluded output folder,
a link loop — is recorded in `VideoDataset.ignored` with the reason, so
that `prepare` counts and lists it. File names may be anything the OS
allows (non-UTF-8 bytes are kept with `os.fsdecode`'s surrogates).

Split: stable under additions. Each video's rank in its class is the
SHA-256 of `"<seed>\\0" + its path relative to root` (bytes, as on disk);
the `round(test_fraction * n)` lowest-ranked videos of a class are the test
set (at least one, and at least one left for training, when the class has
two or more). Adding a video therefore moves at most one existing video
between train and test. `prepare` draws the split over the videos that
decode (`VideoDataset.redraw_split`), so a bad file takes no test slot.
"""

import functools
import hashlib
import os

from clipspec.decode import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from training.data.layouts.base import (
    VideoDataset,
    VideoItem,
    _require_dir,
)
from training.data.layouts.registry import register_layout


def load_folder(root, test_fraction=0.2, seed=0, exclude=()):
    """`root/<class_name>/<video>` with a stable, per-class train/test split.

    If `root` has `train/` and `test/` sub-folders that both hold class
    folders, those are used as the subsets instead of a split.

    Args:
        root: the dataset folder.
        test_fraction: float in [0, 1): share of each class's videos put in
            `"test"` (rounded to nearest, at least one when a class has two
            or more videos and the fraction is positive).
        seed: int; the same seed gives the same split (see the module
            docstring: ranks by a hash of the relative path).
        exclude: folders not to list (e.g. `prepare`'s `--out` when it lies
            inside `root`); they are recorded in `ignored`.

    Returns:
        a `VideoDataset` (with `ignored` and `redraw_split`).
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0 <= test_fraction < 1
    ):
        raise ValueError(
            "Invalid value for argument `test_fraction`. Expected a float in "
            f"[0, 1). Received: test_fraction={test_fraction!r}"
        )
    root = _require_dir(root, "dataset root")
    listing = _Listing(root, exclude)
    source = {"layout": "folder", "root": str(root)}
    pre_split = [root / "train", root / "test"]
    if all(p.is_dir() and listing.class_dirs(p, record=False) for p in pre_split):
        listing.skip_root_entries(keep={"train", "test"})
        names = sorted({d.name for p in pre_split for d in listing.class_dirs(p)})
        items = []
        for folder in pre_split:
            for label, name in enumerate(names):
                for path in listing.videos(folder / name):
                    items.append(VideoItem(path, label, name, folder.name))
        return VideoDataset(
            items, names, [], {**source, "split": "folders"}, ignored=listing.ignored
        )
    classes = listing.class_dirs(root)
    if not classes:
        raise FileNotFoundError(
            f"{root}: no class folders found; expected root/<class_name>/<video>."
        )
    names = [d.name for d in classes]
    items = [
        VideoItem(path, label, folder.name, "train")
        for label, folder in enumerate(classes)
        for path in listing.videos(folder)
    ]
    if not items:
        raise FileNotFoundError(
            f"{root}: the class folders hold no video files (extensions: "
            f"{' '.join(VIDEO_EXTENSIONS)})."
        )
    split = functools.partial(split_items, root=str(root), test_fraction=test_fraction, seed=seed)
    return VideoDataset(
        split(items),
        names,
        [],
        {**source, "split": "hash", "test_fraction": test_fraction, "seed": seed},
        ignored=listing.ignored,
        redraw_split=split,
    )


def split_rank(relative_path, seed=0):
    """The rank key of a video in its class (lowest ranks go to test)."""
    data = f"{int(seed)}\0".encode() + os.fsencode(relative_path).replace(b"\\", b"/")
    return hashlib.sha256(data).hexdigest()


def split_items(items, root, test_fraction, seed):
    """`items` with subsets drawn per class (see the module docstring),
    in their given order."""
    by_class = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    test = set()
    for members in by_class.values():
        count = len(members)
        n_test = int(count * test_fraction + 0.5)
        if test_fraction > 0 and count >= 2:
            n_test = min(max(n_test, 1), count - 1)
        ranked = sorted(
            members, key=lambda item: split_rank(os.path.relpath(item.path, root), seed)
        )
        test.update(item.path for item in ranked[:n_test])
    return [
        VideoItem(item.path, item.label, item.class_name, "test" if item.path in test else "train")
        for item in items
    ]


def _not_a_video(name):
    extension = os.path.splitext(name)[1].lower()
    if not extension:
        return "no file extension; not listed as a video"
    kind = (
        "an audio file"
        if extension in AUDIO_EXTENSIONS
        else "an image file"
        if extension in IMAGE_EXTENSIONS
        else "not a video extension"
    )
    return (
        f"extension {extension} is {kind}; videos are listed by their "
        "extension (rename the file if it is a video)"
    )


class _Listing:
    """Walks the class folders, recording what it does not take."""

    def __init__(self, root, exclude):
        self.root = root
        self.excluded = {os.path.realpath(os.fspath(p)) for p in exclude}
        self.ignored = []
        self.visited = set()

    def _skip(self, path, reason):
        self.ignored.append({"path": os.fspath(path), "reason": reason})

    def _excluded(self, path):
        return os.path.realpath(os.fspath(path)) in self.excluded

    def class_dirs(self, folder, record=True):
        found = []
        for entry in sorted(folder.iterdir(), key=lambda d: d.name):
            if entry.is_dir():
                if self._excluded(entry):
                    if record:
                        self._skip(
                            entry, "the output folder (--out) lies in the dataset root; not listed"
                        )
                elif entry.name.startswith("."):
                    if record:
                        self._skip(entry, "hidden folder; not listed")
                else:
                    found.append(entry)
            elif record:
                self._skip(entry, "not inside a class folder (videos go in root/<class_name>/)")
        return found

    def skip_root_entries(self, keep):
        for entry in sorted(self.root.iterdir(), key=lambda d: d.name):
            if entry.name not in keep:
                self._skip(entry, "beside the train/ and test/ folders; not listed")

    def videos(self, folder):
        found = []
        for directory, dirs, files in os.walk(folder, followlinks=True):
            real = os.path.realpath(directory)
            if real in self.visited:
                self._skip(
                    directory,
                    f"a folder already listed (as {real}, e.g. "
                    "through a symbolic-link loop); listed once",
                )
                dirs[:] = []
                continue
            self.visited.add(real)
            kept = []
            for name in sorted(dirs):
                path = os.path.join(directory, name)
                if self._excluded(path):
                    self._skip(
                        path, "the output folder (--out) lies in the dataset root; not listed"
                    )
                elif name.startswith("."):
                    self._skip(path, "hidden folder; not listed")
                else:
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                path = os.path.join(directory, name)
                if name.startswith("."):
                    self._skip(path, "hidden file; not listed")
                elif os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    found.append(path)
                else:
                    self._skip(path, _not_a_video(name))
        return found


@register_layout(
    "folder",
    "ROOT/<class>/<video>, split by --test-fraction (or ROOT/train/<class>, ROOT/test/<class>)",
)
def _load(root, annotations, options):
    return load_folder(root, options.test_fraction, options.seed, options.exclude)
