"""Decode every video once and write sharded TFRecords plus a manifest.

`prepare_dataset` decodes each video with PyAV in worker processes, resizes
it to a short side, JPEG-encodes the frames and writes them into shards
`<subset>-<i>-of-<n>` in the layout of `training.data.shard_format`: a
frames file (one TFRecord per frame) and an index (per video its fields
and where each frame's record lies), so that training reads only a clip's
frames. Each finished shard gets a sidecar
`<shard>.json` (its videos, skips and timings, and a signature of its input
list — paths, labels, file sizes and modification times — and settings); a
rerun reuses every shard whose sidecar matches and writes only the rest, so
an interrupted run resumes and a changed video is decoded again; a
finished shard of the old layout (one `tf.train.Example` per video) with
the same signature is converted without decoding. Files that cannot be
used are skipped and listed with the reason in `manifest.json`; they never
stop the run.

Example:

>>> from training.data import load_folder
>>> from training.data.shard_writer import prepare_dataset
>>> manifest = prepare_dataset(load_folder("videos/"), "prepared/", workers=2)
>>> manifest["subsets"]["train"]["videos"], manifest["skipped"][:1]
(96, [{'path': 'videos/left/bad.mp4', 'reason': 'empty file (0 bytes)', ...}])
"""

import collections
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import time

from training.data import shard_format
from clipspec.decode import try_decode_to_jpeg
from training.data.manifest import MANIFEST_NAME

DEFAULT_VIDEOS_PER_SHARD = 64
CRASH_REASON = "the decoder crashed its worker process (FFmpeg fault)"


def _shard_name(subset, index, count):
    """The shard's prefix (its files add `shard_format`'s suffixes)."""
    return f"{subset}-{index:05d}-of-{count:05d}"


def _write_json(path, value):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)


class _Runner:
    """Runs `function(*job)` in spawned worker processes, results in order.

    A worker that dies (e.g. FFmpeg crashing on a broken file) breaks the
    pool; the jobs that were in flight are then retried one at a time, each
    in a fresh process, so only the culprit is lost (its result is
    `{"error": CRASH_REASON}`), and a new pool serves the rest.
    """

    def __init__(self, workers, function):
        self.workers = workers
        self.function = function
        self.pool = None
        self.context = multiprocessing.get_context("spawn")

    def map(self, jobs):
        if self.workers <= 1:
            for job in jobs:
                yield self.function(*job)
            return
        window = collections.deque()
        try:
            for job in jobs:
                window.append((job, self._submit(job)))
                if len(window) >= 4 * self.workers:
                    yield self._result(*window.popleft())
            while window:
                yield self._result(*window.popleft())
        finally:
            self._close(wait=False)

    def _submit(self, job):
        if self.pool is None:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=self.context
            )
        try:
            return self.pool.submit(self.function, *job)
        except concurrent.futures.process.BrokenProcessPool:
            self._close(wait=False)
            return self._submit(job)

    def _result(self, job, future):
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:
            self._close(wait=False)
            return self._isolated(job)

    def _isolated(self, job):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=self.context) as one:
            try:
                return one.submit(self.function, *job).result()
            except concurrent.futures.process.BrokenProcessPool:
                return {"error": CRASH_REASON}

    def _close(self, wait):
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
            self.pool = None


def _check_args(short_side, workers, videos_per_shard, jpeg_quality, max_frames):
    def fail(name, value, expected):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. "
            f"Received: {name}={value!r}"
        )

    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    if short_side is not None and (not is_int(short_side) or short_side < 8):
        fail("short_side", short_side, "None or an int >= 8")
    if not is_int(workers) or workers < 0:
        fail("workers", workers, "an int >= 0 (0 or 1: decode in this process)")
    if not is_int(videos_per_shard) or videos_per_shard < 1:
        fail("videos_per_shard", videos_per_shard, "a positive int")
    if not is_int(jpeg_quality) or not 1 <= jpeg_quality <= 100:
        fail("jpeg_quality", jpeg_quality, "an int between 1 and 100")
    if max_frames is not None and (not is_int(max_frames) or max_frames < 2):
        fail("max_frames", max_frames, "None or an int >= 2")


