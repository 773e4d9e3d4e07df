"""Decoding: odd but valid files decode (upright), bad files get a
reason that names the problem, damaged videos keep their decodable frames.
All files are generated here (tests/messy_files.py); the shared real clips
are used when present."""

import os
import pathlib

import messy_files as messy
import numpy as np
import pytest

from clipspec.decode import (
    PARTIAL_MIN_SHARE,
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    decode_video,
    decode_video_details,
    probe_video,
)


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    return folder, messy.odd_but_valid(folder)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    good = messy.write_h264(folder.parent / "reference.mp4", messy.moving_frames(12))
    return folder, messy.bad_files(folder, good)


def test_odd_but_valid_files_decode_with_every_frame(odd):
    folder, expected = odd
    for name, count in expected.items():
        frames, _ = decode_video(os.path.join(folder, name), short_side=32)
        assert frames.shape[0] == count, name
        assert min(frames.shape[1:3]) == 32, name
    # the extensions the folder layout takes include those the client reads
    for extension in (".gif", ".ts", ".mts", ".m2ts", ".vob", ".webm"):
        assert extension in VIDEO_EXTENSIONS


def test_bad_files_get_a_reason_naming_the_problem(bad):
    folder, reasons = bad
    for name, phrase in reasons.items():
        with pytest.raises(VideoDecodeError) as error:
            decode_video(folder / name)
        assert phrase in error.value.reason, (name, error.value.reason)
        with pytest.raises(VideoDecodeError):
            probe_video(folder / name)
    # a PNG renamed .avi says what it is, not "corrupt video data"
    with pytest.raises(VideoDecodeError, match=r"a PNG image, not a video .*ends in \.avi"):
        decode_video(folder / "image_renamed.avi")


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_phone_videos_decode_upright(tmp_path, degrees):
    upright = messy.moving_frames(8, 64, 48)  # portrait, marker top-left
    reference, _ = decode_video(messy.write_h264(tmp_path / "upright.mp4", upright))
    video = decode_video_details(
        messy.write_rotated(tmp_path / f"rot{degrees}.mp4", upright, degrees)
    )
    assert video.rotation == degrees
    assert video.frames.shape == reference.shape == (8, 64, 48, 3)

    def error(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    # up to H.264 noise, the upright video; far from it turned over
    assert error(video.frames, reference) < 6
    assert error(video.frames[:, ::-1, ::-1], reference) > 5 * error(video.frames, reference)
    # the marker is top-left, where it was filmed
    assert video.frames[0, :6, :10].mean() > 200
    assert video.frames[0, -6:, -10:].mean() < 100
    # the short side is the shown one
    small, _ = decode_video(tmp_path / f"rot{degrees}.mp4", short_side=24)
    assert small.shape[1:3] == (32, 24)


def test_a_damaged_video_keeps_its_decodable_frames(tmp_path):
    frames = messy.moving_frames(50)
    path = messy.write_damaged_mjpeg(tmp_path / "damaged.avi", frames, bad_frame=28)
    video = decode_video_details(path)
    assert len(video.frames) == 49 and video.errors == 1
    assert video.expected_frames == 50
    damage = video.damage
    assert damage["decoded"] == 49 and damage["expected"] == 50
    assert "after frame 28" in damage["reason"]
    # the frames kept are the right ones, in order (28 is missing)
    intact, _ = decode_video(
        messy.write_encoded(tmp_path / "intact.avi", frames, "mjpeg", pix_fmt="yuvj420p")
    )
    kept = np.concatenate([intact[:28], intact[29:]])
    assert np.abs(video.frames.astype(int) - kept.astype(int)).max() == 0


def test_a_too_damaged_video_is_refused_with_the_threshold(tmp_path):
    frames = messy.moving_frames(20)
    path = tmp_path / "ruined.avi"
    messy.write_encoded(path, frames, "mjpeg", pix_fmt="yuvj420p")
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for position, size in packets[5:]:  # 15 of 20 frames ruined
        data[position + 100 : position + size - 10] = bytes(size - 110)
    path.write_bytes(bytes(data))
    needed = int(np.ceil(PARTIAL_MIN_SHARE * 20))
    with pytest.raises(
        VideoDecodeError,
        match=rf"only 5 frames of the 20 expected decodable, a damaged "
        rf"video needs at least {needed}",
    ):
        decode_video(path)


def test_a_truncated_streamable_mp4_keeps_what_arrived(tmp_path):
    frames = messy.moving_frames(40)
    path = tmp_path / "streamable.mp4"
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    video = decode_video_details(cut)
    assert 20 <= len(video.frames) < 40
    assert video.damage is not None and video.damage["expected"] == 40
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(VideoDecodeError, match="a damaged video needs at least 20"):
        decode_video(cut)


def test_file_names_the_os_allows(odd):
    folder, _ = odd
    raw = os.path.join(os.fsencode(folder), messy.NON_UTF8_NAME)
    name = os.fsdecode(raw)
    assert "\udce9" in name  # the Latin-1 byte, kept as a surrogate
    assert decode_video(name)[0].shape[0] == 12
    assert decode_video(pathlib.Path(name))[0].shape[0] == 12
    assert decode_video(folder / messy.UNICODE_NAME)[0].shape[0] == 12


def test_real_clips_turned_by_metadata_decode_as_the_original(real_clips_dir, tmp_path):
    """A real clip re-encoded turned (stored sideways + display matrix)
    decodes as the original (up to re-encoding)."""
    clip = real_clips_dir / "v_ApplyEyeMakeup_g01_c01.avi"
    original, _ = decode_video(clip, max_frames=12)
    original = original[:, : original.shape[1] // 2 * 2, : original.shape[2] // 2 * 2]
    plain, _ = decode_video(messy.write_h264(tmp_path / "plain.mp4", original))
    for degrees in (90, 180, 270):
        turned, _ = decode_video(
            messy.write_rotated(tmp_path / f"r{degrees}.mp4", original, degrees)
        )
        assert turned.shape == plain.shape
        assert np.abs(turned.astype(int) - plain.astype(int)).mean() < 6
