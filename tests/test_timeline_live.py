"""Live streams (serving.live, serving.client --live): a loopback MPEG-TS
stream over UDP, sent in real time by the test, labelled as it plays; cut,
it is retried and given up with one error line; Ctrl-C prints the summary
and exits 130; a server slower than the stream drops windows instead of
lagging; unusable sources give one `error:` line each."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from timeline_stubs import (
    StubModel,
    free_port,
    grpc_stub,
    stream_colours_udp,
    wait_until_udp_bound,
    write_colour_video,
)


def start_client(address, source, *args, json_lines=True):
    return subprocess.Popen(
        [sys.executable, "-m", "serving.client", "--model", "stub", "--server", address]
        + ["--live", "--stream-timeout", "0.5", *map(str, args), str(source)]
        + (["--json"] if json_lines else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def send(port, parts, **kwargs):
    sender = threading.Thread(target=stream_colours_udp, args=(port, parts), kwargs=kwargs)
    sender.start()
    return sender


def records(stdout, kind):
    return [r for r in map(json.loads, stdout.splitlines()) if r.get("kind") == kind]


def error_lines(stderr):
    return [line for line in stderr.splitlines() if ": error: " in line]


@pytest.mark.slow
def test_live_stream_is_labelled_through_a_mode_change_then_cut_retried_and_given_up():
    port = free_port()
    source = f"udp://127.0.0.1:{port}"
    with grpc_stub() as (address, _):
        client = start_client(address, source, "--reconnects", "1")
        wait_until_udp_bound(port, client)  # the client listens on the port
        # the resolution and the frame rate change with the colour, as a
        # camera changing mode
        send(port, [(1.5, "red"), (1.5, "blue")], modes={1: ((64, 32), 12)}).join()
        stdout, stderr = client.communicate(timeout=30)
    assert client.returncode == 1, stderr
    windows = records(stdout, "window")
    assert {"latency", "start", "end", "top_k"} <= set(windows[0])
    starts = [w["start"] for w in windows]
    assert starts == sorted(starts)
    assert [s["class"] for s in records(stdout, "segment")] == ["red", "blue"]
    assert all(0 <= w["latency"] < 2 for w in windows)
    [summary] = records(stdout, "summary")
    assert summary["windows"] == len(windows) and summary["reconnects"] >= 1
    assert "reconnecting in 0.5 s (1/1)" in stderr
    [failure] = [r for r in map(json.loads, stdout.splitlines()) if "error" in r]
    assert failure == {
        "source": source,
        "error": "stream lost after 1 reconnect(s): no answer within 0.5 s",
    }
    assert "live summary:" in stderr and "latency p50" in stderr


@pytest.mark.slow
def test_ctrl_c_prints_the_summary_and_exits_130():
    port = free_port()
    stop = threading.Event()
    lines = []
    with grpc_stub() as (address, _):
        client = start_client(address, f"udp://127.0.0.1:{port}")
        reader = threading.Thread(target=lambda: lines.extend(client.stdout))
        reader.start()
        wait_until_udp_bound(port, client)
        sender = send(port, [(20, "green")], stop=stop)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum('"window"' in line for line in lines) < 2:
            time.sleep(0.1)
        client.send_signal(signal.SIGINT)
        client.wait(timeout=30)
        reader.join()
        stderr = client.stderr.read()
        stop.set()
        sender.join()
    stdout = "".join(lines)
    assert client.returncode == 130, stderr
    [summary] = records(stdout, "summary")
    assert summary["windows"] >= 2 and summary["dropped"] == 0
    assert "live summary:" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_a_slow_server_drops_windows_instead_of_lagging():
    port = free_port()
    with grpc_stub(StubModel(delay=1.0)) as (address, model):
        client = start_client(address, f"udp://127.0.0.1:{port}", "--reconnects", "0")
        wait_until_udp_bound(port, client)
        send(port, [(4, "red")]).join()
        stdout, stderr = client.communicate(timeout=30)
    [summary] = records(stdout, "summary")
    windows = records(stdout, "window")
    assert summary["dropped"] > 0 and summary["windows"] == len(windows) > 0, summary
    # Two windows in flight at most: a latency near two calls (with slack
    # for a loaded machine); queuing every window of 4 s at 1 s per call
    # would lag by many seconds.
    assert max(w["latency"] for w in windows) < 4.0, [w["latency"] for w in windows]
    assert model.calls <= summary["windows"] + 2


def test_unusable_sources_give_one_error_line_each(tmp_path):
    closed = free_port("tcp")
    silent = free_port()
    garbage_port = free_port("tcp")
    server = socket.create_server(("127.0.0.1", garbage_port))

    def serve_garbage():
        server.settimeout(120)
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.sendall(bytes(range(256)) * 256)

    threading.Thread(target=serve_garbage, daemon=True).start()
    sources = {  # source: (what the error says, --stream-timeout)
        f"http://127.0.0.1:{closed}/live.ts": ("Connection refused", "0.5"),
        f"udp://127.0.0.1:{silent}": ("no answer within 0.5 s", "0.5"),
        f"tcp://127.0.0.1:{garbage_port}": ("Invalid data found", "5"),
    }
    try:
        with grpc_stub() as (address, _):
            for source, (reason, timeout) in sources.items():
                client = start_client(
                    address, source, "--reconnects", "0", "--stream-timeout", timeout,
                    json_lines=False,
                )  # fmt: skip
                stdout, stderr = client.communicate(timeout=30)
                assert client.returncode == 1, stderr
                first = stderr.splitlines()[0]
                assert first.startswith(f"{source}: error: stream lost: ") and reason in first
                assert len(error_lines(stderr)) == 1 and "Traceback" not in stderr
                assert "live summary" not in stderr and stdout == ""
    finally:
        server.close()


def test_standard_input_is_live_and_ends_normally(tmp_path):
    path = tmp_path / "colours.ts"
    write_colour_video(path, [(2, "blue")], fps=25, container="mpegts")
    with grpc_stub() as (address, _), open(path, "rb") as stdin:
        run = subprocess.run(
            [sys.executable, "-m", "serving.client", "--model", "stub", "--server", address]
            + ["--timeline", "--json", "-"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    assert records(run.stdout, "summary")[0]["frames"] == 50


def test_a_file_given_as_live_plays_at_its_own_pace(tmp_path):
    path = tmp_path / "colours.mp4"
    write_colour_video(path, [(1, "red"), (1, "green")], fps=25)
    began = time.monotonic()
    with grpc_stub() as (address, _):
        client = start_client(address, path)
        stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 0, stderr
    assert time.monotonic() - began >= 2.0  # two seconds of video, in real time
    assert [s["class"] for s in records(stdout, "segment")] == ["red", "green"]
    assert records(stdout, "summary")[0]["frames"] == 50
