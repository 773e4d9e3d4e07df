"""Input-pipeline throughput: clips/s of `clip_dataset` vs raw JPEG decoding.

    python -m benchmarks.input_pipeline                       # synthetic videos
    python -m benchmarks.input_pipeline --videos /path/to/videos --repeat 8
    python -m benchmarks.input_pipeline --short-side 256

1. Writes (or takes) videos and runs `prepare_dataset` on them (short side
   128 unless --short-side): reports PyAV decode frames/s (per process) and videos/s.
2. Times `clip_dataset(mode="train")` (16x112x112 clips, stride 2, batch 8,
   scale jitter + flip + normalisation) in clips/s, in both placements of
   the augmentation: `augment_on="host"` (the CPU yields float clips) and
   `augment_on="device"` (the CPU yields uint8 frames + window + flip; the
   resize/flip/normalise runs in the model on the accelerator).
3. Times plain `tf.io.decode_jpeg` on the same shards' JPEGs, in a parallel
   `tf.data` map with AUTOTUNE, for the same number of frames
   (clips x 16), and reports it as clips/s.

Rounds of 2 and 3 alternate `--rounds` times (so load from other processes
hits all alike); the medians and the ratios to raw decoding (target >= 0.8)
are printed and written as JSON with `--json`, both per second of wall time
and per second of this process's CPU time (the latter is steadier on a
machine shared with other jobs). Last, the CPU cost per clip of the host
pipeline cut after each stage shows where the time goes, and the CPU cost of
`ClipAugmentation` per clip (what the device does instead, here on CPU).
"""

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from clipspec.format import DEFAULT_MEAN, DEFAULT_STD  # noqa: E402
from training import data  # noqa: E402
from training.data import records  # noqa: E402
from clipspec.decode import VIDEO_EXTENSIONS  # noqa: E402
from training.data.layouts import VideoDataset, VideoItem  # noqa: E402
from benchmarks import report  # noqa: E402


def flat_videos(folder, repeat):
    """Every video file under `folder` as one class, listed `repeat` times."""
    paths = sorted(str(p) for p in pathlib.Path(folder).rglob("*")
                   if p.suffix.lower() in VIDEO_EXTENSIONS)
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
        _, labels = next(iterator)
        count += int(labels.shape[0])
    return _rates(count, time.perf_counter() - start, time.process_time() - cpu)


def raw_decode_dataset(files):
    jpegs = (tf.data.TFRecordDataset(files).map(records.parse)
             .map(lambda v: v["frames"]).unbatch().cache())
    return jpegs.repeat()


