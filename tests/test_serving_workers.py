"""Model worker processes on their own: the frames between front end and
worker, admission by deadline, and a worker that loads, answers, unloads,
crashes, gets stuck, fails to load and dies with its parent."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import numpy as np
import psutil
import pytest
import tensorflow as tf
import tf_serving_models
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving import loadtest
from serving import worker_protocol as protocol
from serving.admission import Admission
from serving.client import ServingClient
from serving.errors import ServingError
from serving.handlers import RequestContext
from serving.launch import LocalServer
from serving.limits import MemoryBudget
from serving.restarts import MAX_WORKER_ENDS, Restarts
from serving.servable import ServableVersion
from serving.worker_process import WorkerSettings, exit_reason
from serving.worker_servable import WorkerServable

QUIET = WorkerSettings(log_level="WARNING")


def _context(seconds=None):
    context = RequestContext.with_timeout("GRPC", seconds)
    context.reservation = MemoryBudget(None).reserve(0)
    return context


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- frames --------------------------------------------------------------------
def test_frames_carry_large_payloads_in_parts():
    left, right = socket.socketpair()
    sender, receiver = protocol.Connection(left), protocol.Connection(right)
    payload = np.random.default_rng(0).integers(0, 256, 5 << 20, dtype=np.uint8)
    header = protocol.CallHeader("regress", 1.5, 123, 456)
    thread = threading.Thread(
        target=sender.send, args=(protocol.CALL, 42, header.pack(), payload.data)
    )
    thread.start()
    kind, call_id, body = receiver.receive()
    thread.join()
    assert (kind, call_id) == (protocol.CALL, 42)
    got, request = protocol.CallHeader.unpack(body)
    assert got == header
    assert bytes(request) == payload.tobytes()
    error = protocol.unpack_status(
        protocol.pack_status(ServingError(grpc.StatusCode.NOT_FOUND, "no such model é"))
    )
    assert (error.code, error.message) == (grpc.StatusCode.NOT_FOUND, "no such model é")
    sender.close()
    with pytest.raises(protocol.ConnectionClosed):
        receiver.receive()


def test_exit_reasons_name_the_signal():
    assert "SIGKILL" in exit_reason(-9) and "out-of-memory" in exit_reason(-9)
    assert "SIGSEGV" in exit_reason(-11)
    assert "status 3" in exit_reason(3)


def test_restarts_back_off_then_give_up_and_a_stable_run_starts_over(monkeypatch):
    restarts = Restarts()
    restarts.loaded(2)
    delays = [restarts.ended(2) for _ in range(MAX_WORKER_ENDS)]
    assert delays[:-1] == [0.5, 1.0, 2.0, 4.0] and delays[-1] is None
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 3600)  # ran an hour
    assert restarts.ended(2) == 0.5 and restarts.ends(2) == 1


# -- admission -----------------------------------------------------------------
def test_admission_bounds_the_executions_at_once():
    admission = Admission(limit=2)
    running, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return True

    threads = [threading.Thread(target=admission.run, args=(None, work)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2
    assert admission.running == 0 and admission.waiting == 0


def test_admission_never_starts_an_expired_or_cancelled_call():
    admission = Admission(limit=1)
    release, started = threading.Event(), []
    holder = threading.Thread(target=admission.run, args=(None, release.wait))
    holder.start()
    while admission.running == 0:
        time.sleep(0.01)
    expired, cancelled = _context(0.05), _context(30.0)
    failures = {}

    def wait(name, context):
        try:
            admission.run(context, lambda: started.append(name))
        except ServingError as error:
            failures[name] = error.code

    threads = [
        threading.Thread(target=wait, args=("expired", expired)),
        threading.Thread(target=wait, args=("cancelled", cancelled)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    cancelled.cancel()
    for thread in threads:
        thread.join(5)
    release.set()
    holder.join()
    assert failures == {
        "expired": grpc.StatusCode.DEADLINE_EXCEEDED,
        "cancelled": grpc.StatusCode.CANCELLED,
    }
    assert started == [] and admission.never_started == 2
    assert admission.run(_context(5.0), lambda: "next") == "next"


def test_admission_holds_calls_that_cannot_finish_in_time():
    admission = Admission(limit=4)
    admission.run(None, lambda: time.sleep(0.3))  # the model takes ~0.3 s
    started = []
    with pytest.raises(ServingError) as caught:
        admission.run(_context(0.05), lambda: started.append("short"))
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and not started
    assert admission.run(_context(5.0), lambda: "long enough") == "long enough"


# -- worker processes ------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    return {
        "hp2": tf_serving_models.half_plus_two_tf2(root / "hp2" / "1"),
        "slow": tf_serving_models.slow_loop_tf2(root / "slow" / "1"),
        "kernel": tf_serving_models.one_kernel_tf2(root / "kernel" / "1"),
    }


def _predict(name, values, dtype=tf.float32):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values), dtype=dtype))
    return request


def _signature_map(metadata):
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    return metadata.model_spec, signature_map


@pytest.mark.slow
def test_a_worker_answers_as_the_version_in_process_and_ends_when_unloaded(exports):
    path = os.fspath(exports["hp2"])
    local = ServableVersion("hp2", 1, path)
    remote = WorkerServable("hp2", 1, path, QUIET).load()
    try:
        assert remote.pid != os.getpid() and _alive(remote.pid)
        assert set(remote.signature_defs) == set(local.signature_defs)
        assert remote.input_infos("") == local.input_infos("")
        request = _predict("hp2", [1.0, 2.0, 5.0])
        assert remote.predict(request, _context(30)) == local.predict(request, _context(30))
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name, regress.model_spec.signature_name = "hp2", "regress_x_to_y"
        for x in (1.0, 4.0):
            regress.input.example_list.examples.add().CopyFrom(tf_serving_models.example(x))
        assert remote.regress(regress, _context(30)) == local.regress(regress, _context(30))
        assert _signature_map(remote.metadata()) == _signature_map(local.metadata())
        bad = _predict("hp2", [[1, 2]], tf.int32)
        with pytest.raises(ServingError) as remote_error:
            remote.predict(bad, _context(30))
        with pytest.raises(ServingError) as local_error:
            local.predict(bad, _context(30))
        assert remote_error.value.code == local_error.value.code
        # The same words, but for the numbers TensorFlow gives its functions.
        assert re.sub(r"\d+", "N", remote_error.value.message) == re.sub(
            r"\d+", "N", local_error.value.message
        )
    finally:
        remote.close()
        remote.join(30)
        local.close()
    assert _wait_gone(remote.pid, 10)
    assert remote.worker.exit_reason and remote.worker.process.returncode == 0


@pytest.mark.slow
def test_a_killed_worker_fails_its_calls_with_unavailable(exports):
    ended = []
    remote = WorkerServable(
        "slow", 1, os.fspath(exports["slow"]), QUIET, on_exit=lambda s, why: ended.append(why)
    ).load()
    failures = []

    def ask():
        try:
            remote.predict(_predict("slow", [20000.0]), _context(60))
        except ServingError as error:
            failures.append(error)

    thread = threading.Thread(target=ask)
    thread.start()
    while remote.worker.in_flight == 0:
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(remote.pid, signal.SIGKILL)
    thread.join(10)
    assert [f.code for f in failures] == [grpc.StatusCode.UNAVAILABLE]
    assert "SIGKILL" in failures[0].message
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(ended) == 1 and "SIGKILL" in ended[0]
    with pytest.raises(ServingError) as caught:
        remote.predict(_predict("slow", [1.0]), _context(5))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.slow
def test_a_call_that_ignores_its_deadline_gets_its_worker_replaced(exports):
    ended = []
    settings = WorkerSettings(log_level="ERROR", stuck_grace_seconds=0.3)
    remote = WorkerServable(
        "kernel",
        1,
        os.fspath(exports["kernel"]),
        settings,
        on_exit=lambda s, why: ended.append(why),
    ).load()
    for _ in range(3):  # the function's first calls; admission learns it is fast
        remote.predict(_predict("kernel", [10.0]), _context(60))
    # one 8000 x 8000 matmul, a single kernel far longer than the deadline and
    # the grace together, also on a fast CPU (4000 could end within them)
    request = _predict("kernel", [8000.0])
    began = time.monotonic()
    with pytest.raises(ServingError) as caught:
        remote.predict(request, _context(0.5))
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 2.5  # answered at the deadline
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended and "did not return within 0.3 s" in ended[0]
    assert _wait_gone(remote.pid, 5)


@pytest.mark.slow
def test_a_version_that_cannot_load_says_why(tmp_path):
    version = tmp_path / "broken" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not a SavedModel")
    remote = WorkerServable("broken", 1, os.fspath(version), QUIET)
    with pytest.raises(ServingError) as caught:
        remote.load()
    assert caught.value.code == grpc.StatusCode.UNKNOWN
    assert "DecodeError" in caught.value.message or "parse" in caught.value.message.lower()
    assert _wait_gone(remote.pid, 10)


@pytest.mark.slow
def test_no_worker_outlives_a_killed_parent(exports, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from serving.worker_servable import WorkerServable
        from serving.worker_process import WorkerSettings
        remote = WorkerServable("hp2", 1, {os.fspath(exports["hp2"])!r},
                                WorkerSettings(log_level="ERROR")).load()
        print(remote.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.kill()
        parent.wait(10)
        assert _wait_gone(pid, 5), "the worker outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


# -- the server with workers ---------------------------------------------------------
def _server_workers(server_pid):
    """`{(model, version): pid}` of a server's worker processes."""
    found = {}
    for pid in loadtest.child_pids(server_pid):
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        named = dict(a[2:].split("=", 1) for a in argv if a.startswith(("--name=", "--version=")))
        if "name" in named:
            found[(named["name"], int(named["version"]))] = pid
    return found


