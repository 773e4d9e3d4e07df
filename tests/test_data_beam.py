"""`prepare` on Apache Beam (DirectRunner): the same shards as the local
pool, resumable after a kill, bad videos reported, output on a
non-local TensorFlow filesystem (`ram://`); and the runner choice on the
command line. Tests that run Beam skip when it is not installed (the
`[beam]` extra: part of `[dev]`)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from test_train_support import REPO, subprocess_env

from training import prepare as prepare_cli
from training.data import (
    beam_runner,
    clip_dataset,
    load_folder,
    load_manifest,
    shard_format,
    shard_paths,
    write_synthetic_dataset,
)
from training.data.layouts import VideoDataset, VideoItem
from training.data.shard_writer import CRASH_REASON, isolated_decoder, prepare_dataset

needs_beam = pytest.mark.skipif(
    not beam_runner.available(), reason="Apache Beam is not installed (the [beam] extra)"
)
SETTINGS = dict(short_side=24, workers=0, videos_per_shard=2, progress=False)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam") / "videos"
    return write_synthetic_dataset(
        root, classes=2, per_class=3, frames=8, size=32, seed=5, test_fraction=0.34
    )


def comparable(manifest):
    """The manifest without what differs between runs (timings, the run)."""
    return {key: value for key, value in manifest.items() if key != "decode"}


def same_shards(a, b, manifest):
    """Both folders hold the same videos (fields and JPEG bytes) and give
    the same decoded test-mode clips."""
    for subset in manifest["subsets"]:
        for left, right in zip(
            shard_paths(load_manifest(a), subset), shard_paths(load_manifest(b), subset)
        ):
            assert list(shard_format.read_videos(left)) == list(shard_format.read_videos(right))
        clips = [
            [
                t.numpy()
                for batch in clip_dataset(
                    folder, subset, mode="test", clip_length=4, crop_size=16, num_clips=2
                )
                for t in batch
            ]
            for folder in (a, b)
        ]
        assert len(clips[0]) == len(clips[1]) > 0
        for x, y in zip(*clips):
            np.testing.assert_array_equal(x, y)


@needs_beam
@pytest.mark.slow
def test_direct_runner_writes_what_the_local_pool_writes_also_on_ram(videos, tmp_path):
    """DirectRunner in this process writing to `ram://` (TensorFlow's
    in-memory filesystem, not POSIX: everything goes through tf.io.gfile)."""
    local = prepare_dataset(videos, tmp_path / "local", **SETTINGS)
    out = "ram://beam-prepared"
    beam = prepare_dataset(videos, out, runner="beam", **SETTINGS)
    assert beam["decode"]["this_run"]["runner"] == "beam"
    assert comparable(beam) == comparable(local)
    assert json.loads(tf.io.gfile.GFile(f"{out}/manifest.json").read()) == beam
    same_shards(tmp_path / "local", out, local)
    # Nothing left under a temporary name.
    assert not [n for n in tf.io.gfile.listdir(out) if ".partial-" in n]
    again = prepare_dataset(videos, out, runner="beam", **SETTINGS)
    run = again["decode"]["this_run"]
    assert (run["shards_written"], run["videos_processed"]) == (0, 0)


@needs_beam
@pytest.mark.slow
def test_direct_runner_on_the_real_clips(real_clips_dir, tmp_path):
    items = sorted(
        p for p in real_clips_dir.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv")
    )
    dataset = VideoDataset([VideoItem(str(p), 0, "x", "train") for p in items], ["x"])
    settings = dict(SETTINGS, short_side=32, max_frames=12)
    local = prepare_dataset(dataset, tmp_path / "local", **settings)
    beam = prepare_dataset(dataset, tmp_path / "beam", runner="beam", **settings)
    assert comparable(beam) == comparable(local)
    same_shards(tmp_path / "local", tmp_path / "beam", local)


@needs_beam
@pytest.mark.slow
def test_a_bad_video_costs_no_other_shard(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    items = [*videos.items[:3], VideoItem(str(bad), 0, videos.class_names[0], "train")]
    items.append(VideoItem(str(empty), 1, videos.class_names[1], "test"))
    dataset = VideoDataset(items, videos.class_names)
    local = prepare_dataset(dataset, tmp_path / "local", **SETTINGS)
    beam = prepare_dataset(dataset, tmp_path / "beam", runner="beam", **SETTINGS)
    assert comparable(beam) == comparable(local)
    assert sorted(s["path"] for s in beam["skipped"]) == sorted([str(bad), str(empty)])
    assert sum(s["videos"] for s in beam["subsets"].values()) == 3


@needs_beam
@pytest.mark.slow
def test_a_killed_beam_run_resumes(tmp_path):
    root = tmp_path / "videos"
    write_synthetic_dataset(root, classes=2, per_class=4, frames=8, size=32, seed=6)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "training.prepare",
        "--root",
        str(root),
        "--out",
        str(out),
        "--short-side",
        "24",
        "--workers",
        "0",
        "--videos-per-shard",
        "1",
        "--runner",
        "beam",
        "--quiet",
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while finished_shards(out) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher, Beam and the decoders
    process.wait()
    done = finished_shards(out)
    assert 2 <= done < 8, "the run was not killed half-way"
    assert not (out / "manifest.json").exists()
    assert prepare_cli.main(command[3:]) == 0
    manifest = load_manifest(out)
    run = manifest["decode"]["this_run"]
    assert run["shards_reused"] >= done and run["shards_reused"] + run["shards_written"] == 8
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    local = prepare_dataset(
        load_folder(root), tmp_path / "local", **dict(SETTINGS, videos_per_shard=1)
    )
    assert comparable(manifest) == comparable(local) | {"root": manifest["root"]}
    same_shards(tmp_path / "local", out, local)


def finished_shards(out):
    done = 0
    for sidecar in pathlib.Path(out).glob("*-of-*.json"):
        try:
            done += "frames_bytes" in json.loads(sidecar.read_text())
        except (OSError, ValueError):
            pass
    return done


def test_the_isolated_decoder_survives_a_crash():
    """What each Beam task decodes with: one child process, a crash costs
    only its job."""
    jobs = [("x = 1",), ("import os; os._exit(3)",), ("y = 2",)]
    assert list(isolated_decoder(exec).map(iter(jobs))) == [None, {"error": CRASH_REASON}, None]


def test_runner_choice_on_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(beam_runner, "available", lambda: False)
    args = ["--root", str(tmp_path), "--out", str(tmp_path / "out"), "--runner", "beam"]
    assert prepare_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runner beam needs Apache Beam")
    assert "keras-classreg[beam]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert prepare_cli.main(args[:4] + ["--beam-options", "--runner=DirectRunner"]) == 2
    assert "--beam-options needs --runner beam" in capsys.readouterr().err
    with pytest.raises(ImportError, match=r"keras-classreg\[beam\]"):
        prepare_dataset(VideoDataset([], []), tmp_path / "x", runner="beam")
    with pytest.raises(ValueError, match="Expected 'local' or 'beam'"):
        prepare_dataset(VideoDataset([], []), tmp_path / "x", runner="spark")


def test_a_retried_task_never_shows_a_half_written_shard(videos, tmp_path, monkeypatch):
    """A Beam task that fails in the middle of its shard (as a worker lost
    mid-task) leaves nothing under the shard's names; the runner's retry
    writes the whole shard. (The task's body, without Beam.)"""
    from training.data import shard_writer

    out = str(tmp_path / "out")
    settings = {"short_side": 24, "jpeg_quality": 90, "max_frames": None}
    shard = shard_writer._plan(videos, settings, 3)[0]
    original = shard_format.ShardWriter.add

    def fail_on_the_second_video(self, *args, **kwargs):
        if self._columns["video_id"]:
            raise RuntimeError("worker lost")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(shard_format.ShardWriter, "add", fail_on_the_second_video)
    os.makedirs(out)
    with pytest.raises(RuntimeError, match="worker lost"):
        shard_writer.write_shard_task(out, settings, shard)
    assert shard_writer.finished(out, shard) is None
    assert sorted(os.listdir(out)) == [f"{shard.name}.json"]  # the claim, nothing else
    assert json.loads(pathlib.Path(out, f"{shard.name}.json").read_text())["state"] == "writing"
    monkeypatch.setattr(shard_format.ShardWriter, "add", original)
    assert shard_writer.write_shard_task(out, settings, shard) == shard.name
    info = shard_writer.finished(out, shard)
    assert info is not None and len(info["videos"]) == 3
    assert not [name for name in os.listdir(out) if name.startswith(".partial-")]
