"""Decode every video once and write sharded TFRecords plus a manifest.

`prepare_dataset` plans the shards (`<subset>-<i>-of-<n>`, a fixed number
of videos each), skips those already finished, and writes the rest with
`write_shard`: the one function that writes a shard, called by both
runners:

- `runner="local"` (the default): videos decoded with PyAV in worker
  processes on this machine, the shards written by this process;
- `runner="beam"` (`training.data.beam_runner`, the `[beam]` extra): one
  Apache Beam task per shard, on DirectRunner here or Dataflow, Flink or
  Spark at scale.

Each shard is written in the layout of `training.data.shard_format` (a
frames file and an index) and gets a sidecar `<shard>.json` (its videos,
skips and timings, and a signature of its input list — paths, labels, file
sizes and modification times — and settings). Everything in the output
folder goes through `tf.io.gfile` (`training.data.output_folder`), so it
may be local or any filesystem TensorFlow has (`gs://`, `ram://`). A rerun
reuses every shard whose sidecar matches and writes only the rest, so an
interrupted run resumes and a changed video is decoded again. Files that
cannot be used are skipped and listed with the reason in `manifest.json`;
they never stop the run.

Bad input never costs good work:

- `prepare` deletes or replaces only files it wrote: the shards its earlier
  manifest lists and those with one of its sidecars (written before a
  shard's first byte). A foreign file in the way (e.g. someone's
  `imagenet-00000-of-00004.tfrecord`) is left alone, and one with a name
  `prepare` needs is an error before anything is decoded.
- The output folder is checked to be writable before decoding starts.
- Every file appears whole or not at all (temporary name, then rename),
  the sidecar last: a shard a runner retried or a killed run left is
  written again by the next run, never read half-written.
- For layouts whose split `prepare` draws (the folder layout), every video
  is first checked to decode (`clipspec.decode.probe_video`, its first
  frames) and the split is drawn over the usable ones, so a bad file takes
  no test slot.
- Damaged videos keep their decodable frames (`clipspec.decode`'s rule) and
  are listed under `damaged`; files a layout did not take are listed under
  `ignored`; classes without videos in a subset are kept (their labels do
  not move) and named in `warnings` / `empty_classes`.
- Any file name works: the manifest and sidecars stay valid UTF-8 JSON
  (a non-UTF-8 name's bytes as `\\udcXX` escapes, read back by `json.loads`
  as the same `str`).
- Worker processes ignore Ctrl-C (the main process stops them) and exit
  when the main process dies (they watch their parent); a decoder crash
  costs only its video (the video is decoded again alone, in a fresh
  process).

Example:

>>> from training.data import load_folder
>>> from training.data.shard_writer import prepare_dataset
>>> manifest = prepare_dataset(load_folder("videos/"), "prepared/", workers=2)
>>> manifest["subsets"]["train"]["videos"], manifest["skipped"][:1]
(96, [{'path': 'videos/left/bad.mp4', 'reason': 'empty file (0 bytes)', ...}])
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import time
import typing

import cliutil
from clipspec.decode import try_decode_to_jpeg, try_probe_video
from training.data import output_folder, shard_format
from training.data.gfile_paths import join
from training.data.manifest import MANIFEST_NAME

DEFAULT_VIDEOS_PER_SHARD = 64
CRASH_REASON = "the decoder crashed its worker process (FFmpeg fault)"
MANIFEST_FORMAT = "keras-classreg video shards"


def _shard_name(subset, index, count):
    """The shard's prefix (its files add `shard_format`'s suffixes)."""
    return f"{subset}-{index:05d}-of-{count:05d}"


class _Runner:
    """Runs `function(*job)` in spawned worker processes, results in order.

    A worker that dies (e.g. FFmpeg crashing on a broken file) breaks the
    pool; the jobs that were in flight are then retried one at a time, each
    in a fresh process, so only the culprit is lost (its result is
    `{"error": CRASH_REASON}`), and a new pool serves the rest. With one
    worker the jobs run in this process, unless `isolate` (a process
    nonetheless, so that a crash costs only its job).
    """

    def __init__(self, workers, function, isolate=False):
        self.workers = max(workers, 1) if isolate else workers
        self.function = function
        self.isolate = isolate
        self.pool = None
        self.context = multiprocessing.get_context("spawn")

    def map(self, jobs):
        if self.workers <= 1 and not self.isolate:
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

    def _executor(self, workers):
        return concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=self.context,
            initializer=cliutil.watch_parent,
            initargs=(os.getpid(),),
        )

    def _submit(self, job):
        if self.pool is None:
            self.pool = self._executor(self.workers)
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
        with self._executor(1) as one:
            try:
                return one.submit(self.function, *job).result()
            except concurrent.futures.process.BrokenProcessPool:
                return {"error": CRASH_REASON}

    def _close(self, wait):
        if self.pool is not None:
            # Workers still busy (an error or Ctrl-C stopped the run) are
            # stopped at once rather than left to finish their video.
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=wait, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            self.pool = None


def isolated_decoder(function):
    """A `_Runner` of one worker process (`map(jobs)`): a crash of the
    decoder costs only its job."""
    return _Runner(1, function, isolate=True)


def _check_args(short_side, workers, videos_per_shard, jpeg_quality, max_frames):
    def fail(name, value, expected):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
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


class Shard(typing.NamedTuple):
    """One planned shard: its subset, name, `[(video_id, VideoItem)]` and
    the signature of those inputs and the settings."""

    subset: str
    name: str
    videos: list
    signature: str


def _plan(dataset, settings, videos_per_shard):
    """The `Shard`s of `dataset`, in order."""
    plan = []
    for subset in dataset.subsets():
        if not re.fullmatch(r"[A-Za-z0-9_.]+", subset):
            raise ValueError(
                f"Subset name {subset!r} cannot be a file name prefix; use letters, "
                "digits, '_' or '.'."
            )
        items = list(enumerate(dataset.subset(subset)))
        stamps = {item.path: _stamp(item.path) for _, item in items}
        chunks = [items[i : i + videos_per_shard] for i in range(0, len(items), videos_per_shard)]
        for index, chunk in enumerate(chunks):
            content = json.dumps(
                {
                    "settings": settings,
                    "format": shard_format.CONTENT_VERSION,
                    "videos": [
                        [item.path, item.label, item.class_name, vid, stamps[item.path]]
                        for vid, item in chunk
                    ],
                },
                sort_keys=True,
            )
            signature = hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()
            plan.append(Shard(subset, _shard_name(subset, index, len(chunks)), chunk, signature))
    return plan


def _stamp(path):
    """Size and modification time, so that a changed video redoes its shard."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def finished(out_dir, shard):
    """The sidecar of `shard` when it is finished with these inputs, else
    None (a sidecar that only claims the name, `"state": "writing"`, is
    not finished)."""
    info = output_folder.read_json_object(join(out_dir, f"{shard.name}.json"))
    if info is None or info.get("state") == "writing":
        return None
    if info.get("signature") != shard.signature or not shard_format.check_written(
        join(out_dir, shard.name), info
    ):
        return None
    return info


