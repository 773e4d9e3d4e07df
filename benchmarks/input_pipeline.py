"""Input-pipeline throughput: clips/s of `clip_dataset` vs raw JPEG decoding.

    python -m benchmarks.input_pipeline                       # synthetic videos
    python -m benchmarks.input_pipeline --videos /path/to/videos --repeat 8
    python -m benchmarks.input_pipeline --short-side 256
    git worktree add /tmp/base 1dc497d      # an earlier revision to compare with
    python -m benchmarks.input_pipeline --baseline-checkout /tmp/base \
        --docs docs/benchmarks/input_pipeline.md

1. Writes (or takes) videos and runs `prepare_dataset` on them (short side
   128 unless --short-side): reports PyAV decode frames/s (per process) and videos/s.
2. Times `clip_dataset(mode="train")` (16x112x112 clips, stride 2, batch 8,
   scale jitter + flip + normalisation) in clips/s, in both placements of
   the augmentation: `augment_on="host"` (the CPU yields float clips) and
   `augment_on="device"` (the CPU yields uint8 frames + window + flip; the
   resize/flip/normalise runs in the model on the accelerator).
3. Times plain `tf.io.decode_jpeg` on the same shards' JPEGs, in a parallel
   `tf.data` map with AUTOTUNE, for the same number of frames
   (clips x 16), and reports it as clips/s; and `clip_dataset(mode="test")`
   (10 clips x 1 crop per video, the evaluation views) in views/s.

4. With `--baseline-checkout DIR` (a checkout of another revision, e.g.
   today's main before a change to the data code): that revision's own
   `prepare_dataset` and host train and test `clip_dataset`, same videos and
   settings, in a subprocess (`PYTHONPATH=DIR`) that times its batches when
   told to, so its rounds alternate with this checkout's and the ratios this
   / baseline come from one run.

Rounds of 2, 3 and 4 alternate `--rounds` times (so load from other processes
hits all alike); the medians and the ratios to raw decoding (target >= 0.8)
are printed and written as JSON with `--json`, both per second of wall time
and per second of the timed process's CPU time (the latter is steadier on a
machine shared with other jobs). Last, the CPU cost per clip of the host
pipeline cut after each stage shows where the time goes, and the CPU cost of
`ClipAugmentation` per clip (what the device does instead, here on CPU).
`--docs FILE` writes the figures as Markdown with the command, the CPU model
and the load average.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from benchmarks import report
from clipspec.decode import VIDEO_EXTENSIONS
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD
from training import data
from training.data import shard_format
from training.data.layouts import VideoDataset, VideoItem


def flat_videos(folder, repeat):
    """Every video file under `folder` as one class, listed `repeat` times."""
    paths = sorted(
        str(p) for p in pathlib.Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not paths:
        raise SystemExit(f"error: no video files under {folder}")
    # Listing each file several times makes a bigger dataset (same frames).
    items = [VideoItem(p, 0, "video", "train") for _ in range(repeat) for p in paths]
    return VideoDataset(items, ["video"], [], {"layout": "flat", "root": str(folder)})


def _rates(count, wall, cpu, per=1):
    """(items/s of wall time, items/s of this process's CPU time)."""
    return count / wall / per, count / cpu / per


def time_pipeline(dataset, batches):
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: graph tracing, autotuning, file cache
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for _ in range(batches):
        count += int(next(iterator)[1].shape[0])  # labels: clips (or views)
    return _rates(count, time.perf_counter() - start, time.process_time() - cpu)


def raw_decode_dataset(prefixes):
    """Every JPEG of the shards (the frame records), held in memory."""
    files = [shard_format.frames_path(p) for p in prefixes]
    return tf.data.TFRecordDataset(files).cache().repeat()


def time_raw_decode(jpegs, frames, clip_length, chunk=128):
    # Frames of different videos differ in size: keep only their shapes.
    decoded = (
        jpegs.map(
            lambda j: tf.shape(tf.io.decode_jpeg(j, channels=3)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False,
        )
        .batch(chunk)
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(decoded)
    for _ in range(2):
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < frames:
        done += int(next(iterator).shape[0])
    return _rates(done, time.perf_counter() - start, time.process_time() - cpu, clip_length)


READ_STAGE = "read (the clip's span of frame records)"


def stage_costs(prepared, clip_length, stride, crop, batch, clips=320):
    """CPU milliseconds per clip of the host pipeline cut after each stage."""
    from clipspec import views
    from training.data import transforms
    from training.data.pipeline import _decode, _normaliser

    prefixes = data.shard_paths(data.load_manifest(prepared), "train")
    table = shard_format.load_table(prefixes)
    reader = shard_format.frame_reader(prefixes)
    normalise = _normaliser(DEFAULT_MEAN, DEFAULT_STD)

    def cut(stage):
        def clip(video, seed):
            seeds = tf.random.experimental.stateless_split(seed, 3)
            last = views.max_start(video["num_frames"], clip_length, stride)
            start = tf.random.stateless_uniform([], seeds[0], 0, last + 1, dtype=tf.int32)
            indices = views.clip_indices(video["num_frames"], clip_length, stride, start)
            jpegs = reader(video, indices)
            if stage == READ_STAGE:
                return tf.reduce_sum(tf.strings.length(jpegs))
            window = transforms.crop_window(video["height"], video["width"], seeds[1])
            frames = _decode(tf.ensure_shape(jpegs, [clip_length]), clip_length)
            if stage == "+ decode_jpeg":
                return tf.reduce_sum(tf.shape(frames))
            frames = frames[:, window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
            if stage == "+ crop":
                return tf.reduce_sum(tf.shape(frames))
            out = views.resize(frames, crop, crop, antialias=False)
            out = normalise(tf.ensure_shape(out, [clip_length, crop, crop, 3]), True)
            if stage == "+ resize + flip + normalise":
                return tf.reduce_sum(out[:, 0, 0, 0])
            return out

        return clip

    costs = {}
    videos = tf.data.Dataset.from_tensor_slices(table).repeat()
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    for stage in (
        READ_STAGE,
        "+ decode_jpeg",
        "+ crop",
        "+ resize + flip + normalise",
        "+ batch (= the host pipeline)",
    ):
        pipeline = (
            tf.data.Dataset.zip((videos, seeds))
            .map(cut(stage), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        costs[stage] = _cpu_ms_per_clip(iter(pipeline), clips // batch, batch)
    return costs


def _cpu_ms_per_clip(iterator, batches, batch):
    for _ in range(3):
        next(iterator)
    cpu = time.process_time()
    for _ in range(batches):
        next(iterator)
    return round(1000 * (time.process_time() - cpu) / (batches * batch), 2)


def device_layer_cost(pipeline, batches=10):
    """CPU milliseconds per clip of `ClipAugmentation` on device-mode batches
    (on this CPU; an accelerator does it instead of the host)."""
    from keras_classreg import ClipAugmentation

    layer = ClipAugmentation(112, DEFAULT_MEAN, DEFAULT_STD)
    apply = tf.function(lambda inputs: layer(inputs), jit_compile=False)
    inputs = [element[0] for element in pipeline.take(batches)]
    apply(inputs[0])
    cpu = time.process_time()
    for element in inputs:
        apply(element).numpy()
    clips = sum(int(e["window"].shape[0]) for e in inputs)
    return round(1000 * (time.process_time() - cpu) / clips, 2)


BASELINE_CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from training import data
from training.data.layouts import VideoDataset, VideoItem
spec = json.loads(sys.argv[1])
items = [VideoItem(*item) for item in spec["items"]]
dataset = VideoDataset(items, spec["class_names"], [], {"layout": "benchmark"})
data.prepare_dataset(dataset, spec["out"], short_side=spec["short_side"],
                     workers=spec["workers"], progress=False)
pipelines = {
    "train": data.clip_dataset(spec["out"], "train", repeat=True, augment_on="host",
                               **spec["pipeline"]),
    "test": data.clip_dataset(spec["out"], "train", mode="test", repeat=True,
                              **spec["test_pipeline"]),
}
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    mode, batches = line.split()
    # As time_pipeline: a new iterator each round (none works between rounds).
    iterator = iter(pipelines[mode])
    for _ in range(3):
        next(iterator)
    start, cpu, count = time.perf_counter(), time.process_time(), 0
    for _ in range(int(batches)):
        count += int(next(iterator)[1].shape[0])
    print(json.dumps([count, time.perf_counter() - start, time.process_time() - cpu]),
          flush=True)
    del iterator
"""


class Baseline:
    """Another revision's host train pipeline, timed in a subprocess.

    The subprocess runs `BASELINE_CHILD` with `PYTHONPATH=checkout`: that
    revision's `prepare_dataset` (into its own folder) and `clip_dataset`
    (train, host, and test), then, each time `time(mode, n)` asks, times `n`
    batches of a new iterator
    exactly as `time_pipeline` does here, so that its rounds alternate with
    this process's and no iterator works outside its own round.
    """

    def __init__(self, checkout, dataset, out, short_side, workers, pipeline, test_pipeline):
        checkout = pathlib.Path(checkout).resolve()
        if not (checkout / "training" / "data").is_dir():
            raise SystemExit(
                f"error: --baseline-checkout {checkout} has no "
                "training/data package (give a checkout of this repository)"
            )
        spec = {
            "items": [[i.path, i.label, i.class_name, i.subset] for i in dataset.items],
            "class_names": list(dataset.class_names),
            "out": str(out),
            "short_side": short_side,
            "workers": workers,
            "pipeline": pipeline,
            "test_pipeline": test_pipeline,
        }
        self.log = pathlib.Path(str(out) + ".log")
        env = dict(os.environ, PYTHONPATH=str(checkout))
        self.process = subprocess.Popen(
            [sys.executable, "-c", BASELINE_CHILD, json.dumps(spec)],
            cwd=checkout,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
        )
        self._expect("ready")
        self.revision = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip() or str(checkout)

    def _expect(self, what=None):
        line = self.process.stdout.readline()
        if not line or (what and line.strip() != what):
            self.process.kill()
            raise SystemExit(
                f"error: the baseline process stopped; its log "
                f"{self.log}:\n{self.log.read_text()[-3000:]}"
            )
        return line

    def time(self, mode, batches):
        self.process.stdin.write(f"{mode} {batches}\n")
        self.process.stdin.flush()
        count, wall, cpu = json.loads(self._expect())
        return _rates(count, wall, cpu)

    def close(self):
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--videos",
        help="Folder of videos to use (default: write synthetic 128x128, 64-frame videos).",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="List each video this many times (bigger dataset)."
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=48,
        help="Synthetic videos to write when --videos is not given.",
    )
    parser.add_argument("--work", help="Working folder (default: a temporary one).")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="prepare's decoding processes."
    )
    parser.add_argument(
        "--batches", type=int, default=30, help="Batches of 8 clips timed per round."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds.")
    parser.add_argument(
        "--short-side",
        type=int,
        default=128,
        help="prepare's stored frame short side (default 128).",
    )
    parser.add_argument(
        "--augmentation",
        default="scale_jitter",
        choices=("scale_jitter", "random_resized_crop", "center"),
    )
    parser.add_argument(
        "--baseline-checkout",
        metavar="DIR",
        help="A checkout of another revision whose host train "
        "pipeline is timed too, rounds alternating (e.g. "
        "`git worktree add /tmp/base 1dc497d`).",
    )
    parser.add_argument("--json", help="Write the figures to this JSON file.")
    parser.add_argument(
        "--docs",
        metavar="FILE",
        help="Write the figures, the command, the CPU model and the "
        "load average as Markdown to FILE.",
    )
    args = parser.parse_args(argv)

    clip_length, stride, crop, batch = 16, 2, 112, 8
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="input_pipeline_"))
    if args.videos:
        dataset = flat_videos(args.videos, args.repeat)
    else:
        per_class = max(1, args.synthetic // 6)
        print(f"writing {6 * per_class} synthetic videos (64 frames, 128x128) ...")
        synthetic = data.write_synthetic_dataset(
            work / "videos",
            classes=6,
            per_class=per_class,
            frames=64,
            size=128,
            preset="medium",
            test_fraction=0.0,
        )
        dataset = synthetic
    manifest = data.prepare_dataset(
        dataset, work / "prepared", short_side=args.short_side, workers=args.workers, progress=True
    )
    decode = manifest["decode"]
    run = decode["this_run"]
    print(
        f"prepare: {decode['videos']} videos, {decode['frames']} frames; PyAV decode "
        f"{decode['decode_fps']} frames/s per process (decode + resize, no JPEG)"
    )
    if run["videos_processed"]:
        print(
            f"prepare: {run['videos_per_second']} videos/s with {run['workers']} "
            "workers (decode + JPEG encode + write)"
        )
    else:
        print("prepare: all shards reused from an earlier run of the same --work")

    prepared = work / "prepared"
    settings = dict(
        clip_length=clip_length,
        stride=stride,
        crop_size=crop,
        batch_size=batch,
        augmentation=args.augmentation,
    )
    test_settings = dict(
        clip_length=clip_length,
        stride=stride,
        crop_size=crop,
        batch_size=batch,
        num_clips=10,
        num_crops=1,
    )
    pipelines = {
        place: data.clip_dataset(prepared, "train", repeat=True, augment_on=place, **settings)
        for place in ("host", "device")
    }
    test_views = data.clip_dataset(prepared, "train", mode="test", repeat=True, **test_settings)
    baseline = None
    if args.baseline_checkout:
        print(f"baseline: preparing and starting {args.baseline_checkout}'s pipeline ...")
        baseline = Baseline(
            args.baseline_checkout,
            dataset,
            work / "prepared-baseline",
            args.short_side,
            args.workers,
            settings,
            test_settings,
        )
    jpegs = raw_decode_dataset(data.shard_paths(data.load_manifest(prepared), "train"))
    rates = {"host": [], "device": [], "raw": [], "test": []}
    if baseline:
        rates["baseline_host"], rates["baseline_test"] = [], []
    try:
        for round_index in range(args.rounds):
            for place, pipeline in pipelines.items():
                rates[place].append(time_pipeline(pipeline, args.batches))
            rates["raw"].append(
                time_raw_decode(jpegs, args.batches * batch * clip_length, clip_length)
            )
            rates["test"].append(time_pipeline(test_views, args.batches))
            if baseline:
                rates["baseline_host"].append(baseline.time("train", args.batches))
                rates["baseline_test"].append(baseline.time("test", args.batches))
            print(
                f"round {round_index + 1}: "
                + "; ".join(
                    f"{name} {r[-1][0]:.1f} {'views' if 'test' in name else 'clips'}/s "
                    f"({r[-1][1]:.1f} per CPU-second)"
                    for name, r in rates.items()
                )
            )
    finally:
        if baseline:
            baseline.close()
    wall = {name: statistics.median(r[0] for r in values) for name, values in rates.items()}
    cpu = {name: statistics.median(r[1] for r in values) for name, values in rates.items()}
    result = {
        "clip": [clip_length, crop, crop, 3],
        "stride": stride,
        "batch_size": batch,
        "augmentation": args.augmentation,
        "cpu": report.cpu_model(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "clips_per_round": args.batches * batch,
        "videos": decode["videos"],
        "frames": decode["frames"],
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "raw_decode_clips_per_second": round(wall["raw"], 1),
        "raw_decode_frames_per_second": round(wall["raw"] * clip_length, 1),
        "raw_decode_clips_per_cpu_second": round(cpu["raw"], 1),
        "pyav_decode_fps_per_process": decode["decode_fps"],
        "prepare_videos_per_second": decode["this_run"]["videos_per_second"],
        "prepare_workers": decode["this_run"]["workers"],
        "frame_size": [int(v) for v in _frame_size(prepared)],
    }
    for place in ("host", "device"):
        result[f"{place}_pipeline_clips_per_second"] = round(wall[place], 1)
        result[f"{place}_ratio"] = round(wall[place] / wall["raw"], 3)
        result[f"{place}_pipeline_clips_per_cpu_second"] = round(cpu[place], 1)
        result[f"{place}_cpu_ratio"] = round(cpu[place] / cpu["raw"], 3)
        print(
            f"median, augment_on={place!r}: {wall[place]:.1f} clips/s vs raw decode "
            f"{wall['raw']:.1f} -> ratio {wall[place] / wall['raw']:.2f} "
            f"(target >= 0.8); per CPU-second {cpu[place]:.1f} vs {cpu['raw']:.1f} "
            f"-> {cpu[place] / cpu['raw']:.2f}"
        )
    result["test_views_per_second"] = round(wall["test"], 1)
    result["test_views_per_cpu_second"] = round(cpu["test"], 1)
    print(
        f"median, test mode (10 clips x 1 crop per video): {wall['test']:.1f} views/s "
        f"({cpu['test']:.1f} per CPU-second)"
    )
    if baseline:
        result["baseline"] = {
            "checkout": str(args.baseline_checkout),
            "revision": baseline.revision,
            "host_pipeline_clips_per_second": round(wall["baseline_host"], 1),
            "host_pipeline_clips_per_cpu_second": round(cpu["baseline_host"], 1),
            "this_over_baseline": round(wall["host"] / wall["baseline_host"], 3),
            "this_over_baseline_cpu": round(cpu["host"] / cpu["baseline_host"], 3),
            "rounds_this_over_baseline": [
                round(a[0] / b[0], 3) for a, b in zip(rates["host"], rates["baseline_host"])
            ],
            "rounds_this_over_baseline_cpu": [
                round(a[1] / b[1], 3) for a, b in zip(rates["host"], rates["baseline_host"])
            ],
            "test_views_per_second": round(wall["baseline_test"], 1),
            "test_views_per_cpu_second": round(cpu["baseline_test"], 1),
            "test_this_over_baseline": round(wall["test"] / wall["baseline_test"], 3),
            "test_this_over_baseline_cpu": round(cpu["test"] / cpu["baseline_test"], 3),
        }
        print(
            f"median, host pipeline of this checkout vs {baseline.revision}: "
            f"{wall['host']:.1f} vs {wall['baseline_host']:.1f} clips/s -> "
            f"{wall['host'] / wall['baseline_host']:.3f} (target >= 0.95); per "
            f"CPU-second {cpu['host']:.1f} vs {cpu['baseline_host']:.1f} -> "
            f"{cpu['host'] / cpu['baseline_host']:.3f}; test mode {wall['test']:.1f} vs "
            f"{wall['baseline_test']:.1f} views/s -> "
            f"{wall['test'] / wall['baseline_test']:.3f}, per CPU-second "
            f"{cpu['test'] / cpu['baseline_test']:.3f}"
        )
    costs = stage_costs(prepared, clip_length, stride, crop, batch)
    costs["device-augment pipeline (decode + square + batch)"] = _cpu_ms_per_clip(
        iter(pipelines["device"]), 40, batch
    )
    raw_ms = round(1000 / cpu["raw"], 2)
    layer_ms = device_layer_cost(pipelines["device"])
    print(
        "CPU ms per clip, host pipeline cut after each stage: "
        + "; ".join(f"{k} {v}" for k, v in costs.items())
        + f"; raw decode_jpeg of {clip_length} full frames {raw_ms}; "
        f"ClipAugmentation on this CPU {layer_ms}"
    )
    result["cpu_ms_per_clip_by_stage"] = costs
    result["raw_decode_cpu_ms_per_clip"] = raw_ms
    result["clip_augmentation_layer_cpu_ms_per_clip"] = layer_ms
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.input_pipeline", argv))
    return result


def write_docs(result, path, command):
    """The figures as Markdown, with the command, the CPU and the load."""
    height, width = result["frame_size"]
    lines = [
        "Load average "
        f"(1, 5, 15 min) at the end of the timed rounds: "
        f"{', '.join(str(v) for v in result['load_average'])}.  ",
        f"Data: {result['videos']} videos, {result['frames']} frames stored as "
        f"{height}x{width} JPEGs; clips {'x'.join(str(v) for v in result['clip'])}, "
        f"stride {result['stride']}, batch {result['batch_size']}, "
        f"{result['augmentation']} + flip + normalisation; "
        f"{result['rounds']} alternating rounds of {result['clips_per_round']} clips, "
        "medians.",
        "",
        "| pipeline | clips/s | clips per CPU-second | / raw decode (target >= 0.8) |",
        "| --- | --- | --- | --- |",
    ]
    for place, what in (
        ("host", 'train, `augment_on="host"` (float clips)'),
        ("device", 'train, `augment_on="device"` (uint8 frames)'),
    ):
        lines.append(
            f"| {what} | {result[f'{place}_pipeline_clips_per_second']} | "
            f"{result[f'{place}_pipeline_clips_per_cpu_second']} | "
            f"{result[f'{place}_ratio']} |"
        )
    lines.append(
        f"| raw `tf.io.decode_jpeg` of the same frames (16 per clip) | "
        f"{result['raw_decode_clips_per_second']} | "
        f"{result['raw_decode_clips_per_cpu_second']} | 1 |"
    )
    lines.append(
        f"| test mode, 10 clips x 1 crop per video (views/s) | "
        f"{result['test_views_per_second']} | "
        f"{result['test_views_per_cpu_second']} | |"
    )
    base = result.get("baseline")
    if base:
        raw = result["raw_decode_clips_per_second"]
        lines.append(
            f"| baseline: revision {base['revision']}, train host | "
            f"{base['host_pipeline_clips_per_second']} | "
            f"{base['host_pipeline_clips_per_cpu_second']} | "
            f"{round(base['host_pipeline_clips_per_second'] / raw, 3)} |"
        )
        lines.append(
            f"| baseline: revision {base['revision']}, test mode (views/s) | "
            f"{base['test_views_per_second']} | "
            f"{base['test_views_per_cpu_second']} | |"
        )
        lines += [
            "",
            f"This checkout / revision {base['revision']} (target >= 0.95): "
            f"train host pipeline {base['this_over_baseline']} in clips/s, "
            f"{base['this_over_baseline_cpu']} per CPU-second (ratios of the "
            f"medians; round by round: "
            f"{', '.join(str(v) for v in base['rounds_this_over_baseline'])} in "
            f"clips/s, "
            f"{', '.join(str(v) for v in base['rounds_this_over_baseline_cpu'])} "
            "per CPU-second); "
            f"test mode {base['test_this_over_baseline']} in views/s, "
            f"{base['test_this_over_baseline_cpu']} per CPU-second.",
        ]
    lines += [
        "",
        "CPU milliseconds per clip, host pipeline cut after each stage:",
        "",
        "| stage | CPU ms per clip |",
        "| --- | --- |",
    ]
    lines += [f"| {stage} | {ms} |" for stage, ms in result["cpu_ms_per_clip_by_stage"].items()]
    lines += [
        f"| raw `decode_jpeg` of 16 full frames | {result['raw_decode_cpu_ms_per_clip']} |",
        f"| `ClipAugmentation` on this CPU (an accelerator's work) | "
        f"{result['clip_augmentation_layer_cpu_ms_per_clip']} |",
        "",
        f"prepare: PyAV decode {result['pyav_decode_fps_per_process']} frames/s "
        f"per process; {result['prepare_videos_per_second']} videos/s with "
        f"{result['prepare_workers']} workers.",
        "",
    ]
    report.write_page(
        path,
        "Input-pipeline benchmark (`benchmarks/input_pipeline.py`)",
        command,
        ["\n".join(lines)],
    )


def _frame_size(prepared):
    table = shard_format.load_table(data.shard_paths(data.load_manifest(prepared), "train")[:1])
    return table["height"][0], table["width"][0]


if __name__ == "__main__":
    main()
