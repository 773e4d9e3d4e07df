"""The registry of dataset layouts.

A layout turns a folder of videos (plus its annotation files) into a
`VideoDataset`. Each layout module registers one loader with
`@register_layout`; `python -m training.prepare --layout` and the
reproduction harness take their choices and help from here, so a new layout
is one new module (imported in `training.data.layouts`) and nothing else
edited.

Example:

>>> from training.data.layouts import load_dataset, names
>>> names()
['folder', 'hmdb51', 'kinetics', 'ucf101']
>>> dataset = load_dataset("folder", "videos/", test_fraction=0.25)  # doctest: +SKIP
"""

import dataclasses

from cliutil.registry import Registry

ANNOTATION_KINDS = ("none", "one", "many")


@dataclasses.dataclass(frozen=True)
class LayoutOptions:
    """The options every loader receives (each uses those it needs).

    Attributes:
        split: official split number (UCF-101, HMDB-51).
        test_fraction: share of each class held out (folder layout).
        seed: seed of that split (folder layout).
        missing: `"skip"` (listed in the manifest) or `"error"` for videos
            that annotations list but the disk lacks.
        exclude: folders a layout that walks the disk must not list (e.g.
            `prepare`'s output folder inside the dataset root).
    """

    split: int = 1
    test_fraction: float = 0.2
    seed: int = 0
    missing: str = "skip"
    exclude: tuple = ()


@dataclasses.dataclass(frozen=True)
class Layout:
    """A registered layout.

    Attributes:
        name: the `--layout` value.
        description: one line for `--help`.
        annotations: how many `--annotations` paths it takes: `"none"`,
            `"one"` (a folder or file) or `"many"` (one or more files).
        annotations_help: what those paths are.
        loader: `loader(root, annotations, options) -> VideoDataset`.
    """

    name: str
    description: str
    annotations: str
    annotations_help: str
    loader: object


_LAYOUTS = Registry("dataset layout")


def register_layout(name, description, annotations="none", annotations_help=""):
    """Decorator registering `loader(root, annotations, options)` as `name`."""
    if annotations not in ANNOTATION_KINDS:
        raise ValueError(
            f"Invalid value for argument `annotations`. Expected one "
            f"of {ANNOTATION_KINDS}. Received: {annotations!r}"
        )
    return _LAYOUTS.register(
        name, lambda loader: Layout(name, description, annotations, annotations_help, loader)
    )


def names():
    """The registered layout names, sorted."""
    return _LAYOUTS.names()


def get(name):
    """The `Layout` registered as `name` (a clear error if none)."""
    return _LAYOUTS.get(name)


def load_dataset(layout, root, annotations=(), **options):
    """The `VideoDataset` of `root` in `layout`.

    Args:
        layout: a registered layout name.
        root: the folder of videos.
        annotations: the annotation paths the layout takes (see
            `Layout.annotations`).
        **options: `LayoutOptions` fields (`split`, `test_fraction`, `seed`,
            `missing`).
    """
    entry = get(layout)
    annotations = [str(a) for a in (annotations or ())]
    if entry.annotations == "none" and annotations:
        raise ValueError(f"--layout {layout} takes no --annotations ({entry.description}).")
    if entry.annotations == "one" and len(annotations) != 1:
        raise ValueError(
            f"--layout {layout} needs --annotations with one path: {entry.annotations_help}."
        )
    if entry.annotations == "many" and not annotations:
        raise ValueError(f"--layout {layout} needs --annotations: {entry.annotations_help}.")
    return entry.loader(root, annotations, LayoutOptions(**options))
