"""Decoding, `prepare` (shards + manifest + skipped files) and the round trip
video -> shards -> clip against a direct PyAV decode; real clips if present."""

import csv
import json
import os
import pathlib

import messy_files
import numpy as np
import pytest

import cliutil
from clipspec.decode import VideoDecodeError, decode_video, resized_shape
from clipspec.sampling import eval_views, normalize
from training import prepare as prepare_cli
from training import synth as synth_cli
from training.data import (
    clip_dataset,
    load_folder,
    load_manifest,
    shard_format,
    shard_paths,
    write_synthetic_dataset,
)
from training.data.layouts import VideoDataset, VideoItem
from training.data.shard_writer import CRASH_REASON, _Runner, prepare_dataset
from training.data.synthetic import write_video


def write_audio_only(path):
    return messy_files.write_audio_only(path, container_format="mp4")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Synthetic good videos plus one of each kind of bad file."""
    root = tmp_path_factory.mktemp("videos")
    dataset = write_synthetic_dataset(
        root, classes=3, per_class=4, frames=12, size=48, seed=5, test_fraction=0.25
    )
    good = [item.path for item in dataset.items]
    bad = {
        "empty": root / "left" / "empty.mp4",
        "truncated": root / "right" / "truncated.mp4",
        "text": root / "up" / "text.mp4",
        "audio": root / "left" / "audio_only.mp4",
        "one_frame": root / "right" / "one_frame.mp4",
        "broken_link": root / "up" / "broken_link.mp4",
    }
    bad["empty"].write_bytes(b"")
    data = pathlib.Path(good[0]).read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["text"].write_text("this is not a video\n")
    write_audio_only(bad["audio"])
    write_video(bad["one_frame"], np.full((1, 48, 48, 3), 128, np.uint8))
    os.symlink(root / "does-not-exist.mp4", bad["broken_link"])
    return root, good, {k: str(v) for k, v in bad.items()}


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "empty file (0 bytes)"),
        ("truncated", "not a video FFmpeg can read"),
        ("text", "not a video FFmpeg can read"),
        ("audio", "no video stream (the file has audio streams only)"),
        ("one_frame", "only 1 decodable frame; a video needs at least 2"),
        ("broken_link", "broken symbolic link"),
    ],
)
def test_decode_video_names_the_problem(videos, kind, reason):
    _, _, bad = videos
    with pytest.raises(VideoDecodeError) as error:
        decode_video(bad[kind])
    assert error.value.path == bad[kind]
    assert reason in error.value.reason


def test_decode_video_frames_sizes_and_errors(videos, tmp_path):
    _, good, _ = videos
    frames, fps = decode_video(good[0])
    assert frames.shape == (12, 48, 48, 3) and frames.dtype == np.uint8 and fps == 25.0
    small, _ = decode_video(good[0], short_side=32, max_frames=5)
    assert small.shape == (5, 32, 32, 3)
    assert resized_shape(240, 320, 128) == (128, 171)
    assert resized_shape(320, 240, 128) == (171, 128)
    assert resized_shape(100, 150, 20) == (20, 30)
    with pytest.raises(VideoDecodeError, match="no such file"):
        decode_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoDecodeError, match="is a directory"):
        decode_video(tmp_path)
    with pytest.raises(ValueError, match="Received: short_side=0"):
        decode_video(good[0], short_side=0)


def best_shift(a, b, reach=4):
    """The circular shift (dx, dy) that best maps frame `a` onto frame `b`."""
    errors = {
        (dx, dy): np.square(np.roll(a, (dy, dx), axis=(0, 1)) - b).sum()
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
    }
    return np.array(min(errors, key=errors.get))


@pytest.mark.slow
def test_synthetic_motion_goes_the_named_way_and_is_reproducible(tmp_path):
    """The (white, noise-free) shape moves the way its class says, while
    first frames of `left` and `right` videos look alike."""
    dataset = write_synthetic_dataset(
        tmp_path / "a", classes=4, per_class=6, frames=10, size=48, seed=3, random_colour=False
    )
    starts = {}
    for item in dataset.items:
        frames, _ = decode_video(item.path)
        gray = frames.astype(float).mean(-1)
        dx, dy = sum(best_shift(a, b) for a, b in zip(gray[:-1], gray[1:]))
        expected = {
            "left": dx < -8 and abs(dy) < 3,
            "right": dx > 8 and abs(dy) < 3,
            "up": dy < -8 and abs(dx) < 3,
            "down": dy > 8 and abs(dx) < 3,
        }
        assert expected[item.class_name], (item.path, dx, dy)
        starts.setdefault(item.class_name, []).append(np.nonzero(gray[0] > 128)[1].mean())
    # Start positions overlap: the first frame does not tell left from right.
    assert min(starts["left"]) < max(starts["right"])
    assert min(starts["right"]) < max(starts["left"])
    again = write_synthetic_dataset(
        tmp_path / "b", classes=4, per_class=6, frames=10, size=48, seed=3, random_colour=False
    )
    other = write_synthetic_dataset(
        tmp_path / "c", classes=4, per_class=6, frames=10, size=48, seed=4, random_colour=False
    )
    a, b, c = (decode_video(d.items[0].path)[0] for d in (dataset, again, other))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(TypeError, match="Unknown difficulty setting"):
        write_synthetic_dataset(tmp_path / "d", classes=2, per_class=1, blur=3)
    with pytest.raises(ValueError, match="Received: classes=99"):
        write_synthetic_dataset(tmp_path / "d", classes=99, per_class=1)


@pytest.mark.slow
def test_prepare_skips_exactly_the_bad_files_and_keeps_all_good(videos, tmp_path):
    root, good, bad = videos
    dataset = load_folder(root, test_fraction=0.25, seed=5)
    listed = {i.path for i in dataset.items}
    assert set(good) | set(bad.values()) == listed
    # An unreadable path listed by annotations is reported too.
    missing = str(tmp_path / "gone.mp4")
    dataset.missing.append({"path": missing, "subset": "train", "reason": "listed but not found"})
    manifest = prepare_dataset(
        dataset, tmp_path / "out", short_side=32, workers=2, videos_per_shard=4, progress=False
    )
    skipped = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert set(skipped) == set(bad.values()) | {missing}
    assert "0 bytes" in skipped[bad["empty"]]
    assert "audio" in skipped[bad["audio"]]
    written = {}
    for subset in manifest["subsets"]:
        for prefix in shard_paths(load_manifest(tmp_path / "out"), subset):
            for video in shard_format.read_videos(prefix):
                written[video["path"]] = (subset, video)
    assert set(written) == set(good)
    # the split is drawn over the usable videos only
    by_path = {
        i.path: i for i in dataset.redraw_split([i for i in dataset.items if i.path in set(good)])
    }
    for path, (subset, video) in written.items():
        assert by_path[path].subset == subset
        assert video["label"] == by_path[path].label
        assert video["num_frames"] == len(video["frames"]) == 12
        assert video["height"] == 32 and video["fps"] == 25.0
    counts = {s: {c: 0 for c in dataset.class_names} for s in ("train", "test")}
    for path in good:
        counts[by_path[path].subset][by_path[path].class_name] += 1
    for subset in ("train", "test"):
        assert manifest["subsets"][subset]["per_class"] == counts[subset]
        assert manifest["subsets"][subset]["videos"] == sum(counts[subset].values())
    ids = [v["video_id"] for s, v in written.values() if s == "train"]
    assert len(set(ids)) == len(ids)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["skipped"] == manifest["skipped"]
    assert on_disk["decode"]["frames"] == 12 * len(good)
    assert on_disk["decode"]["decode_fps"] > 0


def test_prepare_resumes_and_redoes_changed_shards(videos, tmp_path):
    root, good, _ = videos
    dataset = VideoDataset([VideoItem(p, 0, "all", "train") for p in good[:6]], ["all"])
    out = tmp_path / "out"
    first = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    assert first["decode"]["this_run"]["shards_written"] == 3
    shards = [out / name for name in first["subsets"]["train"]["shards"]]
    shard = pathlib.Path(shard_format.frames_path(shards[1]))
    stamp = shard.stat().st_mtime_ns
    # Interrupted run: one shard without its sidecar, another without its
    # index; a third half-written (a leftover temporary file).
    os.remove(f"{shards[0]}.json")
    os.remove(shard_format.index_path(shards[2]))
    leftover = pathlib.Path(cliutil.partial_path(shard_format.index_path(shards[2])))
    leftover.write_bytes(b"partial")
    again = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    run = again["decode"]["this_run"]
    assert (run["shards_written"], run["shards_reused"], run["videos_processed"]) == (2, 1, 4)
    assert shard.stat().st_mtime_ns == stamp
    assert again["subsets"] == first["subsets"]
    assert not leftover.exists()  # the rerun removed it
    # A video that changed on disk redoes its shard only.
    os.utime(good[0], ns=(1, 1))
    touched = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    assert touched["decode"]["this_run"]["shards_written"] == 1
    assert touched["decode"]["this_run"]["videos_processed"] == 2
    # Other settings: every shard is redone; a different shard count removes
    # the old files.
    changed = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=4, progress=False
    )
    assert changed["decode"]["this_run"]["shards_written"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json"]
        + [
            f"train-0000{i}-of-00002{suffix}"
            for i in (0, 1)
            for suffix in (".json", ".frames.tfrecord", ".index.tfrecord")
        ]
    )


def test_runner_survives_a_crashing_worker():
    jobs = [("x = 1",), ("import os; os._exit(3)",), ("y = 2",), ("z = 3",)]
    results = list(_Runner(2, exec).map(iter(jobs)))
    assert results == [None, {"error": CRASH_REASON}, None, None]


@pytest.mark.slow
def test_round_trip_pixels_match_a_direct_pyav_decode(videos, tmp_path):
    _, good, _ = videos
    dataset = VideoDataset(
        [VideoItem(p, i % 2, f"c{i % 2}", "test") for i, p in enumerate(good[:3])], ["c0", "c1"]
    )
    prepare_dataset(
        dataset, tmp_path / "out", short_side=None, workers=0, jpeg_quality=95, progress=False
    )
    views = clip_dataset(
        tmp_path / "out",
        "test",
        mode="test",
        clip_length=4,
        stride=3,
        crop_size=40,
        batch_size=2,
        num_clips=2,
        num_crops=3,
    )
    clips, labels, ids = (
        np.concatenate(parts) for parts in zip(*[[t.numpy() for t in batch] for batch in views])
    )
    assert clips.shape == (18, 4, 40, 40, 3) and clips.dtype == np.float32
    assert ids.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert labels.tolist() == [0] * 6 + [1] * 6 + [0] * 6
    for video_id, path in enumerate(good[:3]):
        frames, _ = decode_video(path)
        expected = normalize(eval_views(frames, 4, 3, 40, num_clips=2, num_crops=3))
        got = clips[ids == video_id]
        # JPEG (quality 95) error, in normalised units (1 level = 1/(255*0.27)).
        error = np.abs(got - expected) * 255 * 0.27
        assert error.mean() < 2.0, error.mean()
        assert np.percentile(error, 99) < 12


def test_prepare_cli_exit_codes_and_output(videos, tmp_path, capsys):
    root, _, bad = videos
    out = tmp_path / "cli"
    code = prepare_cli.main(
        [
            "--root",
            str(root),
            "--out",
            str(out),
            "--short-side",
            "24",
            "--workers",
            "1",
            "--test-fraction",
            "0.25",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0  # finished; the skipped files are listed
    assert "train: " in captured.out and "PyAV decode:" in captured.out
    assert f"{bad['text']}: not a video FFmpeg can read" in captured.err
    assert load_manifest(out)["short_side"] == 24
    assert (
        prepare_cli.main(
            [
                "--root",
                str(root),
                "--out",
                str(out),
                "--short-side",
                "24",
                "--workers",
                "1",
                "--test-fraction",
                "0.25",
                "--quiet",
                "--strict",
            ]
        )
        == 1
    )
    assert "error: --strict: 6 file(s) were skipped" in capsys.readouterr().err
    assert prepare_cli.main(["--layout", "ucf101", "--root", str(root), "--out", str(out)]) == 2
    assert "needs --annotations" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_cli.main(["--help"])
    assert "--videos-per-shard" in capsys.readouterr().out


def test_synth_cli(tmp_path, capsys):
    code = synth_cli.main(
        [
            "--out",
            str(tmp_path / "s"),
            "--classes",
            "3",
            "--per-class",
            "2",
            "--frames",
            "6",
            "--size",
            "32",
            "--preset",
            "hard",
            "--noise",
            "4",
            "--size-range",
            "0.1,0.2",
        ]
    )
    assert code == 0
    assert "Wrote 6 videos of 3 classes" in capsys.readouterr().out
    info = json.loads((tmp_path / "s" / "synth.json").read_text())
    assert info["noise"] == 4.0 and info["distractors"] == 3
    assert info["size_range"] == [0.1, 0.2]
    assert decode_video(next((tmp_path / "s" / "up").glob("*.mp4")))[0].shape == (6, 32, 32, 3)
    assert synth_cli.main(["--out", str(tmp_path / "t"), "--size", "33"]) == 2
    assert "Expected an even int" in capsys.readouterr().err


@pytest.mark.slow  # decodes the shared real clips
def test_real_clips_decode_and_prepare(real_clips_dir, tmp_path):
    # The codec column may hold unquoted commas: read the fixed columns from
    # both ends.
    with open(real_clips_dir / "labels.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    header, rows = lines[0], []
    for line in lines[1:]:
        row = dict(zip(header[:3], line[:3]))
        row.update(zip(header[-5:], line[-5:]))
        row["codec"] = ",".join(line[3:-5])
        rows.append(row)
    assert rows
    for row in rows:
        frames, fps = decode_video(real_clips_dir / row["file"], short_side=64, max_frames=40)
        assert frames.shape[0] == min(40, int(row["frames"])), row["file"]
        assert min(frames.shape[1:3]) == 64 and frames.shape[3] == 3
        assert fps == pytest.approx(float(row["fps"]), rel=0.01)
        expected = resized_shape(int(row["height"]), int(row["width"]), 64)
        assert frames.shape[1:3] == expected
    # The DivX file with non-UTF-8 metadata, through prepare.
    avi = next(r for r in rows if "non-UTF-8" in r["codec"])
    dataset = VideoDataset([VideoItem(str(real_clips_dir / avi["file"]), 0, "x", "test")], ["x"])
    manifest = prepare_dataset(
        dataset, tmp_path, short_side=64, workers=0, max_frames=20, progress=False
    )
    assert manifest["skipped"] == [] and manifest["subsets"]["test"]["frames"] == 20
