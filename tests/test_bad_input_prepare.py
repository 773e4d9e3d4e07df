"""`prepare` on messy real folders: bad input never costs good work.

Generated folders (tests/messy_files.py) with odd but valid videos, bad
files, odd names, links, a FIFO and non-video files; `prepare` must keep
every good video, skip every bad one with its reason, draw the split from
usable videos only, never touch files it did not write, survive Ctrl-C and
SIGKILL, and say what it did."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import messy_files as messy
import numpy as np
import pytest
from test_train_support import REPO, subprocess_env

from training import prepare as prepare_cli
from training.data import (
    load_folder,
    load_manifest,
    load_ucf101,
    prepare_dataset,
    shard_format,
    shard_paths,
)
from training.data.layouts import AnnotationError


def without_tf_log_level():
    """The environment of a user who never heard of TF_CPP_MIN_LOG_LEVEL."""
    env = subprocess_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


def written_videos(out):
    """`{path: (subset, label, frames)}` read back from the shards."""
    manifest = load_manifest(out)
    found = {}
    for subset in manifest["subsets"]:
        for shard in shard_paths(manifest, subset):
            for video in shard_format.read_videos(shard):
                found[video["path"]] = (
                    subset,
                    video["label"],
                    video["num_frames"],
                    video["height"],
                    video["width"],
                )
    return found


@pytest.fixture(scope="module")
def messy_root(tmp_path_factory):
    """root/a: good and odd-but-valid videos plus two bad files; root/b: good
    videos, a symbolic link to a folder of videos elsewhere, a damaged
    video, non-video files; root/c: only bad files; root/d: one good video
    and one bad file."""
    base = tmp_path_factory.mktemp("messy")
    root = base / "videos"
    good = {}
    for index in range(6):
        path = messy.write_h264(
            root / "a" / f"good_{index}.mp4", messy.moving_frames(12, seed=index)
        )
        good[str(path)] = 12
    for name, count in messy.odd_but_valid(root / "a").items():
        good[os.path.join(str(root / "a"), name)] = count
    for index in range(4):
        path = messy.write_h264(
            root / "b" / f"b_{index}.mp4", messy.moving_frames(10, seed=10 + index)
        )
        good[str(path)] = 10
    elsewhere = base / "elsewhere"
    for index in range(2):
        messy.write_h264(elsewhere / f"linked_{index}.mp4", messy.moving_frames(8, seed=20 + index))
        good[str(root / "b" / "linked" / f"linked_{index}.mp4")] = 8
    os.symlink(elsewhere, root / "b" / "linked")
    damaged = messy.write_damaged_mjpeg(
        root / "b" / "damaged.avi", messy.moving_frames(20), bad_frame=7
    )
    good[str(damaged)] = 19
    (root / "b" / "notes.txt").write_text("not a video")
    messy.write_h264(root / "b" / ".hidden.mp4", messy.moving_frames(4))
    messy.write_audio_only(root / "b" / "song.m4a", container_format="mp4")
    reference = messy.write_h264(base / "reference.mp4", messy.moving_frames(12))
    bad = {
        os.path.join(str(root / "c"), name): reason
        for name, reason in messy.bad_files(root / "c", reference).items()
    }
    (root / "a" / "empty.mp4").write_bytes(b"")
    messy.write_png_as(root / "a" / "image_renamed.avi")
    bad[str(root / "a" / "empty.mp4")] = "empty file"
    bad[str(root / "a" / "image_renamed.avi")] = "a PNG image"
    path = messy.write_h264(root / "d" / "only.mp4", messy.moving_frames(6))
    good[str(path)] = 6
    (root / "d" / "zero.mp4").write_bytes(b"")
    bad[str(root / "d" / "zero.mp4")] = "empty file"
    return root, good, bad


@pytest.mark.slow
def test_prepare_on_a_messy_folder_keeps_all_good_work(messy_root, tmp_path):
    root, good, bad = messy_root
    dataset = load_folder(root, test_fraction=0.25, seed=0)
    manifest = prepare_dataset(
        dataset, tmp_path / "out", short_side=32, workers=2, videos_per_shard=8, progress=False
    )
    written = written_videos(tmp_path / "out")
    # every good video, with every frame (the damaged one: the 19 decodable)
    assert {p: w[2] for p, w in written.items()} == good
    skipped = {entry["path"]: entry for entry in manifest["skipped"]}
    assert set(skipped) == set(bad)
    for path, phrase in bad.items():
        assert phrase in skipped[path]["reason"], (path, skipped[path])
        assert skipped[path]["subset"] is None  # found before the split
    # the split is drawn from usable videos: no bad file took a test slot
    tests = {
        name: sum(1 for p, w in written.items() if w[0] == "test" and f"/{name}/" in p)
        for name in "abd"
    }
    usable = {name: sum(1 for p in good if f"/{name}/" in p) for name in "abd"}
    assert tests == {
        name: int(usable[name] * 0.25 + 0.5) if usable[name] > 1 else 0 for name in "abd"
    }
    # the all-bad class stays (labels do not move) and is named
    assert manifest["class_names"] == ["a", "b", "c", "d"]
    assert {w[1] for p, w in written.items() if "/d/" in p} == {3}
    assert manifest["empty_classes"]["train"] == ["c"]
    assert set(manifest["empty_classes"]["test"]) == {"c", "d"}
    assert any("no usable video at all (c)" in line for line in manifest["warnings"])
    assert any("no test videos (d)" in line for line in manifest["warnings"])
    # damaged: kept and listed
    (entry,) = manifest["damaged"]
    assert entry["path"].endswith("damaged.avi") and entry["decoded"] == 19
    assert entry["expected"] == 20 and "after frame 7" in entry["reason"]
    # not taken: listed with the reason
    ignored = {pathlib.Path(e["path"]).name: e["reason"] for e in manifest["ignored"]}
    assert "not a video extension" in ignored["notes.txt"]
    assert "audio file" in ignored["song.m4a"]
    assert "hidden file" in ignored[".hidden.mp4"]
    # the phone video is stored upright (portrait)
    rotated = next(p for p in written if p.endswith("phone_rot90.mp4"))
    assert written[rotated][3:] == (43, 32)  # portrait, as filmed
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*-of-*.json")]
    entries = {v["path"]: v for info in sidecars for v in info["videos"]}
    assert entries[rotated]["rotation"] == 90


@pytest.mark.slow
def test_any_file_name_survives_to_the_shards_and_a_valid_manifest(messy_root, tmp_path, capsys):
    root, good, _ = messy_root
    manifest = prepare_dataset(
        load_folder(root), tmp_path / "out", short_side=32, workers=0, progress=False
    )
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_bytes().decode("utf-8"))
    name = os.fsdecode(os.path.join(os.fsencode(root / "a"), messy.NON_UTF8_NAME))
    assert name in written_videos(tmp_path / "out")
    # the sidecars name it: valid UTF-8 JSON (strict decoding), the byte as
    # an escape that json.loads turns back into the same name
    raw = b"".join(p.read_bytes() for p in (tmp_path / "out").glob("*-of-*.json"))
    assert b"caf\\udce9_latin1.mp4" in raw
    paths = {
        v["path"]
        for p in (tmp_path / "out").glob("*-of-*.json")
        for v in json.loads(p.read_bytes().decode("utf-8"))["videos"]
    }
    assert name in paths and os.fsencode(name).endswith(messy.NON_UTF8_NAME)
    assert any(messy.UNICODE_NAME in p for p in paths)
    assert on_disk["subsets"] == manifest["subsets"]
    # a bad file and an ignored file with non-UTF-8 names: in the manifest
    small = tmp_path / "small"
    messy.write_h264(small / "k" / "ok.mp4", messy.moving_frames(6))
    folder = os.fsencode(small / "k")
    with open(os.path.join(folder, b"bad\xff.mp4"), "wb") as handle:
        handle.write(b"text")
    with open(os.path.join(folder, b"notes\xfe.txt"), "wb") as handle:
        handle.write(b"text")
    code = prepare_cli.main(
        [
            "--root",
            str(small),
            "--out",
            str(tmp_path / "small_out"),
            "--short-side",
            "24",
            "--workers",
            "0",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()  # (pytest's capture encodes strictly)
    assert code == 0
    assert "bad\\xff.mp4: not a video FFmpeg can read" in captured.err
    assert "notes\\xfe.txt: extension .txt is not a video extension" in captured.err
    raw = (tmp_path / "small_out" / "manifest.json").read_bytes()
    on_disk = json.loads(raw.decode("utf-8"))
    assert [os.fsencode(e["path"])[-8:] for e in on_disk["skipped"]] == [b"bad\xff.mp4"]
    assert [os.fsencode(e["path"])[-10:] for e in on_disk["ignored"]] == [b"notes\xfe.txt"]


def test_prepare_never_deletes_or_overwrites_files_it_did_not_write(messy_root, tmp_path):
    root, _, _ = messy_root
    dataset = load_folder(root, test_fraction=0.0)
    dataset = type(dataset)([i for i in dataset.items if "/b/b_" in i.path], dataset.class_names)
    out = tmp_path / "out"
    out.mkdir()
    foreign = {
        "imagenet-00000-of-00004.tfrecord": b"x\n",
        "imagenet-00000-of-00004.tfrecord.json": b"{}\n",
        "notes.txt": b"mine\n",
    }
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    first = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=1, progress=False
    )
    assert len(first["subsets"]["train"]["shards"]) == 4
    # a different plan: its own old shards go, the foreign files stay
    prepare_dataset(dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False)
    names = sorted(p.name for p in out.glob("train-*.frames.tfrecord"))
    assert names == ["train-00000-of-00002.frames.tfrecord", "train-00001-of-00002.frames.tfrecord"]
    for name, data in foreign.items():
        assert (out / name).read_bytes() == data
    # a foreign file where prepare must write: an error, nothing touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "train-00000-of-00001.frames.tfrecord").write_bytes(b"someone's\n")
    with pytest.raises(FileExistsError, match="was not written by prepare"):
        prepare_dataset(
            dataset, other, short_side=24, workers=0, videos_per_shard=8, progress=False
        )
    assert sorted(p.name for p in other.iterdir()) == ["train-00000-of-00001.frames.tfrecord"]
    assert (other / "train-00000-of-00001.frames.tfrecord").read_bytes() == b"someone's\n"
    (other / "train-00000-of-00001.frames.tfrecord").unlink()
    (other / "manifest.json").write_text('{"mine": true}\n')
    with pytest.raises(FileExistsError, match="manifest.json exists and was not"):
        prepare_dataset(dataset, other, short_side=24, workers=0, progress=False)


def test_an_interrupted_shard_is_known_as_prepares_own(messy_root, tmp_path):
    """A shard renamed into place before its sidecar was finished (killed
    in between) is still prepare's: the rerun redoes it."""
    root, _, _ = messy_root
    dataset = load_folder(root, test_fraction=0.0)
    dataset = type(dataset)([i for i in dataset.items if "/b/b_" in i.path], dataset.class_names)
    out = tmp_path / "out"
    manifest = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    shard = out / manifest["subsets"]["train"]["shards"][0]
    sidecar = json.loads(pathlib.Path(f"{shard}.json").read_text())
    claim = {k: sidecar[k] for k in ("signature", "subset", "settings")}
    pathlib.Path(f"{shard}.json").write_text(json.dumps(dict(claim, state="writing")))
    (out / "manifest.json").unlink()
    again = prepare_dataset(
        dataset, out, short_side=24, workers=0, videos_per_shard=2, progress=False
    )
    assert again["decode"]["this_run"]["shards_written"] == 1
    assert again["decode"]["this_run"]["shards_reused"] == 1