# A shard's files (`<shard>.frames.tfrecord`, `<shard>.index.tfrecord`,
# `<shard>.json`), with their temporary names.
_SHARD_FILE = re.compile(
    rf"^(?P<partial>{re.escape(cliutil.PARTIAL_PREFIX)}[0-9a-f]+-)?"
    r"(?P<shard>.+-\d{5}-of-\d{5})"
    r"(\.frames\.tfrecord|\.index\.tfrecord|\.json)$"
)


def _is_own_sidecar(info):
    return isinstance(info, dict) and {"signature", "subset", "settings"} <= set(info)


def own_shards(out_dir, present=None):
    """Names of the shards in `out_dir` that `prepare` wrote: those its
    manifest lists and those with one of its sidecars."""
    out_dir = os.fspath(out_dir)
    present = output_folder.names(out_dir) if present is None else present
    owned = set()
    manifest = output_folder.read_json_object(join(out_dir, MANIFEST_NAME))
    if manifest is not None and manifest.get("format") == MANIFEST_FORMAT:
        for subset in (manifest.get("subsets") or {}).values():
            if isinstance(subset, dict):
                owned.update(str(name) for name in subset.get("shards", []))
    for name in present:
        match = _SHARD_FILE.match(name)
        if (
            match
            and not match["partial"]
            and name.endswith(".json")
            and _is_own_sidecar(output_folder.read_json_object(join(out_dir, name)))
        ):
            owned.add(match["shard"])
    return owned


