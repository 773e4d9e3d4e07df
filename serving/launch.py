"""Start `python -m serving.server` as a child process (tests, benchmarks).

>>> args = ["--model_name=tiny", "--model_base_path=exports/tiny"]
>>> with LocalServer(args, rest=True) as server:      # doctest: +SKIP
...     client = ServingClient(server.address)
...     url = server.rest_url                        # http://127.0.0.1:PORT
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from serving.defaults import READY_LINE, REST_READY_LINE

_REPO = pathlib.Path(__file__).resolve().parents[1]


class LocalServer:
    """A `serving.server` child process on free ports of 127.0.0.1.

    Args:
        args: server arguments (TF Serving's flags, without `--port`,
            `--rest_api_port` and `--host`).
        ready_timeout: seconds to wait for the initial model load.
        log_path: where the server's output goes (default: a temp file;
            `log()` reads it).
        rest: also serve the REST API (`rest_url`).
    """

    def __init__(self, args, ready_timeout=180.0, log_path=None, env=None, rest=False):
        self.args = [str(a) for a in args]
        self.ready_timeout = ready_timeout
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="classreg-serve-", suffix=".log")
            os.close(handle)
        self.log_path = str(log_path)
        self.env = dict(os.environ if env is None else env)
        paths = [str(_REPO)] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.rest = rest
        self.process = None
        self.port = None
        self.rest_port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def rest_url(self):
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self, same_ports=False):
        """Starts the server (on the ports of the previous start when
        `same_ports`); returns once it is ready."""
        grpc_port = self.port if same_ports and self.port else free_port()
        ports = [f"--port={grpc_port}"]
        if self.rest:
            rest_port = self.rest_port if same_ports and self.rest_port else free_port()
            ports.append(f"--rest_api_port={rest_port}")
        offset = os.path.getsize(self.log_path) if same_ports else 0
        with open(self.log_path, "ab" if same_ports else "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.server", "--host", "127.0.0.1", *ports, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(_REPO),
            )
        deadline = time.monotonic() + self.ready_timeout
        grpc_line = re.compile(re.escape(READY_LINE) + r" \S+:(\d+)")
        rest_line = re.compile(re.escape(REST_READY_LINE) + r" \S+:(\d+)")
        while time.monotonic() < deadline:
            log = self.log()[offset:]
            match = grpc_line.search(log)
            rest = rest_line.search(log)
            if match and (rest or not self.rest):
                self.port = int(match.group(1))
                self.rest_port = int(rest.group(1)) if rest else None
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serving.server exited with code {self.process.returncode}"
                    f" before it was ready:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"serving.server was not ready after {self.ready_timeout:.0f} s:\n{self.log()[-4000:]}"
        )

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def kill(self):
        """SIGKILL (a crash); returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.kill()
        return self.process.wait()

    def restart(self, kill=True):
        """Kills (or stops) the server and starts it again on the same ports."""
        self.kill() if kill else self.stop()
        with open(self.log_path, "ab") as log:
            log.write(b"\n--- restart ---\n")
        return self.start(same_ports=True)

    def stop(self, timeout=30.0):
        """SIGTERM (graceful), then SIGKILL after `timeout`; returns the
        exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def free_port():
    """A TCP port of 127.0.0.1 free now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


__all__ = ["LocalServer", "free_port"]