def _wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _code_of(call):
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.slow
def test_swapped_versions_leave_no_worker_behind_and_the_tree_flat(exports, tmp_path):
    base = tmp_path / "swap"
    shutil.copytree(exports["hp2"], base / "1")
    server = LocalServer(
        ["--model_name=swap", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.2"]
    )
    server.start()
    client = ServingClient(server.address, timeout=60, retries=0)
    request = _predict("swap", [2.0])
    tree = []
    try:
        for version in range(2, 6):
            shutil.copytree(exports["hp2"], base / f".{version}")
            os.rename(base / f".{version}", base / str(version))
            _wait(
                lambda v=version: client.call("Predict", request).model_spec.version.value == v,
                180,
                f"version {version} answering",
            )
            shutil.rmtree(base / str(version - 1))
            workers = _wait(
                lambda: len(_server_workers(server.pid)) == 1 and _server_workers(server.pid),
                60,
                "the old version's worker to end",
            )
            assert list(workers) == [("swap", version)]
            tree.append(loadtest.process_tree_rss_mb(server.pid))
        workers = list(_server_workers(server.pid).values())
    finally:
        client.close()
        assert server.stop() == 0
    assert all(_wait_gone(pid, 10) for pid in workers)
    # Each swap replaces the whole worker: the tree does not grow with swaps
    # (in-process, every load of a SavedModel stays in memory).
    assert tree[-1] < tree[0] * 1.15, tree


@pytest.mark.slow
def test_a_killed_worker_fails_its_call_and_comes_back_while_another_model_answers(
    exports, tmp_path
):
    (tmp_path / "models.config").write_text(
        "model_config_list {\n"
        f'  config {{ name: "slow" base_path: "{exports["slow"].parent}" '
        'model_platform: "tensorflow" }\n'
        f'  config {{ name: "hp2" base_path: "{exports["hp2"].parent}" '
        'model_platform: "tensorflow" }\n'
        "}\n"
    )
    server = LocalServer(
        [f"--model_config_file={tmp_path / 'models.config'}", "--file_system_poll_wait_seconds=0.5"]
    )
    server.start()
    client = ServingClient(server.address, timeout=60, retries=0)
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)

    def healthy(name):
        return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status

    other, stop = [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            other.append(_code_of(lambda: client.call("Predict", _predict("hp2", [1.0]), 10)))
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking)
    try:
        asker.start()
        in_flight = {}
        long_call = threading.Thread(
            target=lambda: in_flight.setdefault(
                "code", _code_of(lambda: client.call("Predict", _predict("slow", [60000.0]), 120))
            )
        )
        long_call.start()
        time.sleep(1.0)  # the call runs in the worker
        os.kill(_server_workers(server.pid)[("slow", 1)], signal.SIGKILL)
        long_call.join(30)
        assert in_flight["code"] == grpc.StatusCode.UNAVAILABLE
        serving = health_pb2.HealthCheckResponse.SERVING
        assert healthy("hp2") == serving
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "slow"
        _wait(
            lambda: (
                _code_of(lambda: client.call("Predict", _predict("slow", [1.0])))
                == grpc.StatusCode.OK
            ),
            180,
            "the reloaded version to answer",
        )
        answer = client.call("GetModelStatus", status).model_version_status[0]
        assert answer.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert healthy("slow") == serving and healthy("") == serving
    finally:
        stop.set()
        asker.join(30)
        channel.close()
        client.close()
        log = server.log()
        assert server.stop() == 0
    assert "lost its worker: the worker process was killed by SIGKILL" in log
    assert other and set(other) == {grpc.StatusCode.OK}  # hp2 untouched throughout