def _check_foreign(out_dir, plan, owned, present):
    """Refuses to overwrite a file `prepare` did not write: a planned
    shard's name (or its sidecar or index) or `manifest.json` taken by
    someone else's file."""
    if MANIFEST_NAME in present:
        manifest = join(out_dir, MANIFEST_NAME)
        info = output_folder.read_json_object(manifest)
        if info is None or info.get("format") != MANIFEST_FORMAT:
            raise FileExistsError(
                f"{cliutil.printable(manifest)} exists and was not written by "
                "prepare; prepare never overwrites other files: move it or "
                "choose another --out."
            )
    for shard in plan:
        if shard.name in owned:
            continue
        for name in (
            shard_format.frames_path(shard.name),
            shard_format.index_path(shard.name),
            f"{shard.name}.json",
        ):
            if name in present:
                raise FileExistsError(
                    f"{cliutil.printable(join(out_dir, name))} exists and was not written by "
                    "prepare (no sidecar of prepare's, not in its manifest); prepare "
                    "never overwrites other files: move it or choose another "
                    "--out."
                )


def _remove_stale(out_dir, plan, owned, present, pending=()):
    """Deletes the files of shards of an earlier, different plan, and the
    temporary files of the shards about to be written — only shards
    `prepare` wrote (`own_shards`); other files are left alone."""
    planned = {shard.name for shard in plan}
    redo = {shard.name for shard in pending}
    removed = []
    for name in sorted(present):
        match = _SHARD_FILE.match(name)
        if not match or match["shard"] not in owned:
            continue
        if match["shard"] not in planned or (match["partial"] and match["shard"] in redo):
            output_folder.remove(join(out_dir, name))
            removed.append(name)
    return removed


def split_from_usable(dataset, workers=0, progress=False):
    """For a layout whose split `prepare` draws (`dataset.redraw_split`),
    checks that each video decodes (`probe_video`: its first frames) and
    draws the split over the usable ones. Returns `(dataset, skipped)`:
    the re-split dataset without the unusable files, and their
    `{"path", "reason", "subset": None}` entries. Other datasets come back
    unchanged."""
    if dataset.redraw_split is None or not len(dataset):
        return dataset, []
    items = list(dataset.items)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="video", desc="check", dynamic_ncols=True)
    results = _Runner(max(0, min(workers, len(items))), try_probe_video).map(
        (item.path,) for item in items
    )
    bad = {}
    try:
        for item, result in zip(items, results):
            if "error" in result:
                bad[item.path] = result["error"]
            if bar is not None:
                bar.update(1)
    finally:
        results.close()
        if bar is not None:
            bar.close()
    usable = [item for item in items if item.path not in bad]
    skipped = [{"path": path, "reason": reason, "subset": None} for path, reason in bad.items()]
    return dataclasses.replace(dataset, items=dataset.redraw_split(usable)), skipped


RUNNERS = ("local", "beam")