def test_the_folder_split_is_stable_when_videos_are_added(tmp_path):
    root = tmp_path / "videos"
    (root / "x").mkdir(parents=True)
    for index in range(20):
        (root / "x" / f"v{index:02d}.mp4").write_bytes(b"x")
    before = {i.path: i.subset for i in load_folder(root, 0.3).items}
    for extra in range(5):
        (root / "x" / f"new{extra}.mp4").write_bytes(b"x")
        after = {i.path: i.subset for i in load_folder(root, 0.3).items}
        moved = [p for p in before if before[p] != after[p]]
        assert len(moved) <= 1, moved
        assert sum(s == "test" for s in after.values()) == int(len(after) * 0.3 + 0.5)
        before = after
    # the seed draws another split
    other = {i.path: i.subset for i in load_folder(root, 0.3, seed=1).items}
    assert other != before


def test_out_inside_root_is_not_listed_as_a_class(tmp_path, capsys):
    root = tmp_path / "videos"
    for name in ("p", "q"):
        for index in range(2):
            messy.write_h264(root / name / f"{name}{index}.mp4", messy.moving_frames(6, seed=index))
    out = root / "prepared"
    for _ in range(2):
        assert (
            prepare_cli.main(
                [
                    "--root",
                    str(root),
                    "--out",
                    str(out),
                    "--workers",
                    "0",
                    "--short-side",
                    "24",
                    "--quiet",
                ]
            )
            == 0
        )
        manifest = load_manifest(out)
        assert manifest["class_names"] == ["p", "q"]
    ignored = {e["path"]: e["reason"] for e in manifest["ignored"]}
    assert "the output folder (--out)" in ignored[str(out)]
    assert "Not taken: 1 file(s) or folder(s)" in capsys.readouterr().err


