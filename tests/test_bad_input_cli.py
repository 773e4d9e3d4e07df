"""The command lines: a user error is one `error:` line and exit
status 2, never a traceback; `--help` does not import TensorFlow; the
serving client answers every input on its own; outputs are named per
input path."""

import json
import os
import pathlib
import subprocess
import sys

import messy_files as messy
import numpy as np
import pytest
import tiny_exports
from test_train_support import REPO, subprocess_env, tiny_config

CLIS = [
    "training.prepare",
    "training.synth",
    "training.train",
    "training.evaluate",
    "training.export",
    "training.explain",
    "serving.client",
    "serving.server",
    "demo",
]
if (pathlib.Path(REPO) / "training" / "convert.py").is_file():
    CLIS.append("training.convert")

HEAVY = ("tensorflow", "keras", "tensorflow_serving")


@pytest.mark.slow
def test_help_of_every_cli_answers_without_importing_tensorflow():
    probe = (
        "import runpy, sys\n"
        "sys.argv = [sys.argv[1], '--help']\n"
        "try:\n"
        "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n"
    )
    for module in CLIS:
        result = subprocess.run(
            [sys.executable, "-c", probe, module],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "HEAVY [] CODE 0" in result.stderr, (module, result.stderr[-2000:])
        assert "usage:" in result.stdout, module


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len([line for line in lines if line.startswith("error: ")]) == 1, err
    return next(line for line in lines if line.startswith("error: "))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Two prepared datasets: `motion` (4 synthetic motion classes) and
    `other` (other class names); and `skipped` whose every file is bad."""
    from training.data import load_folder, prepare_dataset, write_synthetic_dataset

    root = tmp_path_factory.mktemp("cli_data")
    dataset = write_synthetic_dataset(
        root / "motion_videos",
        classes=4,
        per_class=4,
        frames=12,
        size=32,
        seed=0,
        test_fraction=0.25,
    )
    prepare_dataset(dataset, root / "motion", short_side=32, workers=0, progress=False)
    for name in ("p", "q"):
        for index in range(2):
            messy.write_h264(
                root / "other_videos" / name / f"{index}.mp4",
                messy.moving_frames(12, 32, 32, seed=index),
            )
    prepare_dataset(
        load_folder(root / "other_videos", 0.5),
        root / "other",
        short_side=32,
        workers=0,
        progress=False,
    )
    for name in ("p", "q"):
        (root / "bad_videos" / name).mkdir(parents=True)
        (root / "bad_videos" / name / "empty.mp4").write_bytes(b"")
        (root / "bad_videos" / name / "text.mp4").write_text("not a video")
    prepare_dataset(
        load_folder(root / "bad_videos", 0.5),
        root / "skipped",
        short_side=32,
        workers=0,
        progress=False,
    )
    # `gap`: the motion classes, but all of `up`'s files bad except one
    gap = root / "gap_videos"
    write_synthetic_dataset(gap, classes=4, per_class=4, frames=12, size=32, seed=1)
    for index, video in enumerate(sorted((gap / "up").glob("*.mp4"))):
        if index:
            video.write_bytes(b"")
    prepare_dataset(load_folder(gap, 0.25), root / "gap", short_side=32, workers=0, progress=False)
    return root


@pytest.fixture(scope="module")
def finished_run(small_data, tmp_path_factory):
    from training.train import train

    run_dir = tmp_path_factory.mktemp("cli_run") / "run"
    config = tiny_config(
        str(small_data / "motion"),
        run_dir,
        epochs=1,
        steps_per_epoch=1,
        batch_size=2,
        clip_length=4,
        validation=False,
    )
    train(config)
    return run_dir, config


@pytest.mark.slow
def test_train_user_errors(small_data, finished_run, tmp_path, capsys):
    from training import train as train_cli

    run = tmp_path / "never"
    assert train_cli.main(["--data", str(tmp_path / "nothing"), "--run-dir", str(run)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "nothing" in line and "no such manifest" in line
    assert not run.exists()  # no empty run directory left behind
    assert (
        train_cli.main(
            ["--data", str(small_data / "skipped"), "--run-dir", str(run), "--epochs", "1"]
        )
        == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert "has no training videos: all 4 video(s) it lists were skipped" in line
    assert not run.exists()
    run_dir, config = finished_run
    args = [a for a in _flags(config) if a] + ["--epochs", "3"]
    assert train_cli.main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "is a finished run" in line and "epochs: saved 1, now 3" in line
    assert f"--init-from {run_dir}" in line


def _flags(config):
    from test_train_support import cli_args

    return cli_args(config)


@pytest.mark.slow
def test_evaluate_user_errors(small_data, finished_run, tmp_path, capsys):
    from training import evaluate as evaluate_cli

    run_dir, _ = finished_run
    base = ["--model", str(run_dir), "--out", str(tmp_path / "eval")]
    assert evaluate_cli.main(base + ["--data", str(small_data / "other")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "are not the model's" in line and "only the data has p, q" in line
    assert (
        evaluate_cli.main(base + ["--data", str(small_data / "motion"), "--subset", "validation"])
        == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert "Subset 'validation' is not in" in line and "train, test" in line
    assert evaluate_cli.main(base + ["--data", str(tmp_path / "none")]) == 2
    assert "no such manifest" in _one_error_line(capsys.readouterr().err)
    assert (
        evaluate_cli.main(
            ["--model", str(tmp_path / "no_run"), "--data", str(small_data / "motion")]
        )
        == 2
    )
    assert "no such model file or run directory" in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_evaluate_report_names_videos_by_path(small_data, finished_run, tmp_path, capsys):
    from training import evaluate as evaluate_cli

    run_dir, _ = finished_run
    assert (
        evaluate_cli.main(
            [
                "--model",
                str(run_dir),
                "--data",
                str(small_data / "motion"),
                "--num-clips",
                "1",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    paths = [row["path"] for row in report["videos"]]
    assert len(paths) == 4 and all(p.endswith(".mp4") and os.path.isfile(p) for p in paths)
    assert report["warnings"] == []
    capsys.readouterr()


@pytest.mark.slow
def test_classes_without_videos_are_warned_about_everywhere(
    small_data, finished_run, tmp_path, capsys
):
    from training import evaluate as evaluate_cli
    from training import train as train_cli
    from training.data import load_manifest

    manifest = load_manifest(small_data / "gap")
    assert manifest["empty_classes"] == {"test": ["up"]}
    assert manifest["subsets"]["train"]["per_class"]["up"] == 1
    run_dir, config = finished_run
    assert (
        evaluate_cli.main(
            [
                "--model",
                str(run_dir),
                "--data",
                str(small_data / "gap"),
                "--num-clips",
                "1",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: 1 class(es) have no test videos" in err and "(up)" in err
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["per_class"][3] == {"class": "up", "videos": 0, "top1": None}
    assert len(report["warnings"]) == 1
    gap_config = dict(
        config, data=str(small_data / "gap"), run_dir=str(tmp_path / "r"), validation=True
    )
    assert train_cli.main(_flags(gap_config)) == 0
    err = capsys.readouterr().err
    assert "warning: 1 class(es) have no test videos" in err
    assert "their validation accuracy is not measured" in err


def test_export_explain_synth_server_demo_user_errors(tmp_path, capsys):
    from demo import walkthrough
    from serving import client as client_cli
    from serving import server as server_cli
    from training import explain as explain_cli
    from training import synth as synth_cli
    from training.export import __main__ as export_cli

    missing = str(tmp_path / "runs" / "missing")
    assert export_cli.main(["--model", missing, "--export-base", str(tmp_path), "--name", "n"]) == 2
    assert "no such model file or run directory" in _one_error_line(capsys.readouterr().err)
    assert explain_cli.main(["--model", missing, "--video", "a.mp4", "--out", str(tmp_path)]) == 2
    assert "no such model file" in _one_error_line(capsys.readouterr().err)
    assert synth_cli.main(["--out", str(tmp_path / "s"), "--classes", "99"]) == 2
    assert "classes=99" in _one_error_line(capsys.readouterr().err)
    assert (
        server_cli.main(
            ["--model_base_path", "", "--port", "0", "--grpc_socket_path", str(tmp_path / "sock")]
        )
        == 2
    )
    # tensorflow_model_server's own wording (main.cc), one line, no traceback.
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("Failed to start server. Error: "), err
    assert client_cli.main(["--server", "no-port", "--model", "m", "a.mp4"]) == 2
    assert "Expected 'host:port'" in _one_error_line(capsys.readouterr().err)
    assert walkthrough.main(["--out", str(tmp_path / "d"), "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_user_errors_as_commands_print_one_line_and_no_cuda_noise(tmp_path):
    """As a user runs them: one `error:` line, exit 2, nothing else on a
    machine without an NVIDIA driver (no cuInit line)."""
    from cliutil import has_nvidia_driver

    env = subprocess_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    for command in (
        ["training.train", "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run")],
        [
            "training.export",
            "--model",
            str(tmp_path / "none"),
            "--export-base",
            str(tmp_path),
            "--name",
            "x",
        ],
        ["serving.client", "--model", "m", "--server", "x", "a.mp4"],
        ["serving.client", "--model", "m"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert not (tmp_path / "run").exists()
    # a command that loads TensorFlow and runs: no CUDA noise either
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cliutil; tf = cliutil.quiet_tensorflow(); "
            "print(tf.reduce_sum(tf.ones(3)).numpy())",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout.strip() == "3.0"
    if not has_nvidia_driver():
        assert result.stderr == "", result.stderr


# ---------------------------------------------------------------------------
# The serving client on messy inputs
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from serving.grpc_front import create_server
    from serving.manager import ModelManager
    from serving.model_config import single_model_config

    root = tmp_path_factory.mktemp("client")
    tiny_exports.export_tiny(
        root / "models", "tiny", seed=3, warmup=False, clip_format_fields={"num_clips": 2}
    )
    manager = ModelManager(
        single_model_config("tiny", root / "models" / "tiny"), poll_wait_seconds=0, warmup=False
    ).start()
    server, port = create_server(manager, port=0, workers=4)
    try:
        yield root, f"127.0.0.1:{port}"
    finally:
        server.stop(0)
        manager.stop()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    good = messy.write_h264(folder / "good.mp4", messy.moving_frames(16))
    odd = messy.odd_but_valid(folder / "odd")
    bad = messy.bad_files(folder / "bad", good)
    messy.write_audio_only(folder / "bad" / "audio_only.m4a", container_format="mp4")
    bad["audio_only.m4a"] = "no video stream"
    return folder, good, odd, bad


def _records(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.slow
def test_client_classifies_every_readable_file_and_reports_each_failure(served, inputs, capsys):
    from serving import client as client_cli

    _, address = served
    folder, good, odd, bad = inputs
    paths = [str(good)]
    for name in bad:
        paths += [
            str(folder / "bad" / name),
            str(folder / "odd" / sorted(odd)[len(paths) % len(odd)]),
        ]
    paths.append(str(folder / "missing.mp4"))
    code = client_cli.main(
        ["--server", address, "--model", "tiny", "--json", "--top-k", "2", *paths]
    )
    captured = capsys.readouterr()
    assert code == 1
    records = _records(captured.out)
    assert [r["path"] for r in records] == paths  # one record per input, in order
    for record in records:
        name = os.path.basename(record["path"])
        if name in bad:
            assert bad[name] in record["error"], record
            assert "top_k" not in record
        elif name == "missing.mp4":
            assert record["error"] == "no such file"
        else:
            assert "error" not in record and len(record["top_k"]) == 2, record
    assert "Traceback" not in captured.err
    # text: answers on stdout, each failure on its line on stderr
    code = client_cli.main(
        [
            "--server",
            address,
            "--model",
            "tiny",
            "--top-k",
            "1",
            str(good),
            str(folder / "bad" / "empty.mp4"),
            str(folder / "odd" / "anim.gif"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count("(model version 1, 2 views):") == 2
    assert f"{folder / 'bad' / 'empty.mp4'}: error: empty file (0 bytes)" in captured.err
    assert "1 of 3 input(s) failed." in captured.err


@pytest.mark.slow
def test_client_output_survives_an_interruption_and_odd_names(served, inputs, monkeypatch, capsys):
    from serving import client as client_cli

    _, address = served
    folder, good, odd, _ = inputs
    name = os.fsdecode(os.path.join(os.fsencode(folder / "odd"), messy.NON_UTF8_NAME))
    real_classify = client_cli.classify_video
    calls = []

    def classify(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_classify(*args, **kwargs)

    monkeypatch.setattr(client_cli, "classify_video", classify)
    code = client_cli.main(
        ["--server", address, "--model", "tiny", "--json", str(good), name, str(good)]
    )
    captured = capsys.readouterr()
    assert code == 130
    records = _records(captured.out)
    assert [r["path"] for r in records] == [str(good), name]  # answers kept
    assert all("top_k" in r for r in records)
    assert "interrupted" in captured.err and "Traceback" not in captured.err
    monkeypatch.setattr(client_cli, "classify_video", real_classify)
    assert client_cli.main(["--server", address, "--model", "tiny", name]) == 0
    assert "caf\\xe9_latin1.mp4 (model version 1" in capsys.readouterr().out


def test_client_classifies_rotated_videos_as_upright(served, tmp_path):
    from serving import client as client_cli

    _, address = served
    upright = messy.moving_frames(16, 64, 48)
    videos = [messy.write_h264(tmp_path / "upright.mp4", upright)] + [
        messy.write_rotated(tmp_path / f"r{d}.mp4", upright, d) for d in (90, 180, 270)
    ]
    with client_cli.ServingClient(address) as client:
        fmt = client.clip_format("tiny")
        views = [client_cli.video_views(str(v), fmt)[0].astype(int) for v in videos]
        results = [client_cli.classify_video(client, "tiny", str(v)) for v in videos]
    for other in views[1:]:
        assert other.shape == views[0].shape
        assert np.abs(other - views[0]).mean() < 6
    for result in results[1:]:
        assert result.top_k[0][0] == results[0].top_k[0][0]
        np.testing.assert_allclose(result.probabilities, results[0].probabilities, atol=0.05)


def test_client_on_real_clips_among_bad_files(served, inputs, real_clips_dir, capsys):
    from serving import client as client_cli

    _, address = served
    folder, _, _, bad = inputs
    clips = sorted(str(p) for p in real_clips_dir.iterdir() if p.suffix != ".csv")
    paths = [clips[0], str(folder / "bad" / "image_renamed.avi"), clips[-1]]
    assert client_cli.main(["--server", address, "--model", "tiny", "--json", *paths]) == 1
    records = _records(capsys.readouterr().out)
    assert ["error" in r for r in records] == [False, True, False]
    assert "a PNG image" in records[1]["error"]


def test_explain_writes_one_set_of_files_per_input_path(tmp_path, capsys):
    from clipspec.explanation_files import output_names
    from training import explain as explain_cli

    names = output_names(["x/a/clip.mp4", "x/b/clip.mp4", "y/other.avi", "y/other.avi"])
    assert names == {"x/a/clip.mp4": "a__clip", "x/b/clip.mp4": "b__clip", "y/other.avi": "other"}
    assert len(set(output_names(["p/a/c.mp4", "q/a/c.mp4"]).values())) == 2
    model = tiny_exports.tiny_model(3, (4, 16, 16, 3))
    model.save(tmp_path / "model.keras")
    videos = []
    for folder in ("one", "two"):
        videos.append(
            str(
                messy.write_h264(
                    tmp_path / folder / "clip.mp4", messy.moving_frames(8, seed=len(videos))
                )
            )
        )
    out = tmp_path / "out"
    assert (
        explain_cli.main(
            ["--model", str(tmp_path / "model.keras"), "--video", *videos, "--out", str(out)]
        )
        == 0
    )
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "one__clip_block.gif",
        "one__clip_explain.json",
        "one__clip_explain.png",
        "two__clip_block.gif",
        "two__clip_explain.json",
        "two__clip_explain.png",
    ]
    for stem, video in zip(("one__clip", "two__clip"), videos):
        assert json.loads((out / f"{stem}_explain.json").read_text())["video"] == video
    assert (
        explain_cli.main(
            [
                "--model",
                str(tmp_path / "model.keras"),
                "--video",
                videos[0],
                "--out",
                str(out),
                "--method",
                "nope",
            ]
        )
        == 2
    )
    assert "Unknown explanation method 'nope'" in _one_error_line(capsys.readouterr().err)
