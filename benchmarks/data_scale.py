"""Building the clip pipelines over a Kinetics-700-size index: time and memory.

Writes a prepared folder with the index of a dataset the size of
Kinetics-700 (default 650,000 train videos of 300 frames, 64 per shard, and
a test subset of 64,000), then, in this process, builds the train
pipeline, takes its first batch, builds the test pipeline and takes its
first batch, and reports the time of each step and the growth of the
process's resident memory (RSS) over a baseline taken after TensorFlow and
tf.data have started. Targets: RSS growth <= 200 MB, first train batch
<= 60 s from the start of the build.

Only the indexes and the pipelines' start matter here, so every shard's
frames file is a hard link to one file of real frame records (a 128x171
JPEG repeated), which keeps the folder to its indexes (the per-frame
offsets, 8 bytes each: about 1.6 GB on disk for the default size).

    python -m benchmarks.data_scale --docs docs/benchmarks/data_scale.md
    python -m benchmarks.data_scale --videos 65000 --test-videos 6400   # a tenth

The folder is written under --folder (default: a temporary folder, removed
at the end) and reused when it already holds an index of the same size.
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from benchmarks import report

RSS_TARGET_MB = 200
FIRST_BATCH_TARGET_S = 60
SPEC_NAME = "data_scale.json"


def rss_mb():
    """This process's resident memory, MB (`/proc/self/statm`)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def frame_jpeg(height=128, width=171):
    """One JPEG frame of the prepared size (a gradient, quality 90)."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_index(folder, subsets, frames, per_shard, classes=700):
    """Writes the manifest and the shards' files of `subsets`
    (`{name: videos}`); returns the seconds it took."""
    import tensorflow as tf

    from training.data import shard_format
    from training.data.shard_writer import MANIFEST_FORMAT

    started = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    jpeg = frame_jpeg()
    common = os.path.join(folder, "frames.common")
    with tf.io.TFRecordWriter(common) as writer:
        for _ in range(per_shard * frames):
            writer.write(jpeg)
    step = len(jpeg) + shard_format.RECORD_FRAMING
    ends = np.arange(per_shard * frames + 1, dtype=np.int64) * step
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": shard_format.LAYOUT_VERSION,
        "class_names": [f"class_{c}" for c in range(classes)],
        "subsets": {},
        "skipped": [],
        "short_side": 128,
    }
    for subset, videos in subsets.items():
        count = -(-videos // per_shard)
        names = [f"{subset}-{i:05d}-of-{count:05d}" for i in range(count)]
        for number, name in enumerate(names):
            first = number * per_shard
            ids = np.arange(first, min(first + per_shard, videos))
            columns = {
                "video_id": ids,
                "label": ids % classes,
                "num_frames": np.full(len(ids), frames),
                "height": np.full(len(ids), 128),
                "width": np.full(len(ids), 171),
                "fps": np.full(len(ids), 30.0),
                "path": [f"videos/{subset}/{i:07d}.mp4".encode() for i in ids],
            }
            offsets = [ends[v * frames : (v + 1) * frames + 1] for v in range(len(ids))]
            prefix = os.path.join(folder, name)
            frames_bytes = int(ends[len(ids) * frames])
            if len(ids) == per_shard:
                os.link(common, shard_format.frames_path(prefix))
            else:  # the last shard holds fewer videos: its own, shorter file
                with open(common, "rb") as source:
                    data = source.read(frames_bytes)
                with open(shard_format.frames_path(prefix), "wb") as target:
                    target.write(data)
            shard_format.write_index(
                shard_format.index_path(prefix), name, columns, offsets, frames_bytes
            )
        manifest["subsets"][subset] = {"shards": names, "videos": videos}
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return time.perf_counter() - started


def measure(folder, subset, clip_length, batch_size):
    """Builds one pipeline and takes its first batch, in this process:
    seconds, and RSS growth (MB) over a baseline taken once TensorFlow and
    tf.data have started."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from training.data import clip_dataset

    next(iter(tf.data.Dataset.range(4).map(lambda x: x + 1).batch(2)))
    baseline = rss_mb()
    mode = "train" if subset == "train" else "test"
    extra = {"num_clips": 10, "num_crops": 3} if mode == "test" else {}
    start = time.perf_counter()
    dataset = clip_dataset(
        folder,
        subset,
        mode=mode,
        clip_length=clip_length,
        crop_size=112,
        batch_size=batch_size,
        repeat=mode == "train",
        **extra,
    )
    built = time.perf_counter() - start
    after_build = rss_mb()
    batch = next(iter(dataset))
    return {
        "build_s": built,
        "first_batch_s": time.perf_counter() - start,
        "rss_build_mb": after_build - baseline,
        "rss_batch_mb": rss_mb() - baseline,
        "baseline_mb": baseline,
        "batch": "x".join(str(d) for d in batch[0].shape),
    }


