"""Start `python -m serving.server` as a child process (tests, benchmarks).

>>> args = ["--model-name", "tiny", "--model-base-path", "exports/tiny"]
>>> with LocalServer(args) as server:                 # doctest: +SKIP
...     client = ServingClient(server.address)
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

from serving.server import READY_LINE

_REPO = pathlib.Path(__file__).resolve().parents[1]


class LocalServer:
    """A `serving.server` child process on a free port of 127.0.0.1.

    Args:
        args: server arguments (without `--port`/`--host`).
        ready_timeout: seconds to wait for the initial model load.
        log_path: where the server's output goes (default: a temp file;
            `log()` reads it).
    """

    def __init__(self, args, ready_timeout=180.0, log_path=None, env=None):
        self.args = [str(a) for a in args]
        self.ready_timeout = ready_timeout
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="classreg-serve-",
                                                suffix=".log")
            os.close(handle)
        self.log_path = str(log_path)
        self.env = dict(os.environ if env is None else env)
        paths = [str(_REPO)] + [p for p in self.env.get("PYTHONPATH", "").split(
            os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = None
        self.port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.server", "--host", "127.0.0.1",
                 "--port", "0", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                cwd=str(_REPO))
        deadline = time.monotonic() + self.ready_timeout
        pattern = re.compile(re.escape(READY_LINE) + r" \S+:(\d+)")
        while time.monotonic() < deadline:
            match = pattern.search(self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serving.server exited with code {self.process.returncode}"
                    f" before it was ready:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"serving.server was not ready after "
                           f"{self.ready_timeout:.0f} s:\n{self.log()[-4000:]}")

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

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


__all__ = ["LocalServer"]