@pytest.mark.slow
def test_no_worker_outlives_a_sigkilled_server(exports):
    server = LocalServer(["--model_name=hp2", f"--model_base_path={exports['hp2'].parent}"])
    server.start()
    workers = list(_server_workers(server.pid).values())
    assert len(workers) == 1
    server.kill()
    assert all(_wait_gone(pid, 5) for pid in workers), "a worker outlived its SIGKILLed server"


@pytest.mark.slow
def test_expired_calls_do_not_slow_the_next_one(exports):
    server = LocalServer(["--model_name=kernel", f"--model_base_path={exports['kernel'].parent}"])
    server.start()
    client = ServingClient(server.address, timeout=60, retries=0)
    request = _predict("kernel", [2500.0])  # one matmul of a few tenths of a second

    def timed():
        began = time.monotonic()
        client.call("Predict", request, 60)
        return time.monotonic() - began

    try:
        idle = float(np.median([timed() for _ in range(5)]))
        codes = []
        callers = [
            threading.Thread(
                target=lambda: codes.append(_code_of(lambda: client.call("Predict", request, 0.03)))
            )
            for _ in range(20)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(30)
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 20, codes
        after = timed()
    finally:
        client.close()
        server.stop()
    # Without admission, the 20 expired calls run on and the next call waits
    # for them (about 10x the idle latency on 2 cores); here none started.
    # (Generous: the machine may be shared.)
    assert after < 3 * idle, (after, idle)