def time_raw_decode(jpegs, frames, clip_length, chunk=128):
    # Frames of different videos differ in size: keep only their shapes.
    decoded = (jpegs.map(lambda j: tf.shape(tf.io.decode_jpeg(j, channels=3)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .batch(chunk).prefetch(tf.data.AUTOTUNE))
    iterator = iter(decoded)
    for _ in range(2):
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < frames:
        done += int(next(iterator).shape[0])
    return _rates(done, time.perf_counter() - start, time.process_time() - cpu,
                  clip_length)


def stage_costs(prepared, clip_length, stride, crop, batch, clips=320):
    """CPU milliseconds per clip of the host pipeline cut after each stage."""
    from clipspec import views
    from training.data import frame_index, transforms
    from training.data.pipeline import _decode, _normaliser

    files = data.shard_paths(data.load_manifest(prepared), "train")
    table, frame_tables = frame_index.video_table(files)
    reader = frame_index.FrameReader(files, frame_tables)
    normalise = _normaliser(DEFAULT_MEAN, DEFAULT_STD)

    def cut(stage):
        def clip(video, seed):
            seeds = tf.random.experimental.stateless_split(seed, 3)
            last = views.max_start(video["num_frames"], clip_length, stride)
            start = tf.random.stateless_uniform([], seeds[0], 0, last + 1, dtype=tf.int32)
            indices = views.clip_indices(video["num_frames"], clip_length, stride,
                                              start)
            jpegs = tf.numpy_function(reader.read, [video["shard"], video["first"],
                                                    indices], tf.string, stateful=False)
            if stage == "read (index + pread)":
                return tf.reduce_sum(tf.strings.length(jpegs))
            window = transforms.crop_window(video["height"], video["width"], seeds[1])
            frames = _decode(tf.ensure_shape(jpegs, [clip_length]), clip_length)
            if stage == "+ decode_jpeg":
                return tf.reduce_sum(tf.shape(frames))
            frames = frames[:, window[0]:window[0] + window[2],
                            window[1]:window[1] + window[3]]
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
    for stage in ("read (index + pread)", "+ decode_jpeg", "+ crop",
                  "+ resize + flip + normalise", "+ batch (= the host pipeline)"):
        pipeline = (tf.data.Dataset.zip((videos, seeds))
                    .map(cut(stage), num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=False)
                    .batch(batch).prefetch(tf.data.AUTOTUNE))
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", help="Folder of videos to use (default: write "
                                         "synthetic 128x128, 64-frame videos).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="List each video this many times (bigger dataset).")
    parser.add_argument("--synthetic", type=int, default=48,
                        help="Synthetic videos to write when --videos is not given.")
    parser.add_argument("--work", help="Working folder (default: a temporary one).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="prepare's decoding processes.")
    parser.add_argument("--batches", type=int, default=30,
                        help="Batches of 8 clips timed per round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds.")
    parser.add_argument("--short-side", type=int, default=128,
                        help="prepare's stored frame short side (default 128).")
    parser.add_argument("--augmentation", default="scale_jitter",
                        choices=("scale_jitter", "random_resized_crop", "center"))
    parser.add_argument("--json", help="Write the figures to this JSON file.")
    parser.add_argument("--docs", metavar="FILE",
                        help="Also write the figures, the command, the date and the "
                        "machine as Markdown to FILE (e.g. "
                        "docs/benchmarks/input_pipeline.md).")
    args = parser.parse_args(argv)

    clip_length, stride, crop, batch = 16, 2, 112, 8
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="input_pipeline_"))
    if args.videos:
        dataset = flat_videos(args.videos, args.repeat)
    else:
        per_class = max(1, args.synthetic // 6)
        print(f"writing {6 * per_class} synthetic videos (64 frames, 128x128) ...")
        synthetic = data.write_synthetic_dataset(
            work / "videos", classes=6, per_class=per_class, frames=64, size=128,
            preset="medium", test_fraction=0.0,
        )
        dataset = synthetic
    manifest = data.prepare_dataset(dataset, work / "prepared", short_side=args.short_side,
                                    workers=args.workers, progress=True)
    decode = manifest["decode"]
    run = decode["this_run"]
    print(f"prepare: {decode['videos']} videos, {decode['frames']} frames; PyAV decode "
          f"{decode['decode_fps']} frames/s per process (decode + resize, no JPEG)")
    if run["videos_processed"]:
        print(f"prepare: {run['videos_per_second']} videos/s with {run['workers']} "
              "workers (decode + JPEG encode + write)")
    else:
        print("prepare: all shards reused from an earlier run of the same --work")

    prepared = work / "prepared"
    pipelines = {
        place: data.clip_dataset(prepared, "train", clip_length=clip_length, stride=stride,
                                 crop_size=crop, batch_size=batch, repeat=True,
                                 augmentation=args.augmentation, augment_on=place)
        for place in ("host", "device")
    }
    jpegs = raw_decode_dataset(data.shard_paths(data.load_manifest(prepared), "train"))
    rates = {"host": [], "device": [], "raw": []}
    for round_index in range(args.rounds):
        for place, pipeline in pipelines.items():
            rates[place].append(time_pipeline(pipeline, args.batches))
        rates["raw"].append(time_raw_decode(jpegs, args.batches * batch * clip_length,
                                            clip_length))
        print(f"round {round_index + 1}: " + "; ".join(
            f"{name} {r[-1][0]:.1f} clips/s ({r[-1][1]:.1f} per CPU-second)"
            for name, r in rates.items()))
    wall = {name: statistics.median(r[0] for r in values) for name, values in rates.items()}
    cpu = {name: statistics.median(r[1] for r in values) for name, values in rates.items()}
    result = {
        "clip": [clip_length, crop, crop, 3], "stride": stride, "batch_size": batch,
        "augmentation": args.augmentation, "cpus": os.cpu_count(),
        "rounds": args.rounds, "clips_per_round": args.batches * batch,
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
        print(f"median, augment_on={place!r}: {wall[place]:.1f} clips/s vs raw decode "
              f"{wall['raw']:.1f} -> ratio {wall[place] / wall['raw']:.2f} "
              f"(target >= 0.8); per CPU-second {cpu[place]:.1f} vs {cpu['raw']:.1f} "
              f"-> {cpu[place] / cpu['raw']:.2f}")
    costs = stage_costs(prepared, clip_length, stride, crop, batch)
    costs["device-augment pipeline (decode + square + batch)"] = _cpu_ms_per_clip(
        iter(pipelines["device"]), 40, batch)
    raw_ms = round(1000 / cpu["raw"], 2)
    layer_ms = device_layer_cost(pipelines["device"])
    print("CPU ms per clip, host pipeline cut after each stage: "
          + "; ".join(f"{k} {v}" for k, v in costs.items())
          + f"; raw decode_jpeg of {clip_length} full frames {raw_ms}; "
          f"ClipAugmentation on this CPU {layer_ms}")
    result["cpu_ms_per_clip_by_stage"] = costs
    result["raw_decode_cpu_ms_per_clip"] = raw_ms
    result["clip_augmentation_layer_cpu_ms_per_clip"] = layer_ms
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.input_pipeline", argv))
    return result


def write_docs(result, path, command):
    """The figures as Markdown under the command, date and machine."""
    t, s = result["clip"][0], result["clip"][1]
    settings = (f"Train mode, {t}x{s}x{s} clips (stride {result['stride']}), batch "
                f"{result['batch_size']}, {result['augmentation']} + flip + "
                f"normalisation, stored frames {result['frame_size'][0]}x"
                f"{result['frame_size'][1]}; medians of {result['rounds']} alternating "
                f"rounds of {result['clips_per_round']} clips; load average at the end "
                f"{result['load_average']}. Target: pipeline / raw decode >= 0.8.")
    rows = [["PyAV decode + resize during prepare (per process)",
             f"{result['pyav_decode_fps_per_process']} frames/s", ""],
            [f"prepare, {result['prepare_workers']} workers",
             f"{result['prepare_videos_per_second']} videos/s", ""],
            ["raw tf.io.decode_jpeg, same frames, as clips/s",
             result["raw_decode_clips_per_second"], ""]]
    for place in ("device", "host"):
        rows.append([f'augment_on="{place}", clips/s',
                     result[f"{place}_pipeline_clips_per_second"],
                     f"{result[f'{place}_ratio']} ({result[f'{place}_cpu_ratio']})"])
    stages = report.markdown_table(
        ["host pipeline cut after", "CPU ms per clip"],
        [*result["cpu_ms_per_clip_by_stage"].items(),
         ["raw decode_jpeg of the clip's frames", result["raw_decode_cpu_ms_per_clip"]],
         ["ClipAugmentation layer on this CPU",
          result["clip_augmentation_layer_cpu_ms_per_clip"]]])
    report.write_page(path, "Input pipeline throughput", command, [
        settings,
        report.markdown_table(["", "figure", "ratio to raw decode, wall (CPU)"], rows),
        "Where the CPU time of one training clip goes:", stages])


def _frame_size(prepared):
    files = data.shard_paths(data.load_manifest(prepared), "train")
    video = next(iter(tf.data.TFRecordDataset(files[:1]).map(records.parse)))
    return video["height"].numpy(), video["width"].numpy()


if __name__ == "__main__":
    main()
