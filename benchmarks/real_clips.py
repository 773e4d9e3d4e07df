"""Where the shared real clips are (HMDB-51, UCF-101 and Kinetics samples,
with `labels.csv`): `shared/data/real-clips/` beside the repository, or
beside one of its parent folders (a git worktree in a sub-folder; CI's
`shared/` folder beside the clone). The tests (`tests/conftest.py`) and
benchmarks look there; the clips are never copied into the repository.
"""

import csv
import pathlib

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def real_clips_dir(repository=REPOSITORY):
    """The first `shared/data/real-clips` holding `labels.csv` beside the
    repository or a parent folder; else where it would be beside the
    repository (check `labels.csv` before use)."""
    repository = pathlib.Path(repository)
    for folder in repository.parents:
        candidate = folder / "shared" / "data" / "real-clips"
        if (candidate / "labels.csv").is_file():
            return candidate
    return repository.parent / "shared" / "data" / "real-clips"


def read_labels(folder):
    """`[(file path, label)]` of `folder/labels.csv`, in its order."""
    folder = pathlib.Path(folder)
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        return [(folder / row["file"], row["label"]) for row in csv.DictReader(handle)]
