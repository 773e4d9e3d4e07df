"""Benchmark of the timeline client (`python -m serving.client --timeline`
and `--live`) against `python -m serving.server`.

Exports the model of `benchmarks.serving_load` (a zoo model, random
weights; same defaults), serves it with server-side batching as that
benchmark does, then, in one run:

(a) file throughput: the served clips/s of `benchmarks.serving_load`
    (`--clients` gRPC clients, one clip per request; measured before and
    after the timeline, the mean taken) and the timeline of a
    generated long file (`--file-minutes`, 25 fps) through the client
    command line; target: windows/s >= 0.8 x served clips/s (decoding is
    not the bottleneck); also reported as video-seconds per wall-second;
(b) live: a loopback MPEG-TS stream over UDP at 25 fps
    (`serving.live.send_realtime`, `--live-seconds`) labelled with the
    default hop; target: 0 dropped windows; latency p50/p95;
(c) memory: the client's peak RSS (sampled every 50 ms) on a generated
    one-hour video (`--hour-minutes`, 60 by default) with the client's
    default hop (half a window; `--hour-hop S` for fewer windows: the
    decoding of every frame is the same whatever the hop); target:
    <= 500 MB.

Generated videos go to a temporary folder and are deleted. `--docs FILE`
writes the figures with the command, the date and the machine
(`benchmarks.report`). Example:

    python -m benchmarks.timeline --file-minutes 5 --live-seconds 30
    python -m benchmarks.timeline --docs docs/benchmarks/timeline.md
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks import report
from benchmarks.serving_load import served_throughput
from clipspec.format import ClipFormat
from keras_classreg import models
from serving.client import ServingClient
from serving.launch import LocalServer
from serving.live import send_realtime
from training.export import export_version

FPS = 25
RSS_LIMIT_MB = 500


def moving_frames(seconds, size=(320, 240), fps=FPS, seed=0):
    """Frames of a moving pattern (so the encoder and decoder have real
    work): a textured background scrolling and a square crossing it."""
    width, height = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    for index in range(int(seconds * fps)):
        shift = (index * 3) % width
        frame = texture[:, shift : shift + width].copy()
        x = (index * 5) % max(1, width - 40)
        frame[height // 3 : height // 3 + 40, x : x + 40] = (250, 40, 40)
        yield frame


def write_video(path, seconds, size, fps=FPS):
    """A generated H.264 MP4 of `seconds`; returns the seconds written."""
    import av

    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for frame in moving_frames(seconds, size, fps):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return seconds


def run_client(address, args, timeout):
    """Runs the client command line, sampling its RSS; returns `(records,
    stderr, wall seconds, peak RSS MB, exit status)`."""
    import psutil

    command = [sys.executable, "-m", "serving.client", "--server", address, "--model", "bench"]
    began = time.perf_counter()
    process = subprocess.Popen(
        command + ["--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]

    def sample():
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                peak[0] = max(peak[0], watched.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate(timeout=timeout)
    wall = time.perf_counter() - began
    sampler.join()
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return records, stderr, wall, peak[0] / 2**20, process.returncode


def _windows(records):
    return [r for r in records if r.get("kind") == "window"]


def benchmark(
    model_name="resnet18_3d",
    input_shape=(8, 64, 64),
    num_classes=10,
    clients=16,
    requests=50,
    max_batch_size=16,
    in_flight=16,
    file_minutes=5.0,
    file_size=(320, 240),
    live_seconds=30.0,
    hour_minutes=60.0,
    hour_size=(160, 120),
    hour_hop=None,
    work_dir=None,
):
    """Runs (a), (b), (c); returns a JSON-able dict."""
    shape = (*input_shape, 3)
    work = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="timeline-bench-"))
    model = models.get(model_name, num_classes=num_classes, input_shape=shape)
    clip_format = ClipFormat(
        clip_length=shape[0],
        crop_size=shape[1],
        class_names=[f"class_{i}" for i in range(num_classes)],
    )
    export_version(model, work, "bench", clip_format)
    args = [
        "--model_name=bench",
        f"--model_base_path={work / 'bench'}",
        f"--grpc_max_threads={max(16, clients * 2)}",
    ]
    if max_batch_size:
        batching = work / "batching_parameters.txt"
        batching.write_text(
            f"max_batch_size {{ value: {max_batch_size} }}\n"
            "batch_timeout_micros { value: 0 }\n"
            "max_enqueued_batches { value: 100 }\n"
            "num_batch_threads { value: 2 }\n"
        )
        args += ["--enable_batching", f"--batching_parameters_file={batching}"]
    clip = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
    result = {
        "model": model_name,
        "input_shape": list(shape),
        "clip_format": {"clip_length": clip_format.clip_length, "stride": clip_format.stride},
        "short_side": clip_format.short_side,
    }
    try:
        with LocalServer(args, log_path=work / "server.log") as server:
            with ServingClient(server.address) as client:
                client.wait_until_available("bench")
            result["file"] = _file_throughput(
                server.address, clip, clients, requests, in_flight, work, file_minutes, file_size
            )
            result["live"] = _live(server.address, live_seconds, file_size)
            result["hour"] = _hour(server.address, work, hour_minutes, hour_size, hour_hop)
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _file_throughput(address, clip, clients, requests, in_flight, work, minutes, size):
    path = work / "long.mp4"
    seconds = write_video(path, minutes * 60, size)
    # served clips/s before and after the timeline: the load of a shared
    # machine changes, the mean of both is the reference
    before, failures = served_throughput(address, "bench", clip, clients, requests)
    records, stderr, wall, peak, status = run_client(
        address, ["--timeline", "--in-flight", str(in_flight), str(path)], timeout=3600
    )
    after, more = served_throughput(address, "bench", clip, clients, requests)
    served, failures = (before + after) / 2, failures + more
    if status:
        raise RuntimeError(f"the timeline client failed ({status}): {stderr.strip()}")
    windows = len(_windows(records))
    path.unlink()
    return {
        "video_seconds": seconds,
        "frame_size": list(size),
        "served_clips_per_s": round(served, 2),
        "served_before_after": [round(before, 2), round(after, 2)],
        "served_failures": len(failures),
        "clients": clients,
        "in_flight": in_flight,
        "windows": windows,
        "wall_seconds": round(wall, 2),
        "windows_per_s": round(windows / wall, 2),
        "video_seconds_per_wall_second": round(seconds / wall, 2),
        "ratio": round(windows / wall / served, 3),
        "target": ">= 0.8",
        "client_peak_rss_mb": round(peak, 1),
    }


def _live(address, seconds, size):
    from serving.launch import free_port

    port = free_port()
    url = f"udp://127.0.0.1:{port}"
    outcome = {}

    def client():
        outcome["run"] = run_client(
            address,
            ["--live", "--stream-timeout", "3", "--reconnects", "0", url],
            timeout=seconds + 120,
        )

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(3.0)  # the client starts and listens on the port
    sent = send_realtime(f"{url}?pkt_size=1316", moving_frames(seconds, size), FPS)
    thread.join()
    records, stderr, _, peak, _ = outcome["run"]
    summaries = [r for r in records if r.get("kind") == "summary"]
    if not summaries:
        raise RuntimeError(f"the live client gave no summary: {stderr.strip()}")
    summary = summaries[0]
    return {
        "stream_seconds": seconds,
        "fps": FPS,
        "frame_size": list(size),
        "frames_sent": sent,
        "frames_received": summary["frames"],
        "windows": summary["windows"],
        "dropped": summary["dropped"],
        "latency_p50_ms": round(summary["latency_p50"] * 1000, 1),
        "latency_p95_ms": round(summary["latency_p95"] * 1000, 1),
        "target": "0 dropped",
        "client_peak_rss_mb": round(peak, 1),
    }


def _hour(address, work, minutes, size, hop):
    path = work / "hour.mp4"
    began = time.perf_counter()
    seconds = write_video(path, minutes * 60, size)
    generated = time.perf_counter() - began
    hop_flags = [] if hop is None else ["--hop", str(hop)]
    records, stderr, wall, peak, status = run_client(
        address, ["--timeline", *hop_flags, str(path)], timeout=4 * 3600
    )
    if status:
        raise RuntimeError(f"the timeline client failed ({status}): {stderr.strip()}")
    windows = _windows(records)
    path.unlink()
    if hop is None and len(windows) > 1:  # the default: half a window
        hop = f"{windows[1]['start'] - windows[0]['start']:.3g} (default)"
    return {
        "video_seconds": seconds,
        "frame_size": list(size),
        "hop_seconds": hop,
        "windows": len(windows),
        "last_window_end": windows[-1]["end"] if windows else None,
        "generate_seconds": round(generated, 1),
        "wall_seconds": round(wall, 1),
        "client_peak_rss_mb": round(peak, 1),
        "target_mb": f"<= {RSS_LIMIT_MB}",
    }


def print_report(result):
    file, live, hour = result["file"], result["live"], result["hour"]
    print(f"model {result['model']} {result['input_shape']}, clip {result['clip_format']}")
    print(
        f"(a) file: {file['video_seconds']:.0f} s of video in {file['wall_seconds']} s: "
        f"{file['video_seconds_per_wall_second']} video-s per wall-s, "
        f"{file['windows_per_s']} windows/s vs served {file['served_clips_per_s']} clips/s: "
        f"ratio {file['ratio']} (target {file['target']})"
    )
    print(
        f"(b) live {live['fps']} fps for {live['stream_seconds']:.0f} s: {live['windows']} "
        f"windows, {live['dropped']} dropped (target {live['target']}), latency p50 "
        f"{live['latency_p50_ms']} ms, p95 {live['latency_p95_ms']} ms"
    )
    print(
        f"(c) {hour['video_seconds'] / 60:.0f} min video ({hour['frame_size']}, hop "
        f"{hour['hop_seconds']} s): peak client RSS {hour['client_peak_rss_mb']} MB "
        f"(target {hour['target_mb']}), {hour['windows']} windows in {hour['wall_seconds']} s"
    )


def write_docs(result, path, command):
    file, live, hour = result["file"], result["live"], result["hour"]
    rows = [
        [
            "(a) served clips/s (serving_load's clients; mean of before and after)",
            f"{file['served_clips_per_s']} ({' / '.join(map(str, file['served_before_after']))})",
        ],
        ["(a) timeline windows/s of a long file", file["windows_per_s"]],
        ["(a) ratio (target >= 0.8)", file["ratio"]],
        ["(a) video-seconds per wall-second", file["video_seconds_per_wall_second"]],
        ["(a) video length (s), frame size", f"{file['video_seconds']:.0f}, {file['frame_size']}"],
        ["(b) live stream: fps, seconds", f"{live['fps']}, {live['stream_seconds']:.0f}"],
        ["(b) windows answered, dropped (target 0)", f"{live['windows']}, {live['dropped']}"],
        ["(b) latency p50 / p95 (ms)", f"{live['latency_p50_ms']} / {live['latency_p95_ms']}"],
        [
            "(c) video length (min), frame size, hop (s)",
            f"{hour['video_seconds'] / 60:.0f}, {hour['frame_size']}, {hour['hop_seconds']}",
        ],
        ["(c) client peak RSS (MB, target <= 500)", hour["client_peak_rss_mb"]],
        ["(c) windows, wall seconds", f"{hour['windows']}, {hour['wall_seconds']}"],
    ]
    report.write_page(
        path,
        "Timeline and live streams",
        command,
        [
            f"Model {result['model']} (random weights), clips {result['input_shape']}, "
            f"stride {result['clip_format']['stride']}, frames decoded at short side "
            f"{result['short_side']}.",
            report.markdown_table(["figure", "value"], rows),
            "```json\n" + json.dumps(result, indent=2) + "\n```",
        ],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.timeline",
        description="Benchmark of the timeline client (see the module docstring).",
    )
    parser.add_argument("--model", default="resnet18_3d", choices=models.names())
    parser.add_argument(
        "--input-shape", type=int, nargs=3, default=(8, 64, 64), metavar=("T", "H", "W")
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="Per client. Default: 50.")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--file-minutes", type=float, default=5.0)
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--hour-minutes", type=float, default=60.0)
    parser.add_argument(
        "--hour-hop",
        type=float,
        default=None,
        help="Seconds between the one-hour video's windows. Default: the client's (half a window).",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--docs", metavar="FILE", default=None)
    args = parser.parse_args(argv)
    if args.hour_hop is not None and not args.hour_hop > 0:
        parser.error(f"--hour-hop must be > 0 seconds, got {args.hour_hop}")
    result = benchmark(
        args.model,
        tuple(args.input_shape),
        clients=args.clients,
        requests=args.requests,
        in_flight=args.in_flight,
        file_minutes=args.file_minutes,
        live_seconds=args.live_seconds,
        hour_minutes=args.hour_minutes,
        hour_hop=args.hour_hop,
    )
    print(json.dumps(result, indent=2) if args.json else "", end="")
    print_report(result)
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.timeline", argv))
    met = (
        result["file"]["ratio"] >= 0.8
        and result["live"]["dropped"] == 0
        and result["hour"]["client_peak_rss_mb"] <= RSS_LIMIT_MB
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