def _plan(dataset, settings, videos_per_shard):
    """`[(subset, shard_name, [(video_id, item), ...], signature)]`."""
    plan = []
    for subset in dataset.subsets():
        if not re.fullmatch(r"[A-Za-z0-9_.]+", subset):
            raise ValueError(
                f"Subset name {subset!r} cannot be a file name prefix; use letters, "
                "digits, '_' or '.'."
            )
        items = list(enumerate(dataset.subset(subset)))
        stamps = {item.path: _stamp(item.path) for _, item in items}
        chunks = [items[i:i + videos_per_shard]
                  for i in range(0, len(items), videos_per_shard)]
        for index, chunk in enumerate(chunks):
            content = json.dumps({
                "settings": settings, "format": shard_format.CONTENT_VERSION,
                "videos": [[item.path, item.label, item.class_name, vid,
                            stamps[item.path]] for vid, item in chunk],
            }, sort_keys=True)
            signature = hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()
            plan.append((subset, _shard_name(subset, index, len(chunks)), chunk, signature))
    return plan


def _stamp(path):
    """Size and modification time, so that a changed video redoes its shard."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def _finished(out_dir, name, signature):
    """The sidecar of a finished shard of these inputs, else None."""
    sidecar = out_dir / f"{name}.json"
    if not sidecar.is_file():
        return None
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if info.get("signature") != signature or not shard_format.check_written(
            out_dir / name, info):
        return None
    return info


def _remove_stale(out_dir, plan):
    """Deletes shards (and sidecars) of an earlier, different plan, in this
    layout or the old one."""
    planned = {name for _, name, _, _ in plan}
    pattern = re.compile(r"^(.+-\d{5}-of-\d{5})(\.frames\.tfrecord|\.index\.tfrecord|"
                         r"\.tfrecord(\.index\.npz)?)?(\.json)?(\.tmp(\.npz)?)?$")
    removed = []
    for path in out_dir.iterdir():
        match = pattern.match(path.name)
        if match and match.group(1) not in planned:
            path.unlink()
            removed.append(path.name)
    return removed


def prepare_dataset(dataset, out_dir, short_side=128, workers=None,
                    videos_per_shard=DEFAULT_VIDEOS_PER_SHARD, jpeg_quality=90,
                    max_frames=None, progress=True):
    """Decodes a `VideoDataset` into sharded TFRecords and a manifest.

    Args:
        dataset: a `training.data.layouts.VideoDataset`.
        out_dir: output folder (created). Rerunning with the same folder
            reuses finished shards whose inputs and settings are unchanged.
        short_side: frames are resized so that the short side has this many
            pixels (None keeps the original size).
        workers: decoding processes; default `os.cpu_count()`; 0 or 1 decode
            in this process.
        videos_per_shard: videos per TFRecord file.
        jpeg_quality: JPEG quality of the stored frames (1-100).
        max_frames: keep at most this many frames from each video's start.
        progress: show a tqdm progress bar.

    Worker processes are started with `spawn`: in a script, call this under
    `if __name__ == "__main__":` (the usual `multiprocessing` rule).

    Returns:
        the manifest dict, also written to `out_dir/manifest.json`:
        `class_names`; `subsets` (`shards`, `videos`, `frames`, `per_class`
        for each); `skipped` (`path`, `reason`, `subset` for every video not
        written, including listed-but-missing ones); `short_side`,
        `jpeg_quality`, `max_frames`, `videos_per_shard`; `decode` (frames,
        PyAV decode seconds and decode fps over all shards, plus this run's
        wall time); `source` (where the video list came from).
    """
    if workers is None:
        workers = os.cpu_count() or 1
    _check_args(short_side, workers, videos_per_shard, jpeg_quality, max_frames)
    if not len(dataset):
        raise ValueError("The dataset has no videos to prepare.")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"short_side": short_side, "jpeg_quality": jpeg_quality,
                "max_frames": max_frames}
    plan = _plan(dataset, settings, videos_per_shard)
    _remove_stale(out_dir, plan)
    infos, pending, converted = {}, [], 0
    for subset, name, chunk, signature in plan:
        info = _finished(out_dir, name, signature)
        if info is None:
            # A finished shard of the old layout, same inputs: no decoding.
            info = shard_format.convert_old_files(out_dir / name, {"signature": signature})
            converted += info is not None
        if info is None:
            pending.append((subset, name, chunk, signature))
        else:
            infos[name] = info
    reused = len(infos) - converted
    started = time.perf_counter()
    total = sum(len(chunk) for _, _, chunk, _ in pending)
    workers = max(0, min(workers, total))
    bar = None
    if progress and total:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="video", desc="prepare", dynamic_ncols=True)
    jobs = ((item.path, short_side, jpeg_quality, max_frames)
            for _, _, chunk, _ in pending for _, item in chunk)
    results = _Runner(workers, try_decode_to_jpeg).map(jobs)
    try:
        skipped_so_far = 0
        for subset, name, chunk, signature in pending:
            info = _write_shard(out_dir, subset, name, chunk, signature, settings,
                                results, bar, skipped_so_far)
            skipped_so_far += len(info["skipped"])
            infos[name] = info
            shard_format.remove_old_files(out_dir / name)
    finally:
        results.close()  # stops the worker processes, also on errors
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    manifest = _manifest(dataset, plan, infos, settings, videos_per_shard, {
        "videos_processed": total, "shards_written": len(pending),
        "shards_reused": reused, "shards_converted": converted,
        "workers": max(workers, 1),
        "wall_seconds": round(wall, 3),
        "videos_per_second": round(total / wall, 2) if total and wall > 0 else None,
    })
    _write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def _write_shard(out_dir, subset, name, chunk, signature, settings, results, bar,
                 skipped_before):
    written, skipped = [], []
    stats = {"frames": 0, "decode_seconds": 0.0, "encode_seconds": 0.0}
    with shard_format.ShardWriter(out_dir / name) as writer:
        for video_id, item in chunk:
            result = next(results)
            if "error" in result:
                skipped.append({"path": item.path, "reason": result["error"],
                                "subset": subset})
            else:
                writer.add(result["jpegs"], item.label, video_id, result["fps"],
                           item.path, result["height"], result["width"])
                written.append({"path": item.path, "video_id": video_id,
                                "label": item.label, "frames": result["frames"]})
                for key in stats:
                    stats[key] += result[key]
            if bar is not None:
                bar.update(1)
                if skipped:
                    bar.set_postfix(skipped=skipped_before + len(skipped))
    info = {"signature": signature, "subset": subset, "settings": settings,
            **writer.result, "layout_version": shard_format.LAYOUT_VERSION,
            "videos": written, "skipped": skipped, **stats}
    _write_json(out_dir / f"{name}.json", info)
    return info


def _manifest(dataset, plan, infos, settings, videos_per_shard, this_run):
    subsets = {}
    skipped = []
    totals = {"videos": 0, "frames": 0, "decode_seconds": 0.0, "encode_seconds": 0.0}
    for subset, name, _, _ in plan:
        info = infos[name]
        entry = subsets.setdefault(subset, {
            "shards": [], "videos": 0, "frames": 0,
            "per_class": {c: 0 for c in dataset.class_names},
        })
        entry["shards"].append(name)
        entry["videos"] += len(info["videos"])
        entry["frames"] += info["frames"]
        for video in info["videos"]:
            entry["per_class"][dataset.class_names[video["label"]]] += 1
        skipped.extend(info["skipped"])
        totals["videos"] += len(info["videos"])
        for key in ("frames", "decode_seconds", "encode_seconds"):
            totals[key] += info[key]
    skipped.extend(dict(m) for m in dataset.missing)
    decode = {
        "videos": totals["videos"], "frames": totals["frames"],
        "decode_seconds": round(totals["decode_seconds"], 3),
        "encode_seconds": round(totals["encode_seconds"], 3),
        "decode_fps": (round(totals["frames"] / totals["decode_seconds"], 1)
                       if totals["decode_seconds"] > 0 else None),
        "this_run": this_run,
    }
    return {
        "format": "keras-classreg video shards",
        "format_version": shard_format.LAYOUT_VERSION,
        "class_names": list(dataset.class_names),
        "subsets": subsets,
        "skipped": skipped,
        **settings,
        "videos_per_shard": videos_per_shard,
        "decode": decode,
        "source": dict(dataset.source),
        "features": sorted(shard_format.INDEX_FEATURES),
    }
