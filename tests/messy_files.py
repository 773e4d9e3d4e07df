"""Writers of odd but valid and of bad video files, for the bad-input tests
(no tests here).

Every file is generated: odd codecs and containers (VP9 .webm, MJPEG .avi,
MPEG-4 at 161x121, grayscale, GIF, MPEG-TS as .ts/.mts/.m2ts, MPEG-2 .vob),
phone-style rotation (a display matrix of 90/180/270 degrees, as PyAV 18
writes it with `VideoStream.set_display_rotation`), and bad files (0 bytes,
text, truncated H.264, audio only, a PNG renamed .avi, random bytes, one
frame, a damaged MJPEG frame), plus names and file kinds (non-UTF-8 bytes,
unicode, symbolic links, a broken link, a FIFO).
"""

import os
import pathlib

import av
import numpy as np
from PIL import Image


def moving_frames(count=16, height=48, width=64, seed=0, gray=False):
    """Frames of a bright square moving right over a dark, textured
    background; the top-left corner is marked (for orientation checks)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    frames = []
    for t in range(count):
        frame = background.copy()
        x = (4 + 3 * t) % max(1, width - 12)
        frame[height // 2 - 6 : height // 2 + 6, x : x + 12] = (230, 200, 40)
        frame[:6, :10] = (250, 250, 250)  # the top-left marker
        if gray:
            frame[:] = frame.mean(axis=2, keepdims=True).astype(np.uint8)
        frames.append(frame)
    return np.stack(frames)


def write_encoded(
    path,
    frames,
    codec="libx264",
    container_format=None,
    pix_fmt="yuv420p",
    rate=25,
    rotation=0,
    options=None,
):
    """Encodes RGB `frames` with PyAV. `rotation`: the display matrix's
    counter-clockwise degrees (0 for none)."""
    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1:3]
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with av.open(os.fspath(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        if options:
            stream.options = dict(options)
        if rotation:
            stream.set_display_rotation(rotation)
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return pathlib.Path(path)


def write_h264(path, frames, **kwargs):
    return write_encoded(
        path,
        frames,
        "libx264",
        options={"crf": "18", "preset": "ultrafast", "tune": "zerolatency"},
        **kwargs,
    )


def write_rotated(path, upright, degrees):
    """A phone-style video: the stored pictures are `upright` turned
    clockwise by `degrees`, and the display matrix says to turn them back
    (counter-clockwise by `degrees`)."""
    stored = np.stack([np.rot90(frame, -(degrees // 90)) for frame in upright])
    return write_h264(path, stored, rotation=degrees)


def write_audio_only(path, container_format=None):
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with av.open(os.fspath(path), "w", format=container_format) as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            samples = np.sin(np.arange(1024) / 10.0).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return pathlib.Path(path)


def write_damaged_mjpeg(path, frames, bad_frame):
    """An MJPEG .avi whose frame `bad_frame` has its JPEG data overwritten
    with noise (FFmpeg cannot decode that packet; the others decode)."""
    path = pathlib.Path(path)
    write_encoded(path, frames, "mjpeg", pix_fmt="yuvj420p")
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    position, size = packets[bad_frame]
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(1).integers(0, 255, size - 110, np.uint8)
    data[position + 100 : position + size - 10] = noise.tobytes()
    path.write_bytes(bytes(data))
    return path


def write_png_as(path):
    Image.fromarray(moving_frames(1)[0]).save(path, format="PNG")
    return pathlib.Path(path)


def write_gif(path, frames):
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return pathlib.Path(path)


NON_UTF8_NAME = b"caf\xe9_latin1.mp4"  # a Latin-1 name: not valid UTF-8
UNICODE_NAME = "vidéo_ß_日本.mp4"


def odd_but_valid(folder, seed=0):
    """Writes odd but valid videos into `folder`; returns
    `{name: frames decoded}` (name as `os.fsdecode` gives it)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = moving_frames(12, seed=seed)
    written = {}

    def add(name, count):
        written[os.fsdecode(name)] = count

    write_h264(folder / "three_frames.mp4", frames[:3])
    add("three_frames.mp4", 3)
    write_encoded(folder / "vp9.webm", frames, "libvpx-vp9")
    add("vp9.webm", 12)
    write_encoded(folder / "mjpeg.avi", frames, "mjpeg", pix_fmt="yuvj420p")
    add("mjpeg.avi", 12)
    write_encoded(folder / "odd_161x121.avi", moving_frames(12, 121, 161, seed), "mpeg4")
    add("odd_161x121.avi", 12)
    write_h264(folder / "portrait.mp4", moving_frames(12, 64, 48, seed))
    add("portrait.mp4", 12)
    write_encoded(
        folder / "gray.mkv", moving_frames(12, seed=seed, gray=True), "ffv1", pix_fmt="gray"
    )
    add("gray.mkv", 12)
    write_gif(folder / "anim.gif", frames)
    add("anim.gif", 12)
    for extension in (".ts", ".mts", ".m2ts"):
        write_h264(folder / f"transport{extension}", frames, container_format="mpegts")
        add(f"transport{extension}", 12)
    write_encoded(folder / "dvd.vob", frames, "mpeg2video", container_format="vob")
    add("dvd.vob", 12)
    write_rotated(folder / "phone_rot90.mp4", moving_frames(12, 64, 48, seed), 90)
    add("phone_rot90.mp4", 12)
    non_utf8 = os.path.join(os.fsencode(folder), NON_UTF8_NAME)
    write_h264(os.fsdecode(non_utf8), frames)
    add(NON_UTF8_NAME, 12)
    write_h264(folder / UNICODE_NAME, frames)
    add(UNICODE_NAME, 12)
    os.symlink(folder / "mjpeg.avi", folder / "link_to_mjpeg.avi")
    add("link_to_mjpeg.avi", 12)
    return written


def bad_files(folder, good_video):
    """Writes unusable files into `folder`; returns `{name: a phrase of the
    reason decode_video gives}`. `good_video`: an H.264 .mp4 to truncate."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = pathlib.Path(good_video).read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n")
    (folder / "truncated_h264.mp4").write_bytes(data[: len(data) // 3])
    write_audio_only(folder / "audio_only.mp4")
    write_png_as(folder / "image_renamed.avi")
    (folder / "random.mp4").write_bytes(np.random.default_rng(2).bytes(4096))
    write_h264(folder / "one_frame.mp4", moving_frames(1))
    os.symlink(folder / "does-not-exist.mp4", folder / "broken_link.mp4")
    os.mkfifo(folder / "fifo.mp4")
    return {
        "empty.mp4": "empty file (0 bytes)",
        "text.mp4": "not a video FFmpeg can read",
        "truncated_h264.mp4": "not a video FFmpeg can read",
        "audio_only.mp4": "no video stream (the file has audio streams only)",
        "image_renamed.avi": "a PNG image, not a video",
        "random.mp4": "not a video FFmpeg can read",
        "one_frame.mp4": "only 1 decodable frame",
        "broken_link.mp4": "broken symbolic link",
        "fifo.mp4": "a FIFO (named pipe), not a video file",
    }
