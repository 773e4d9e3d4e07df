"""Reading the `manifest.json` that `prepare` writes beside the shards.

Example:

>>> from training.data.manifest import load_manifest, shard_paths
>>> manifest = load_manifest("prepared/")
>>> manifest["class_names"][:2], shard_paths(manifest, "train")[:1]
(['clockwise', 'counterclockwise'], ['/abs/prepared/train-00000-of-00002'])

The folder may be local or on any `tf.io.gfile` filesystem (`gs://…`,
`ram://…`), where `prepare` may also write it.
"""

import json
import os
import pathlib

from training.data.gfile_paths import basename, is_url, join

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
    if is_url(manifest_or_dir):
        return _load_url(os.fspath(manifest_or_dir))
    path = pathlib.Path(manifest_or_dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(_absent(path))
    manifest = _parse(path, path.read_text(encoding="utf-8"))
    manifest["root"] = str(path.parent.resolve())
    return manifest


def _absent(path):
    return (
        f"{path}: no such manifest. Create it with `python -m training.prepare "
        "--layout ... --root VIDEOS --out FOLDER`."
    )


def _load_url(url):
    """A manifest on a `tf.io.gfile` filesystem (`gs://…`, `ram://…`)."""
    import tensorflow as tf

    path = url.rstrip("/")
    if not path.endswith(MANIFEST_NAME) or tf.io.gfile.isdir(path):
        path = f"{path}/{MANIFEST_NAME}"
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(_absent(path))
    with tf.io.gfile.GFile(path, "r") as handle:
        manifest = _parse(path, handle.read())
    manifest["root"] = path[: -len(MANIFEST_NAME) - 1]
    return manifest


def _parse(path, text):
    try:
        manifest = json.loads(text)
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
    return manifest


def shard_paths(manifest, subset):
    """The prefixes of a subset's shards, `ROOT/<subset>-<i>-of-<n>` (each
    is `<prefix>.frames.tfrecord` + `<prefix>.index.tfrecord`, see
    `training.data.shard_format`), checked to exist.

    Raises:
        ValueError: unknown subset, or a folder of another shard layout
            (the message says how to rewrite it).
        FileNotFoundError: a shard file is missing.
    """
    import tensorflow as tf

    from training.data import shard_format

    manifest = load_manifest(manifest)
    version = manifest.get("format_version", 1)
    if version != shard_format.LAYOUT_VERSION:
        raise ValueError(
            f"{manifest['root']}: shard layout {version}, this code reads layout "
            f"{shard_format.LAYOUT_VERSION}; {shard_format.REPREPARE}."
        )
    subsets = manifest["subsets"]
    if subset not in subsets:
        raise ValueError(
            f"Subset {subset!r} is not in the manifest of {manifest['root']} "
            f"(subsets: {', '.join(subsets) or 'none'})."
        )
    names = subsets[subset]["shards"]
    paths = [join(manifest["root"], s) for s in names]
    # One listing, not a request per file (the folder may be a bucket).
    present = set(tf.io.gfile.listdir(manifest["root"])) if names else set()
    absent = [
        f
        for p in paths
        for f in (shard_format.frames_path(p), shard_format.index_path(p))
        if basename(f) not in present
    ]
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
    import tensorflow as tf

    manifest = load_manifest(manifest)
    paths = {}
    for name in manifest["subsets"].get(subset, {}).get("shards", []):
        sidecar = join(manifest["root"], f"{name}.json")
        try:
            with tf.io.gfile.GFile(sidecar, "r") as handle:
                info = json.loads(handle.read())
        except (OSError, ValueError, tf.errors.OpError):
            continue
        for video in info.get("videos", []) if isinstance(info, dict) else []:
            if isinstance(video, dict) and "video_id" in video:
                paths[int(video["video_id"])] = video.get("path")
    return paths
