"""Reading the `manifest.json` that `prepare` writes beside the shards.

Example:

>>> from training.data.manifest import load_manifest, shard_paths
>>> manifest = load_manifest("prepared/")
>>> manifest["class_names"][:2], shard_paths(manifest, "train")[:1]
(['clockwise', 'counterclockwise'], ['/abs/prepared/train-00000-of-00002.tfrecord'])
"""

import json
import os
import pathlib

MANIFEST_NAME = "manifest.json"
REQUIRED_FIELDS = ("class_names", "subsets", "skipped", "short_side")


def load_manifest(manifest_or_dir):
    """Loads and checks a prepared dataset's manifest.

    Args:
        manifest_or_dir: the prepared folder, its `manifest.json`, or an
            already loaded manifest dict (returned unchanged if it has
            `"root"`).

    Returns:
        the manifest dict, with `"root"` (absolute folder of the shards)
        added.

    Raises:
        FileNotFoundError: no manifest there.
        ValueError: not valid JSON or fields missing (the message names them).
    """
    if isinstance(manifest_or_dir, dict):
        if "root" not in manifest_or_dir:
            raise ValueError(
                "A manifest dict must come from load_manifest (it needs 'root', "
                "the folder of its shards); pass the prepared folder instead."
            )
        return manifest_or_dir
    path = pathlib.Path(manifest_or_dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such manifest. Create it with `python -m training.prepare "
            "--layout ... --root VIDEOS --out FOLDER`."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}); "
            "re-run `python -m training.prepare` to rewrite it."
        ) from error
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object.")
    absent = [field for field in REQUIRED_FIELDS if field not in manifest]
    if absent:
        raise ValueError(f"{path}: missing field(s) {', '.join(absent)}.")
    for name, subset in manifest["subsets"].items():
        if not isinstance(subset, dict) or "shards" not in subset:
            raise ValueError(f"{path}: subset {name!r} lacks its 'shards' list.")
    manifest["root"] = str(path.parent.resolve())
    return manifest


def shard_paths(manifest, subset):
    """Absolute paths of a subset's shard files (checked to exist)."""
    manifest = load_manifest(manifest)
    subsets = manifest["subsets"]
    if subset not in subsets:
        raise ValueError(
            f"Subset {subset!r} is not in the manifest of {manifest['root']} "
            f"(subsets: {', '.join(subsets) or 'none'})."
        )
    paths = [os.path.join(manifest["root"], s) for s in subsets[subset]["shards"]]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise FileNotFoundError(
            f"{len(absent)} shard file(s) of subset {subset!r} are missing, e.g. "
            f"{absent[0]}; re-run `python -m training.prepare` with the same "
            "--out to write them again."
        )
    return paths


def video_paths(manifest, subset):
    """`{video_id: source video path}` of a subset, read from its shards'
    sidecars (`<shard>.json`, written by `prepare`); the videos of a shard
    without a readable sidecar are left out."""
    manifest = load_manifest(manifest)
    paths = {}
    for name in manifest["subsets"].get(subset, {}).get("shards", []):
        sidecar = os.path.join(manifest["root"], f"{name}.json")
        try:
            with open(sidecar, encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            continue
        for video in info.get("videos", []) if isinstance(info, dict) else []:
            if isinstance(video, dict) and "video_id" in video:
                paths[int(video["video_id"])] = video.get("path")
    return paths
