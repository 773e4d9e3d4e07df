"""Dataset layouts: which video files there are, their labels and subsets.

A registry of layouts (`names()`, `get(name)`, `load_dataset(name, root,
annotations, **options)`, `@register_layout`), one module each:

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

To add a layout, write a module with a loader decorated by
`@register_layout(...)` and import it below.

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

from training.data.layouts.base import (
    AnnotationError,
    MissingVideoError,
    VideoDataset,
    VideoItem,
)

# The built-in layouts register themselves on import.
from training.data.layouts.folder import load_folder
from training.data.layouts.hmdb51 import load_hmdb51
from training.data.layouts.kinetics import kinetics_file_name, load_kinetics
from training.data.layouts.registry import (
    Layout,
    LayoutOptions,
    get,
    load_dataset,
    names,
    register_layout,
)
from training.data.layouts.ucf101 import load_ucf101

__all__ = [
    "AnnotationError",
    "Layout",
    "LayoutOptions",
    "MissingVideoError",
    "VideoDataset",
    "VideoItem",
    "get",
    "kinetics_file_name",
    "load_dataset",
    "load_folder",
    "load_hmdb51",
    "load_kinetics",
    "load_ucf101",
    "names",
    "register_layout",
]