def measure_apart(folder, subset, clip_length, batch_size):
    """`measure` in a fresh process (its own baseline)."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure, folder, subset, clip_length, batch_size).result()


def prepared_index(folder, spec):
    """Writes the index `spec` describes into `folder` unless it is there."""
    spec_path = os.path.join(folder, SPEC_NAME)
    if os.path.exists(spec_path):
        with open(spec_path, encoding="utf-8") as handle:
            if json.load(handle) == spec:
                return
    if os.path.exists(folder):
        shutil.rmtree(folder)
    written = write_index(
        folder,
        {"train": spec["videos"], "test": spec["test_videos"]},
        spec["frames"],
        spec["videos_per_shard"],
    )
    with open(spec_path, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    print(f"index written in {written:.1f} s: {folder}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_scale", description=__doc__)
    parser.add_argument("--videos", type=int, default=650_000, help="Train videos.")
    parser.add_argument("--test-videos", type=int, default=64_000, help="Test videos.")
    parser.add_argument("--frames", type=int, default=300, help="Frames per video.")
    parser.add_argument("--videos-per-shard", type=int, default=64)
    parser.add_argument("--clip-length", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--folder", help="Where the index is written (kept); default: temporary.")
    parser.add_argument("--docs", help="Write the figures to this Markdown page.")
    args = parser.parse_args(argv)
    if min(args.videos, args.test_videos, args.frames, args.videos_per_shard) < 1:
        parser.error("--videos, --test-videos, --frames and --videos-per-shard must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    temporary = args.folder is None
    folder = args.folder or tempfile.mkdtemp(prefix="data-scale-")
    spec = {
        "videos": args.videos,
        "test_videos": args.test_videos,
        "frames": args.frames,
        "videos_per_shard": args.videos_per_shard,
    }
    # The same pipelines over one shard per subset: what does not grow
    # with the dataset (threads, buffers, the clips in flight).
    reference = {**spec, "videos": args.videos_per_shard, "test_videos": args.videos_per_shard}
    results = {}
    try:
        for name, size in (("reference", reference), ("full", spec)):
            where = os.path.join(folder, name)
            prepared_index(where, size)
            for subset in ("train", "test"):
                results[name, subset] = measure_apart(
                    where, subset, args.clip_length, args.batch_size
                )
                print(name, subset, results[name, subset], flush=True)
        index_bytes = sum(
            entry.stat().st_size
            for entry in os.scandir(os.path.join(folder, "full"))
            if entry.name.endswith(".index.tfrecord")
        )
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    frames = (args.videos + args.test_videos) * args.frames
    train = results["full", "train"]
    growth = max(results["full", s]["rss_batch_mb"] for s in ("train", "test"))
    verdicts = {
        "RSS growth (train)": (train["rss_batch_mb"], RSS_TARGET_MB, "MB"),
        "first train batch": (train["first_batch_s"], FIRST_BATCH_TARGET_S, "s"),
    }
    table = report.markdown_table(
        [
            "index",
            "pipeline",
            "build (s)",
            "first batch (s, from the build's start)",
            "RSS growth after build (MB)",
            "RSS growth after first batch (MB)",
            "batch",
        ],
        [
            [
                name if name == "reference" else f"{args.videos:,} / {args.test_videos:,} videos",
                subset,
                f"{row['build_s']:.2f}",
                f"{row['first_batch_s']:.2f}",
                f"{row['rss_build_mb']:.0f}",
                f"{row['rss_batch_mb']:.0f}",
                row["batch"],
            ]
            for (name, subset), row in results.items()
        ],
    )
    scale = {
        subset: results["full", subset]["rss_build_mb"]
        - results["reference", subset]["rss_build_mb"]
        for subset in ("train", "test")
    }
    summary = [
        "Each row is a fresh process; RSS growth is over its baseline (TensorFlow "
        "and tf.data started), after building the pipeline and after its first "
        "batch. `reference` is the same pipeline over one shard per subset. What "
        "grows with the dataset shows after the build (the video table: train "
        f"{scale['train']:+.0f} MB, test {scale['test']:+.0f} MB over the "
        "reference); the first batch adds the pipeline's working set (threads, "
        "prefetch buffers, clips in flight; a test-mode video is 30 float32 "
        "views), the same at any size but varying from run to run with "
        "tf.data's autotuning.",
        f"Index: {args.videos:,} train + {args.test_videos:,} test videos x "
        f"{args.frames} frames ({frames:,} frames) in shards of "
        f"{args.videos_per_shard} videos; index files {index_bytes / 1e9:.2f} GB on disk. "
        f"RSS baseline {train['baseline_mb']:.0f} MB; largest growth {growth:.0f} MB.",
        "Targets: "
        + "; ".join(
            f"{name} {value:.1f} {unit} (target <= {target} {unit}: "
            f"{'met' if value <= target else 'NOT met'})"
            for name, (value, target, unit) in verdicts.items()
        )
        + ".",
        f"For comparison, frame offsets held in memory (the previous reader: 8 "
        f"bytes per frame in the pipeline's graph) would take "
        f"{8 * frames / 1e6:,.0f} MB for this index in every input-pipeline process.",
    ]
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        summary.append(
            f"Measured under load (load average {load:.1f} on {os.cpu_count()} CPUs: "
            "other jobs shared the machine): times are longer than on a quiet one."
        )
    print(table)
    for line in summary:
        print(line)
    if args.docs:
        import tensorflow  # noqa: F401 - its version goes on the page (measured in children)

        report.write_page(
            args.docs,
            "Kinetics-700-size index: building the clip pipelines (`benchmarks/data_scale.py`)",
            report.command("benchmarks.data_scale", argv),
            [table, *summary],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
