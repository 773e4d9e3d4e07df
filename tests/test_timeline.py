"""The timeline of video files (serving.timeline, serving.client --timeline):
windows, segments, JSON Lines, WebVTT, PNG, the TensorFlow-free Predict
wire format, bounded memory. A stub server (tests/timeline_stubs.py)
labels each clip by its dominant colour, so a generated video whose colour
changes at known times has a known timeline."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from timeline_stubs import StubModel, grpc_stub, rest_stub, write_colour_video

from clipspec.stream import FrameStream, StreamFrame, is_live
from serving import predict_wire
from serving.timeline import Segmenter, WindowCutter, WindowResult

PARTS = [(3, "red"), (3, "blue"), (3, "green")]
FPS = 10
# The stub's clip: 4 frames every 2 -> 7 frames, 0.7 s at 10 fps; the default
# hop is half of it.
HOP = 0.35


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("timeline") / "colours.mp4"
    changes = write_colour_video(path, PARTS, fps=FPS)
    return path, changes


def run_client(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "serving.client", "--model", "stub", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


# ----------------------------------------------------------------------
# Wire format
# ----------------------------------------------------------------------
def test_predict_request_bytes_parse_as_tf_serving_protos():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    clips = np.arange(2 * 3 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 3, 4, 5, 3)
    data = predict_wire.encode_predict_request(
        "m",
        {"clips": clips, "i": np.array([-7, 2**31 - 1], np.int32), "s": np.array(["é", b"b"])},
        signature="sig",
        version=12,
        output_filter=["probabilities"],
    )
    request = predict_pb2.PredictRequest.FromString(data)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("m", "sig")
    assert request.model_spec.version.value == 12
    assert list(request.output_filter) == ["probabilities"]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["clips"]), clips)
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["i"]), [-7, 2**31 - 1])
    assert tf.make_ndarray(request.inputs["s"]).tolist() == ["é".encode(), b"b"]


def test_predict_response_protos_decode_in_every_field_form():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.version.value = 5
    probabilities = np.array([[0.25, 0.75]], np.float32)
    response.outputs["content"].CopyFrom(tf.make_tensor_proto(probabilities))
    typed = response.outputs["typed"]  # TF Serving's Tensor::AsProtoField form
    typed.dtype = 1
    typed.tensor_shape.dim.add().size = 2
    typed.float_val.extend([0.5, -1.5])
    ints = response.outputs["ints"]
    ints.dtype = 3
    ints.tensor_shape.dim.add().size = 3
    ints.int_val.extend([-1, 0, 7])
    text = response.outputs["text"]
    text.dtype = 7
    text.string_val.append(b"{}")
    outputs, version = predict_wire.decode_predict_response(response.SerializeToString())
    assert version == 5
    np.testing.assert_array_equal(outputs["content"], probabilities)
    np.testing.assert_array_equal(outputs["typed"], [0.5, -1.5])
    assert outputs["ints"].dtype == np.int32 and outputs["ints"].tolist() == [-1, 0, 7]
    assert outputs["text"].shape == () and outputs["text"].item() == b"{}"


def test_garbage_response_bytes_raise_wire_error():
    with pytest.raises(predict_wire.WireError):
        predict_wire.decode_predict_response(b"\x0a\xff\xff\xff")


# ----------------------------------------------------------------------
# Windows and segments
# ----------------------------------------------------------------------
def frames(count, fps=10.0, shape=(4, 6, 3), start=0):
    for i in range(start, start + count):
        yield StreamFrame(np.full(shape, i % 256, np.uint8), i / fps, float(i), i)


def test_windows_start_every_hop_and_the_tail_is_covered():
    cutter = WindowCutter(clip_length=4, stride=2, hop=0.35)
    windows = [w for f in frames(30) if (w := cutter.add(f)) is not None]
    windows.append(cutter.finish())
    starts = [w.start for w in windows]
    assert starts[:4] == pytest.approx([0.0, 0.4, 0.8, 1.2])
    assert [w.index for w in windows] == list(range(len(windows)))
    assert windows[-1].end == pytest.approx(3.0)  # the last frame (2.9 s) + one period
    assert windows[0].clip[:, 0, 0, 0].tolist() == [0, 2, 4, 6]
    assert cutter.finish() is None


def test_a_stream_shorter_than_a_window_gives_one_looped_window():
    cutter = WindowCutter(clip_length=4, stride=2, hop=0.35)
    assert all(cutter.add(f) is None for f in frames(3))
    window = cutter.finish()
    assert window.clip[:, 0, 0, 0].tolist() == [0, 2, 1, 0]  # indices wrap (loop)
    assert (window.start, window.end) == pytest.approx((0.0, 0.3))


def test_a_frame_size_change_starts_the_windows_afresh():
    cutter = WindowCutter(clip_length=2, stride=1, hop=0.1)
    before = [w for f in frames(5) if (w := cutter.add(f)) is not None]
    after = [w for f in frames(5, shape=(8, 6, 3), start=5) if (w := cutter.add(f)) is not None]
    assert cutter.restarts == 1
    assert {w.clip.shape[1:3] for w in before} == {(4, 6)}
    assert {w.clip.shape[1:3] for w in after} == {(8, 6)}
    assert after[0].start == pytest.approx(0.5)


def result(start, end, label, probability=0.8):
    window = type("W", (), {"start": start, "end": end, "centre": (start + end) / 2})()
    return WindowResult(window, None, [(label, probability)], 1, 0.0)


def test_segments_merge_equal_labels_with_boundaries_between_window_centres():
    segmenter = Segmenter()
    labels = ["a", "a", "a", "b", "b", "a"]
    closed = [segmenter.add(result(i, i + 2, label)) for i, label in enumerate(labels)]
    segments = [s for s in closed if s is not None] + [segmenter.finish()]
    assert [(s.label, s.start, s.end, s.windows) for s in segments] == [
        ("a", 0, 3.5, 3),
        ("b", 3.5, 5.5, 2),
        ("a", 5.5, 7, 1),
    ]


# ----------------------------------------------------------------------
# Streamed decoding
# ----------------------------------------------------------------------
def test_frame_stream_gives_times_and_scaled_frames(colour_video):
    path, _ = colour_video
    stream = FrameStream(path, short_side=16)
    seen = list(stream)
    assert len(seen) == 90 and stream.fps == pytest.approx(FPS)
    assert [f.time for f in seen[:3]] == pytest.approx([0.0, 0.1, 0.2])
    assert seen[0].image.shape == (16, 24, 3)
    assert seen[0].image[..., 0].mean() > 150  # red first
    assert not is_live(path) and is_live("udp://127.0.0.1:1") and is_live("-")


def test_only_the_frames_windows_use_are_converted(colour_video):
    """Frames are converted (colours, scaling) on first use: with stride 2
    and a hop of 4 frames, the odd frames are decoded but not converted
    (but for the last window's); those converted equal `decode_video`'s."""
    from clipspec.decode import decode_video

    path, _ = colour_video
    frames, windows = [], []
    cutter = WindowCutter(clip_length=4, stride=2, hop=0.4)
    for frame in FrameStream(path, short_side=16):
        assert frame.shape == (16, 24, 3)
        frames.append(frame)
        windows.append(cutter.add(frame))
    windows = [w for w in [*windows, cutter.finish()] if w is not None]
    converted = [i for i, f in enumerate(frames) if not callable(f._image)]
    # 21 windows from frames 0, 4, ..., 80 (7 frames each, every other one
    # taken: frames 0-86 even), and the last one of frames 83-89
    assert len(windows) == 22 and len(converted) == 48
    assert [i for i in converted if i % 2] == [83, 85, 87, 89]
    decoded, _ = decode_video(str(path), short_side=16)
    for i in converted:
        np.testing.assert_array_equal(frames[i].image, decoded[i])


# ----------------------------------------------------------------------
# Command line, gRPC and REST
# ----------------------------------------------------------------------
def check_timeline(lines, path, changes):
    windows = [r for r in lines if r["kind"] == "window"]
    segments = [r for r in lines if r["kind"] == "segment"]
    assert set(windows[0]) >= {"source", "kind", "start", "end", "top_k"}
    assert set(segments[0]) >= {"source", "kind", "start", "end", "class", "probability"}
    assert {r["source"] for r in lines} == {str(path)}
    assert set(windows[0]["top_k"][0]) == {"class", "probability"}
    # windows in order, covering the video, every hop (±1 frame)
    starts = [w["start"] for w in windows]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert windows[-1]["end"] == pytest.approx(9.0)
    assert np.diff(starts).max() <= HOP + 0.1 + 1e-6
    assert [s["class"] for s in segments] == ["red", "blue", "green"]
    assert segments[0]["start"] == 0.0 and segments[-1]["end"] == pytest.approx(9.0)
    for segment, change in zip(segments, changes):
        assert abs(segment["end"] - change) <= HOP
    # a window's label is the colour at its centre, away from the changes
    for window in windows:
        centre = (window["start"] + window["end"]) / 2
        if min(abs(centre - c) for c in changes) > 0.4:
            colour = PARTS[int(centre // 3)][1]
            assert window["top_k"][0]["class"] == colour


def test_timeline_json_lines_over_grpc_with_webvtt_and_plot(colour_video, tmp_path):
    import av
    import webvtt

    path, changes = colour_video
    vtt, png = tmp_path / "t.vtt", tmp_path / "t.png"
    with grpc_stub() as (address, model):
        run = run_client(
            "--server", address, "--timeline", "--json", path, "--vtt", vtt, "--plot", png
        )
    assert run.returncode == 0, run.stderr
    check_timeline(records(run.stdout), path, changes)
    assert {shape[2:] for shape in model.shapes} == {(16, 24, 3)}  # frames at the short side
    captions = webvtt.read(str(vtt))
    assert [c.text for c in captions] == ["red 0.82", "blue 0.82", "green 0.80"]
    assert captions[0].start == "00:00:00.000" and captions[-1].end == "00:00:09.000"
    # FFmpeg (what mpv and VLC read subtitles with) takes it as subtitles too
    with av.open(str(vtt)) as subtitles:
        stream = subtitles.streams.subtitles[0]
        cues = [bytes(p) for p in subtitles.demux(stream) if p.size]
    assert stream.codec_context.name == "webvtt" and cues == [
        b"red 0.82",
        b"blue 0.82",
        b"green 0.80",
    ]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_over_rest_and_text_output(colour_video):
    path, changes = colour_video
    with rest_stub() as (address, _):
        run = run_client("--server", address, "--rest", "--timeline", "--json", path)
        text = run_client("--server", address, "--rest", "--timeline", "--smooth", "3", path)
    assert run.returncode == 0, run.stderr
    check_timeline(records(run.stdout), path, changes)
    assert text.returncode == 0, text.stderr
    segments = [line for line in text.stdout.splitlines() if line.startswith("segment")]
    assert [line.split()[5] for line in segments] == ["red", "blue", "green"]


def test_timeline_of_an_export_older_than_the_clip_format_query(colour_video):
    """Exports of keras-classreg < 0.3: `clip_format` has no input. gRPC
    reads it; TF Serving's REST API cannot call it: one clear line."""
    path, changes = colour_video
    with grpc_stub(StubModel(legacy_clip_format=True)) as (address, _):
        run = run_client("--server", address, "--timeline", "--json", path)
    assert run.returncode == 0, run.stderr
    check_timeline(records(run.stdout), path, changes)
    with rest_stub(StubModel(legacy_clip_format=True)) as (address, _):
        run = run_client("--server", address, "--rest", "--timeline", path)
    first, *rest = run.stderr.splitlines()
    assert run.returncode == 1 and rest == ["1 of 1 input(s) failed."], run.stderr
    assert first.startswith(f"{path}: error: Model 'stub': its clip format could not be read")
    assert "keras-classreg < 0.3" in first and "training.export" in first


def test_timeline_errors_are_one_line(colour_video, tmp_path):
    path, _ = colour_video
    with grpc_stub() as (address, _):
        missing = run_client("--server", address, "--timeline", tmp_path / "none.mp4", path)
        two = run_client("--server", address, "--timeline", "--vtt", tmp_path / "v", path, path)
        hop = run_client("--server", address, "--timeline", "--hop", "0", path)
        folder = run_client(
            "--server", address, "--timeline", "--plot", tmp_path / "no/p.png", path
        )
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == f"{tmp_path / 'none.mp4'}: error: no such file"
    assert "segment" in missing.stdout  # the next input is labelled all the same
    for run in (two, hop, folder):
        assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
        assert run.stderr.startswith("error: ")


def test_plot_of_400_classes_draws_the_top_ones_only(tmp_path):
    from serving.timeline_plot import TimelinePlot, choose_classes

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(400, 0.05), size=50).astype(np.float32)
    probabilities[:20, 7] += 2.0  # class 7 wins the most windows
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    shown = choose_classes(probabilities)
    assert len(shown) == 8 and shown[0] == 7
    plot = TimelinePlot([f"class {i}" for i in range(400)])
    for i, row in enumerate(probabilities):
        window = type("W", (), {"start": i * 0.5, "end": i * 0.5 + 1})()
        plot.add(WindowResult(window, row, [], 1, 0.0))
    plot.save(tmp_path / "p.png", title="400 classes")
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.slow
def test_client_memory_stays_bounded_on_a_long_video(tmp_path):
    """3000 frames of 320x240 decoded at full size would be ~690 MB; the
    client streams them (RSS sampled while it runs)."""
    import psutil

    path = tmp_path / "long.mp4"
    write_colour_video(path, [(60, "red"), (60, "blue")], fps=25, size=(320, 240))
    peak = []
    with grpc_stub() as (address, model):
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.client", "--model", "stub", "--server", address]
            + ["--timeline", "--json", "--short-side", "240", "--hop", "1", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watched = psutil.Process(process.pid)

        def sample():
            while process.poll() is None:
                try:
                    peak.append(watched.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        stdout, stderr = process.communicate(timeout=120)
        sampler.join()
    assert process.returncode == 0, stderr
    lines = records(stdout)
    assert [r["class"] for r in lines if r["kind"] == "segment"] == ["red", "blue"]
    assert model.calls == len([r for r in lines if r["kind"] == "window"]) >= 115
    assert max(peak) < 300 * 2**20, f"peak RSS {max(peak) / 2**20:.0f} MB"


def test_explanations_over_time_write_maps_summaries_and_an_overlay_video(colour_video, tmp_path):
    import av

    path, _ = colour_video
    out = tmp_path / "explain"
    with grpc_stub() as (address, _):
        run = run_client(
            "--server", address, "--timeline", "--json", path, "--explain", out,
            "--explain-every", "2",
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = records(run.stdout)
    windows = [r for r in lines if r["kind"] == "window"]
    [files] = [r["files"] for r in lines if r["kind"] == "explanation"]
    explained = [json.loads(line) for line in (out / "colours_explain.jsonl").open()]
    assert [e["index"] for e in explained] == list(range(0, len(windows), 2))
    assert explained[0]["blocks"][-1] == {"block": "stage2", "guess": "red", "confidence": 0.5}
    maps = np.load(out / explained[-1]["maps"])
    assert maps["maps"].shape == (2, 4, 16, 16) and list(maps["block_names"]) == [
        "stage1",
        "stage2",
    ]
    with av.open(files[-1]) as video:
        frames = sum(1 for _ in video.decode(video=0))
    assert files[-1].endswith("colours_overlay.mp4") and frames >= len(explained)


def test_overlay_falls_back_to_a_gif_without_an_mp4_encoder(tmp_path, monkeypatch):
    from PIL import Image

    from serving import timeline_explain

    monkeypatch.setattr(timeline_explain, "_CODECS", ("no_such_encoder",))
    video = timeline_explain.OverlayVideo(tmp_path / "clip", fps=5)
    for value in (0, 128, 255):
        video.add(Image.new("RGB", (33, 20), (value, 0, 0)))
    video.close()
    assert video.path == tmp_path / "clip_overlay.gif"
    with Image.open(video.path) as gif:
        assert gif.n_frames == 3
    assert not (tmp_path / "clip_overlay.mp4").exists()


def test_the_timeline_client_does_not_import_tensorflow():
    """TensorFlow alone is ~650 MB: the timeline's clients stay without it."""
    modules = "serving.client, serving.timeline_cli, serving.live, serving.timeline_explain"
    code = f"import sys, {modules}; print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


@pytest.mark.slow
def test_windows_get_the_exported_models_answer_for_their_clip(tmp_path):
    """Against `python -m serving.server` and a tiny export: each window's
    probabilities are the model's for the window's frames cut as evaluation
    cuts a clip (`eval_views`), so the export's preprocessing of the frames
    the client sends is the evaluation's."""
    import tiny_exports as testing
    from timeline_stubs import write_video

    from clipspec.decode import decode_video
    from clipspec.sampling import eval_views
    from serving.client import ServingClient
    from serving.launch import LocalServer
    from serving.predictor import GrpcPredictor
    from serving.timeline import FileTimeline

    model, _ = testing.export_tiny(tmp_path / "models", "tiny", input_shape=(4, 16, 16, 3))
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.mp4"
    write_video(path, (rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(25)))
    clip_format = testing.clip_format(7, (4, 16, 16, 3))
    frames, fps = decode_video(path, short_side=clip_format.short_side)
    args = ["--model_name=tiny", f"--model_base_path={tmp_path / 'models' / 'tiny'}"]
    with LocalServer(args) as server:
        with ServingClient(server.address) as client:
            client.wait_until_available("tiny")
        with GrpcPredictor(server.address) as predictor:
            results = list(FileTimeline(predictor, "tiny", path, hop=0.3))
    assert len(results) >= 5
    for result in results:
        first = int(round(result.window.start * fps))
        view = eval_views(frames[first : first + 7], 4, 2, 16, 1, 1, "loop")
        expected = testing.reference_probabilities(model, np.asarray(view))[0]
        np.testing.assert_allclose(result.probabilities, expected, atol=2e-5)
    assert results[-1].window.end == pytest.approx(2.5)


def test_a_damaged_video_is_labelled_around_the_lost_frame_with_a_warning(tmp_path):
    from messy_files import moving_frames, write_damaged_mjpeg

    path = write_damaged_mjpeg(tmp_path / "damaged.avi", moving_frames(20), bad_frame=10)
    with grpc_stub() as (address, _):
        run = run_client("--server", address, "--timeline", "--json", path)
    assert run.returncode == 0, run.stderr
    assert [r["kind"] for r in records(run.stdout)][-1] == "segment"
    [warning] = run.stderr.splitlines()
    assert warning.startswith(f"{path}: warning: 1 undecodable packet(s) skipped, the first ")