def prepare_dataset(
    dataset,
    out_dir,
    short_side=128,
    workers=None,
    videos_per_shard=DEFAULT_VIDEOS_PER_SHARD,
    jpeg_quality=90,
    max_frames=None,
    progress=True,
    runner="local",
    beam_options=(),
):
    """Decodes a `VideoDataset` into sharded TFRecords and a manifest.

    Args:
        dataset: a `training.data.layouts.VideoDataset`.
        out_dir: output folder (created; local or any `tf.io.gfile`
            filesystem, e.g. `gs://bucket/k400`). Rerunning with the same
            folder reuses finished shards whose inputs and settings are
            unchanged. Only files `prepare` wrote are ever replaced or
            deleted there.
        short_side: frames are resized so that the short side has this many
            pixels (None keeps the original size).
        workers: decoding processes on this machine (the local runner's
            decoding, and the folder layout's usability check with either
            runner); default `os.cpu_count()`; 0 or 1 decode in this process.
        videos_per_shard: videos per TFRecord file.
        jpeg_quality: JPEG quality of the stored frames (1-100).
        max_frames: keep at most this many frames from each video's start.
        progress: show a tqdm progress bar.
        runner: `"local"` (worker processes here) or `"beam"` (an Apache
            Beam pipeline, one task per shard: `training.data.beam_runner`).
        beam_options: with `runner="beam"`, Beam's pipeline options as
            command-line words (`["--runner=DataflowRunner", ...]`; none:
            DirectRunner).

    Worker processes are started with `spawn`: in a script, call this under
    `if __name__ == "__main__":` (the usual `multiprocessing` rule).

    Returns:
        the manifest dict, also written to `out_dir/manifest.json`:
        `class_names`; `subsets` (`shards`, `videos`, `frames`, `per_class`
        for each); `skipped` (`path`, `reason`, `subset` for every video not
        written, including listed-but-missing ones; `subset` is null for a
        file found unusable before the split was drawn); `damaged` (videos
        kept with frames lost: `path`, `subset`, `decoded`, `expected`,
        `errors`, `reason`); `ignored` (files the layout did not take, with
        the reason); `empty_classes` (per subset, the classes without
        videos) and `warnings` (sentences); `short_side`, `jpeg_quality`,
        `max_frames`, `videos_per_shard`; `decode` (frames, PyAV decode
        seconds and decode fps over all shards, plus this run's wall time,
        runner and workers); `source` (where the video list came from).

    Raises:
        ValueError: invalid arguments, or a dataset that lists no videos.
        OSError: `out_dir` cannot be created or written (checked before any
            decoding), or holds a file `prepare` did not write where it
            needs to write.
        ImportError: `runner="beam"` without Apache Beam installed.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    _check_args(short_side, workers, videos_per_shard, jpeg_quality, max_frames)
    if runner not in RUNNERS:
        raise ValueError(
            f"Invalid value for argument `runner`. Expected 'local' or 'beam'. "
            f"Received: runner={runner!r}"
        )
    run_shards = _local_runner(workers, progress)
    if runner == "beam":
        from training.data import beam_runner

        run_shards = beam_runner.shard_runner(list(beam_options), write_shard_task)
    if not len(dataset) and not dataset.missing:
        raise ValueError("The dataset has no videos to prepare.")
    out_dir = os.fspath(out_dir)
    output_folder.ensure_writable(out_dir)
    present = output_folder.names(out_dir)
    owned = own_shards(out_dir, present)
    settings = {"short_side": short_side, "jpeg_quality": jpeg_quality, "max_frames": max_frames}
    # The plan as listed, to refuse a foreign file in the way before the
    # (longer) usability check; the split may move videos, not shard names.
    _check_foreign(out_dir, _plan(dataset, settings, videos_per_shard), owned, present)
    dataset, unusable = split_from_usable(dataset, workers, progress)
    plan = _plan(dataset, settings, videos_per_shard)
    _check_foreign(out_dir, plan, owned, present)
    infos = {shard.name: finished(out_dir, shard) for shard in plan}
    pending = [shard for shard in plan if infos[shard.name] is None]
    _remove_stale(out_dir, plan, owned, present, pending)
    reused = len(plan) - len(pending)
    started = time.perf_counter()
    total = sum(len(shard.videos) for shard in pending)
    how = run_shards(out_dir, pending, settings) if pending else {"workers": 0}
    for shard in pending:
        infos[shard.name] = finished(out_dir, shard)
        if infos[shard.name] is None:
            raise OSError(
                f"{cliutil.printable(join(out_dir, shard.name))}: the {runner} runner "
                "finished without writing this shard; rerun the same command to resume."
            )
    wall = time.perf_counter() - started
    manifest = _manifest(
        dataset,
        plan,
        infos,
        settings,
        videos_per_shard,
        {
            "runner": runner,
            "videos_processed": total,
            "shards_written": len(pending),
            "shards_reused": reused,
            # worker processes decoding in parallel here; 0: decoded in this
            # process (or by Beam's workers)
            "workers": how["workers"],
            "workers_requested": workers,
            "wall_seconds": round(wall, 3),
            "videos_per_second": round(total / wall, 2) if total and wall > 0 else None,
        },
        unusable,
    )
    output_folder.write_json(join(out_dir, MANIFEST_NAME), manifest)
    return manifest


def _local_runner(workers, progress):
    """`run(out_dir, shards, settings)`: decodes the shards' videos in
    `workers` processes here (in order, a few videos ahead) and writes each
    shard with `write_shard` in this process."""

    def run(out_dir, shards, settings):
        total = sum(len(shard.videos) for shard in shards)
        used = max(0, min(workers, total))
        bar = None
        if progress and total:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="video", desc="prepare", dynamic_ncols=True)
        skipped = 0

        def on_video(skip):
            nonlocal skipped
            skipped += skip is not None
            if bar is not None:
                bar.update(1)
                if skipped:
                    bar.set_postfix(skipped=skipped)

        jobs = (job for shard in shards for job in decode_jobs(shard, settings))
        results = _Runner(used, try_decode_to_jpeg).map(jobs)
        try:
            for shard in shards:
                write_shard(out_dir, shard, settings, results, on_video)
        finally:
            results.close()  # stops the worker processes, also on errors
            if bar is not None:
                bar.close()
        return {"workers": used if used > 1 else 0}

    return run


def write_shard_task(out_dir, settings, shard):
    """One shard as one task (the Beam runner's): decodes `shard`'s videos
    in a child process and writes the shard with `write_shard` (nothing when
    an earlier attempt finished it). Returns the shard's name."""
    if finished(out_dir, shard) is None:
        results = isolated_decoder(try_decode_to_jpeg).map(decode_jobs(shard, settings))
        try:
            write_shard(out_dir, shard, settings, results)
        finally:
            results.close()
    return shard.name


def decode_jobs(shard, settings):
    """The decoding jobs of a shard's videos: `try_decode_to_jpeg`'s
    arguments, in the shard's order."""
    return [
        (item.path, settings["short_side"], settings["jpeg_quality"], settings["max_frames"])
        for _, item in shard.videos
    ]


def write_shard(out_dir, shard, settings, results, on_video=None):
    """Writes one shard and its sidecar: the one shard writer of both
    runners.

    Args:
        out_dir: the output folder (any `tf.io.gfile` filesystem).
        shard: a `Shard` of the plan.
        settings: `{"short_side", "jpeg_quality", "max_frames"}`.
        results: an iterator of `try_decode_to_jpeg` results for the
            shard's videos in order (it is advanced once per video).
        on_video: called with the skipped entry or None after each video.

    Returns:
        the sidecar dict (also written to `<shard>.json`).
    """
    # Claim the shard's name first: a rerun after an interruption knows the
    # shard (and its temporary files) are prepare's own.
    sidecar = join(out_dir, f"{shard.name}.json")
    output_folder.write_json(
        sidecar,
        {
            "signature": shard.signature,
            "subset": shard.subset,
            "settings": settings,
            "state": "writing",
        },
    )
    written, skipped = [], []
    stats = {"frames": 0, "decode_seconds": 0.0, "encode_seconds": 0.0}
    with shard_format.ShardWriter(join(out_dir, shard.name)) as writer:
        for video_id, item in shard.videos:
            result = next(results)
            skip = None
            if "error" in result:
                skip = {"path": item.path, "reason": result["error"], "subset": shard.subset}
                skipped.append(skip)
            else:
                writer.add(
                    result["jpegs"],
                    item.label,
                    video_id,
                    result["fps"],
                    item.path,
                    result["height"],
                    result["width"],
                )
                written.append(_written_entry(item, video_id, result))
                for key in stats:
                    stats[key] += result[key]
            if on_video is not None:
                on_video(skip)
    info = {
        "signature": shard.signature,
        "subset": shard.subset,
        "settings": settings,
        **writer.result,
        "layout_version": shard_format.LAYOUT_VERSION,
        "videos": written,
        "skipped": skipped,
        **stats,
    }
    output_folder.write_json(sidecar, info)
    return info


def _written_entry(item, video_id, result):
    entry = {
        "path": item.path,
        "video_id": video_id,
        "label": item.label,
        "frames": result["frames"],
    }
    if result.get("rotation"):
        entry["rotation"] = result["rotation"]
    if result.get("damage"):
        entry["damage"] = result["damage"]
    return entry


def _data_warnings(dataset, subsets):
    """`(empty_classes, warnings)`: per subset, the classes without videos,
    and what a person should know about them."""
    names = list(dataset.class_names)
    empty = {
        subset: [c for c in names if not entry["per_class"].get(c)]
        for subset, entry in subsets.items()
    }
    empty = {subset: classes for subset, classes in empty.items() if classes}
    lines = []
    kept = {c for entry in subsets.values() for c, n in entry["per_class"].items() if n}
    lost = [c for c in names if c not in kept]
    if lost:
        lines.append(
            f"{len(lost)} class(es) have no usable video at all ({', '.join(lost)}): "
            "they stay in class_names with their labels (nothing is renumbered); "
            "a model trained on this data cannot learn them."
        )
    for subset, classes in empty.items():
        others = [c for c in classes if c not in lost]
        if others:
            what = "cannot be learned" if subset == "train" else "get no accuracy measured"
            lines.append(
                f"{len(others)} class(es) have no {subset} videos "
                f"({', '.join(others)}): they {what} from this subset."
            )
    return empty, lines


def _manifest(dataset, plan, infos, settings, videos_per_shard, this_run, unusable=()):
    subsets = {}
    skipped = list(unusable)
    damaged = []
    totals = {"videos": 0, "frames": 0, "decode_seconds": 0.0, "encode_seconds": 0.0}
    for subset, name, _, _ in plan:
        info = infos[name]
        entry = subsets.setdefault(
            subset,
            {
                "shards": [],
                "videos": 0,
                "frames": 0,
                "per_class": {c: 0 for c in dataset.class_names},
            },
        )
        entry["shards"].append(name)
        entry["videos"] += len(info["videos"])
        entry["frames"] += info["frames"]
        for video in info["videos"]:
            entry["per_class"][dataset.class_names[video["label"]]] += 1
            if video.get("damage"):
                damaged.append({"path": video["path"], "subset": subset, **video["damage"]})
        skipped.extend(info["skipped"])
        totals["videos"] += len(info["videos"])
        for key in ("frames", "decode_seconds", "encode_seconds"):
            totals[key] += info[key]
    skipped.extend(dict(m) for m in dataset.missing)
    decode = {
        "videos": totals["videos"],
        "frames": totals["frames"],
        "decode_seconds": round(totals["decode_seconds"], 3),
        "encode_seconds": round(totals["encode_seconds"], 3),
        "decode_fps": (
            round(totals["frames"] / totals["decode_seconds"], 1)
            if totals["decode_seconds"] > 0
            else None
        ),
        "this_run": this_run,
    }
    empty_classes, warnings = _data_warnings(dataset, subsets)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": shard_format.LAYOUT_VERSION,
        "class_names": list(dataset.class_names),
        "subsets": subsets,
        "skipped": skipped,
        "damaged": damaged,
        "ignored": [dict(entry) for entry in dataset.ignored],
        "empty_classes": empty_classes,
        "warnings": warnings,
        **settings,
        "videos_per_shard": videos_per_shard,
        "decode": decode,
        "source": dict(dataset.source),
        "features": sorted(shard_format.INDEX_FEATURES),
    }
