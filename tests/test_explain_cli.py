"""End to end: `python -m training.explain` on a planted model and a real
video file (encoded with PyAV, decoded by the project's decoder)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import av
import keras
import numpy as np
import pytest
from PIL import Image

from clipspec import render as viz
from clipspec.explanation_files import block_agreement
from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, ClipFormat
from keras_classreg import ClassRegModel, ClassRegularization
from training import explain as cli

T, S = 4, 32


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A model whose only block reads the clip's RGB channels with class
    weights red / green / blue, saved as a run directory (best.keras +
    config.json), and a video with a big red square top-left and a small
    green one bottom-right."""
    root = tmp_path_factory.mktemp("explain_cli")
    classifier = keras.layers.Dense(3, activation="softmax", name="classifier")
    classifier.build((None, 3))
    classifier.set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    inputs = keras.Input((T, S, S, 3), name="clips")
    x = ClassRegularization(
        0.0, classifier, projection_initializer="identity", name="rgb_classreg"
    )(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = ClassRegModel(inputs, classifier(x))
    run = root / "run"
    run.mkdir()
    model.save(run / "best.keras")
    (run / "config.json").write_text(
        json.dumps(
            {
                "class_names": ["red", "green", "blue"],
                "stride": 1,
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
            }
        )
    )

    video = root / "squares.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for _ in range(12):
            frame = np.zeros((48, 48, 3), "uint8")
            frame[4:22, 4:22] = (255, 0, 0)
            frame[30:42, 30:42] = (0, 255, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return run / "best.keras", video


def _last_gif_frame(path):
    with Image.open(path) as gif:
        gif.seek(gif.n_frames - 1)
        return np.asarray(gif.convert("RGB")).astype(int), gif.n_frames, gif.size


def test_cli_writes_pictures_and_prints_block_guesses(planted, tmp_path, capsys):
    model_path, video = planted
    out = tmp_path / "out"
    code = cli.main(
        [
            "--model",
            str(model_path),
            "--video",
            str(video),
            "--out",
            str(out),
            "--frames",
            "3",
            "--scale",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rgb_classreg" in printed and "maps for class: red" in printed
    summary = json.loads((out / "squares_explain.json").read_text())
    assert summary["predicted_class"] == "red"
    assert summary["maps_for_class"] == "red"
    assert [b["block"] for b in summary["blocks"]] == ["rgb_classreg"]
    assert summary["blocks"][0]["guess"] == "red"
    assert 1 / 3 < summary["blocks"][0]["confidence"] < 1
    with Image.open(out / "squares_explain.png") as png:
        assert png.format == "PNG"
        assert png.size == viz.grid_size(S, S, num_blocks=1, num_frames=3, scale=2, title_lines=2)
    frame, count, size = _last_gif_frame(out / "squares_rgb_classreg.gif")
    assert count == T and size == viz.animation_size(S, S, 2)
    top = viz.GIF_CAPTION_LINES * viz.LINE_HEIGHT + 4
    tile = frame[top : top + 2 * S, : 2 * S]
    # The red square's corner of the crop is hot (JET red), the empty
    # middle-left is cold (JET blue).
    hot, cold = tile[10:20, 10:20].mean((0, 1)), tile[10:20, 40:50].mean((0, 1))
    assert hot[0] > hot[2] + 60 and cold[2] > cold[0] + 60


def test_cli_requested_class_moves_the_evidence(planted, tmp_path, capsys):
    model_path, video = planted
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "--model",
                str(model_path),
                "--video",
                str(video),
                "--out",
                str(out),
                "--class",
                "green",
                "--scale",
                "2",
                "--focus",
            ]
        )
        == 0
    )
    assert "maps for class: green" in capsys.readouterr().out
    summary = json.loads((out / "squares_explain.json").read_text())
    assert summary["predicted_class"] == "red"
    assert summary["maps_for_class"] == "green"
    frame, _, _ = _last_gif_frame(out / "squares_rgb_classreg.gif")
    top = viz.GIF_CAPTION_LINES * viz.LINE_HEIGHT + 4
    tile = frame[top : top + 2 * S, : 2 * S]
    # The green square (bottom-right of the 32 px centre crop) is hot now.
    hot = tile[46:56, 46:56].mean((0, 1))
    assert hot[0] > hot[2] + 60


def test_cli_reports_bad_arguments(planted, tmp_path, capsys):
    model_path, video = planted
    base = ["--model", str(model_path), "--video", str(video), "--out", str(tmp_path)]
    assert cli.main(base + ["--class", "purple"]) == 2
    assert "Unknown class 'purple'. Expected one of: red, green, blue" in (capsys.readouterr().err)
    assert cli.main(base + ["--block", "stage9"]) == 2
    assert "The model's blocks: rgb_classreg" in capsys.readouterr().err
    assert (
        cli.main(
            ["--model", str(tmp_path / "none.keras"), "--video", str(video), "--out", str(tmp_path)]
        )
        == 2
    )
    assert "no such model file" in capsys.readouterr().err
    assert cli.main(base + ["--class-names", "a,b"]) == 2
    assert "2 class names for a model with 3 classes" in capsys.readouterr().err


@pytest.mark.slow
def test_serving_client_saves_the_exported_explain_maps(planted, tmp_path, capsys):
    """Export the planted model, serve it in-process (TF Serving API), and
    run `python -m serving.client --explain DIR`: the served maps are the
    library's maps of the same clip, and the pictures are written."""
    from clipspec.sampling import normalize
    from keras_classreg.explanations import explain
    from serving import client as client_cli
    from serving.grpc_front import create_server
    from serving.manager import ModelManager
    from serving.model_config import single_model_config
    from training.export import export_version

    model_path, video = planted
    model = keras.saving.load_model(model_path)
    fmt = ClipFormat(
        clip_length=T, crop_size=S, stride=1, num_clips=1, class_names=["red", "green", "blue"]
    )
    export_version(model, tmp_path / "models", "rgb", fmt, warmup=False)
    manager = ModelManager(
        single_model_config("rgb", tmp_path / "models" / "rgb"), poll_wait_seconds=0, warmup=False
    ).start()
    server, port = create_server(manager, port=0, workers=2)
    try:
        out = tmp_path / "served"
        # stride and views come from the model's clip format
        code = client_cli.main(
            ["--server", f"127.0.0.1:{port}", "--model", "rgb", "--explain", str(out), str(video)]
        )
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert "rgb_classreg: guess red" in printed
        summary = json.loads((out / "squares_explain.json").read_text())
        assert summary["maps_for_class"] == "red"
        assert summary["blocks"][0]["guess"] == "red"
        for name in ("squares_explain.png", "squares_rgb_classreg.gif"):
            assert (out / name).stat().st_size > 0
        with Image.open(out / "squares_explain.png") as png:
            assert png.size[0] == viz.LABEL_WIDTH + 4 * S * 5  # 160 px tiles

        views, _, _ = client_cli.video_views(str(video), fmt)
        with client_cli.ServingClient(f"127.0.0.1:{port}") as client:
            served = client.predict("rgb", views, signature="explain")
        local = explain(model, normalize(views, DEFAULT_MEAN, DEFAULT_STD))
        np.testing.assert_allclose(served["maps"][:, 0], local.maps["rgb_classreg"], atol=1e-5)
        assert served["block_names"].tolist() == [[b"rgb_classreg"]]
        assert served["class_name"].tolist() == [b"red"]
    finally:
        server.stop(0)
        manager.stop()


@pytest.mark.slow  # every shared real clip
def test_cli_on_every_shared_real_clip(planted, real_clips_dir, tmp_path, capsys):
    """Real codecs (MPEG-4, DivX/Xvid AVI, H.264 MP4/MKV): one picture each."""
    model_path, _ = planted
    videos = sorted(p for p in real_clips_dir.iterdir() if p.suffix in (".mp4", ".avi", ".mkv"))
    assert len(videos) >= 7
    for video in videos:
        out = tmp_path / video.stem
        code = cli.main(
            ["--model", str(model_path), "--video", str(video), "--out", str(out), "--scale", "1"]
        )
        assert code == 0, capsys.readouterr().err
        with Image.open(out / f"{video.stem}_explain.png") as png:
            assert png.size == viz.grid_size(S, S, 1, T, 1, 2)
        with Image.open(out / f"{video.stem}_rgb_classreg.gif") as gif:
            assert gif.size == viz.animation_size(S, S, 1)
    capsys.readouterr()


def test_cli_several_videos_reports_failures_and_block_agreement(planted, tmp_path, capsys):
    model_path, video = planted
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = tmp_path / "out"
    code = cli.main(
        [
            "--model",
            str(model_path),
            "--out",
            str(out),
            "--video",
            str(video),
            str(broken),
            str(copy),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.mp4" in captured.err and "1 of 3 videos failed" in captured.err
    assert (out / "squares_explain.png").is_file()
    assert (out / "copy_explain.png").is_file()
    assert not (out / "broken_explain.png").exists()
    assert "over 2 clips: rgb_classreg 100%" in captured.out


def test_block_agreement_counts_guesses_equal_to_the_prediction():
    def summary(predicted, guesses):
        return {
            "predicted_class": predicted,
            "blocks": [{"block": f"b{i}", "guess": g} for i, g in enumerate(guesses)],
        }

    summaries = [
        summary("run", ["jump", "run"]),
        summary("jump", ["jump", "run"]),
        summary("run", ["run", "run"]),
        summary("sit", ["run", "sit"]),
    ]
    # b0: jump!=run, jump==jump, run==run, run!=sit; b1: 3 of 4 equal.
    assert block_agreement(summaries) == {"b0": 0.5, "b1": 0.75}
    assert block_agreement([]) == {}