def test_prepare_reports_counts_that_are_true(messy_root, tmp_path, capsys):
    root, _, bad = messy_root
    code = prepare_cli.main(
        [
            "--root",
            str(root / "c"),
            "--out",
            str(tmp_path / "o"),
            "--layout",
            "folder",
            "--workers",
            "2",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    # root/c holds files, not class folders: a usage error naming the root
    assert code == 2 and "no class folders found" in captured.err
    only_bad = tmp_path / "only_bad"
    shutil.copytree(
        root / "c", only_bad / "c", symlinks=True, ignore=shutil.ignore_patterns("fifo.mp4")
    )
    code = prepare_cli.main(
        ["--root", str(only_bad), "--out", str(tmp_path / "o"), "--workers", "2", "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "PyAV decode: no frames decoded" in captured.out
    assert "None" not in captured.out
    assert "error: no usable video: all 8 listed file(s) were skipped" in captured.err
    single = tmp_path / "single"
    messy.write_h264(single / "k" / "one.mp4", messy.moving_frames(6))
    code = prepare_cli.main(
        ["--root", str(single), "--out", str(tmp_path / "s"), "--workers", "2", "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "1 videos in" in captured.out
    assert "in this process (--workers 2: never more than the videos to decode)" in captured.out
    assert "warning: 1 class(es) have no test videos (k)" not in captured.err  # no test subset


def test_a_video_listed_twice_or_in_train_and_test(tmp_path, capsys):
    root, lists = tmp_path / "UCF-101", tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 Archery\n")
    for name in ("v_Archery_g01_c01.avi", "v_Archery_g02_c01.avi"):
        (root / "Archery").mkdir(parents=True, exist_ok=True)
        (root / "Archery" / name).write_bytes(b"x")
    (lists / "trainlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi 1\nArchery/v_Archery_g01_c01.avi 1\n"
    )
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    dataset = load_ucf101(root, lists)
    assert [os.path.basename(i.path) for i in dataset.items] == [
        "v_Archery_g01_c01.avi",
        "v_Archery_g02_c01.avi",
    ]
    (entry,) = dataset.ignored
    assert "listed twice for train" in entry["reason"] and "line 2" in entry["reason"]
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    with pytest.raises(
        AnnotationError,
        match=r"testlist01.txt, line 1: .* listed for "
        r"test here and for train in .*line 1",
    ):
        load_ucf101(root, lists)
    assert (
        prepare_cli.main(
            [
                "--layout",
                "ucf101",
                "--root",
                str(root),
                "--annotations",
                str(lists),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("error: ")
        and "leaks the test set" in err
        and len(err.strip().splitlines()) == 1
    )


def test_unwritable_out_is_one_error_before_decoding(messy_root, tmp_path, capsys):
    root, _, _ = messy_root
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert prepare_cli.main(["--root", str(root), "--out", str(blocker / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_read_only_out_fails_before_decoding_without_a_traceback(tmp_path):
    """As a user who may not write --out (root runs it as `nobody`)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="readonly-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        messy.write_h264(base / "videos" / "k" / "a.mp4", messy.moving_frames(6))
        messy.write_h264(base / "videos" / "k" / "b.mp4", messy.moving_frames(6))
        out = base / "out"
        out.mkdir()
        os.chmod(out, 0o555)
        command = [
            sys.executable,
            "-m",
            "training.prepare",
            "--root",
            str(base / "videos"),
            "--out",
            str(out),
        ]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command
        result = subprocess.run(
            command,
            cwd=REPO,
            env=subprocess_env(HOME=str(base)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.chmod(base / "out", 0o755)
        shutil.rmtree(base)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: --out" in result.stderr and "cannot write there" in result.stderr
    assert "Permission denied" in result.stderr
    assert "prepare:" not in result.stderr and "check:" not in result.stderr


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory):
    """Two small videos and one big (1280x720, 240 frames: seconds to
    decode and JPEG-encode at full size)."""
    root = tmp_path_factory.mktemp("slow") / "videos"
    for index in range(2):
        messy.write_h264(root / "k" / f"a{index}.mp4", messy.moving_frames(6, seed=index))
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (240, 720, 1280, 3), np.uint8)
    messy.write_h264(root / "k" / "z_big.mp4", big)
    return root


def _children(pid):
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _prepare_command(root, out):
    return [
        sys.executable,
        "-m",
        "training.prepare",
        "--root",
        str(root),
        "--out",
        str(out),
        "--workers",
        "2",
        "--videos-per-shard",
        "1",
        "--short-side",
        "0",
        "--test-fraction",
        "0",
        "--jpeg-quality",
        "95",
    ]


def _finished_shards(out):
    done = 0
    for sidecar in pathlib.Path(out).glob("*-of-*.json"):
        try:
            done += "frames_bytes" in json.loads(sidecar.read_text())
        except (OSError, ValueError):
            pass
    return done


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_the_rerun_resumes(slow_root, tmp_path, capsys):
    out = tmp_path / "out"
    process = subprocess.Popen(
        _prepare_command(slow_root, out),
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while _finished_shards(out) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted; rerun the same command to resume." in err
    assert prepare_cli.main(_prepare_command(slow_root, out)[3:] + ["--quiet"]) == 0
    assert "2 shard(s) reused" in capsys.readouterr().out


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_prepare(slow_root, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        _prepare_command(slow_root, out),
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while _finished_shards(out) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = _children(process.pid)
    assert workers, "no worker processes found"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived the killed prepare by > 5 s"


@pytest.mark.slow
def test_the_prepare_command_on_a_messy_folder(messy_root, tmp_path):
    """The command line as a user runs it: exit 0, the odd names printed
    (not a traceback), no CUDA noise on a machine without a GPU."""
    from cliutil import has_nvidia_driver

    root, _, bad = messy_root
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.prepare",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--short-side",
            "32",
        ],
        cwd=REPO,
        env=without_tf_log_level(),
        capture_output=True,
        timeout=600,
    )
    out, err = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    assert result.returncode == 0, err
    assert "Traceback" not in err
    assert f"Skipped {len(bad)} file(s):" in err
    assert "image_renamed.avi: a PNG image, not a video" in err
    assert "warning: 1 class(es) have no usable video at all (c)" in err
    assert "manifest: " in out
    if not has_nvidia_driver():
        assert "cuInit" not in err and "cudart_stub" not in err and "absl::" not in err
