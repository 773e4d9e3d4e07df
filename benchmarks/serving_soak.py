"""Soak benchmark of `python -m serving.server` under attack and faults.

Exports a zoo model (random weights, two weight sets A and B), starts the
server on 127.0.0.1 (batching on; every version in its own worker
process), and until `--swaps` version swaps are done (or for `--minutes`):

- `--clients` gRPC clients send one clip per Predict, `--malformed` of them
  malformed (wrong dtype/rank, missing input, unknown model/version/
  signature, out-of-range int_val, tensor_content and int_val together, a
  negative dimension, a 100 kB model name); every valid answer is checked
  against the in-process model of the version that answered;
- a slow-client attacker keeps 64 header-only streams open (renewed every
  30 s);
- an amplifier sends, in turn, a 60-byte request declaring a 1 GiB tensor,
  a declared-64-MiB padded tensor, a message over the size limit, and heavy
  16-clip calls with a 5 ms deadline;
- a version swapper copies a new version (A, B, A, ...) in, waits until it
  answers, then `--swap-seconds` more;
- once (after a tenth of the swaps, or a third of the minutes) the server
  is killed (SIGKILL) and started again on the same port; its workers must
  be gone within seconds.

It prints valid requests answered / wrong / failed (and failed outside the
restart window: from the kill to 3 s after the server is back), errors by
code, crashes, workers left behind by the killed server, the time from a
version appearing on disk to its first answer, and the RSS of the server's
whole process tree (front end + workers) of the restarted server, taken
just before each swap (one worker then serves): after its first swap and
at the end, and the drift. Targets: 0 wrong, 0 crashes, 0 failed valid
requests outside the restart window, 0 workers left, tree RSS drift
< 10 % (a negative drift: RSS fell). Loopback only; it stops by itself.

    python -m benchmarks.serving_soak --swaps 10
    python -m benchmarks.serving_soak --swaps 100 --docs docs/benchmarks/serving_soak.md
"""

import argparse
import collections
import json
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from benchmarks import report
from clipspec.format import ClipFormat
from keras_classreg import models
from serving import loadtest
from serving.client import ServingClient
from serving.launch import LocalServer
from training.export import export_version

MODEL = "soak"
# Seconds after the server's SIGKILL by which its workers must be gone.
ORPHAN_GRACE_S = 5.0
# How long a new version may take to answer before the swapper moves on.
SWAP_ANSWER_TIMEOUT_S = 300.0
EXTRA_MALFORMED = {
    "out_of_range_int": grpc.StatusCode.INVALID_ARGUMENT,
    "content_and_values": grpc.StatusCode.INVALID_ARGUMENT,
    "negative_dimension": grpc.StatusCode.INVALID_ARGUMENT,
    "huge_model_name": grpc.StatusCode.NOT_FOUND,
}


def _uint8_proto(shape, **values):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, **values)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def malformed_requests(clip):
    """kind -> (request, expected code) for every malformed kind."""
    result = {
        kind: (loadtest.malformed_request(kind, MODEL, clip), code)
        for kind, code in loadtest.MALFORMED_KINDS.items()
    }
    shape = list(clip.shape)
    for kind, proto in (
        ("out_of_range_int", _uint8_proto(shape, int_val=[300])),
        ("content_and_values", _uint8_proto(shape, int_val=[1], tensor_content=clip.tobytes())),
        ("negative_dimension", _uint8_proto([1, -1] + shape[2:], int_val=[1])),
    ):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["clips"].CopyFrom(proto)
        result[kind] = (request, EXTRA_MALFORMED[kind])
    result["huge_model_name"] = (
        loadtest.predict_request("m" * 100_000, clip),
        EXTRA_MALFORMED["huge_model_name"],
    )
    return result


class Soak:
    def __init__(self, work, clients, minutes, malformed, swap_seconds, seed, swaps=None):
        self.work = pathlib.Path(work)
        self.clients = clients
        self.seconds = minutes * 60.0 if minutes else float("inf")
        self.swaps = swaps
        self.malformed, self.swap_seconds = malformed, swap_seconds
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.valid_ok = self.wrong = 0
        self.failed = []  # (time, code) of failed valid requests
        self.codes = collections.Counter()
        self.unexpected = collections.Counter()
        self.latencies = []
        self.crashes = 0
        self.restart_window = None
        self.attacks = collections.Counter()
        self.server = None
        self.appeared = {}  # version -> time its folder appeared
        self.first_answer = {}  # version -> time of its first valid answer
        self.steady_rss = []  # (server pid, swap number, tree MiB) before each swap
        self.swaps_done = 0
        self.orphans = None  # workers of the killed server still alive after the grace
        self.restart_swap = 0  # swaps done when the server was killed

    # -- setup -------------------------------------------------------------
    def prepare(self, model_name, input_shape, num_classes):
        shape = (*input_shape, 3)
        fmt = ClipFormat(
            clip_length=shape[0],
            crop_size=shape[1],
            class_names=[f"class_{i}" for i in range(num_classes)],
        )
        self.sets = {}
        staging = self.work / "staging"
        for index, name in enumerate("AB"):
            keras.utils.set_random_seed(index)  # weight sets A and B differ
            keras_model = models.get(model_name, num_classes=num_classes, input_shape=shape)
            self.sets[name] = pathlib.Path(
                export_version(keras_model, staging, name, fmt, version=1)
            )
        self.clips = [self.rng.integers(0, 256, (1, *shape), dtype=np.uint8) for _ in range(8)]
        self.expected = {}
        for name, path in self.sets.items():
            function = tf.saved_model.load(str(path)).signatures["serving_default"]
            self.expected[name] = [
                function(clips=tf.constant(c))["probabilities"].numpy() for c in self.clips
            ]
        self.base = self.work / MODEL
        self.base.mkdir(parents=True, exist_ok=True)
        self.version = 1
        self.version_set = {1: "A"}
        shutil.copytree(self.sets["A"], self.base / "1")
        self.bad = malformed_requests(self.clips[0])
        self.good = [loadtest.predict_request(MODEL, c) for c in self.clips]

    def in_restart_window(self, when=None):
        window = self.restart_window
        when = time.monotonic() if when is None else when
        return window is not None and window[0] <= when <= window[1]

    # -- workers -----------------------------------------------------------
    def client(self, index, address):
        rng = np.random.default_rng(index)
        kinds = sorted(self.bad)
        client = ServingClient(address, timeout=30, retries=0)
        while not self.stop.is_set():
            bad = rng.random() < self.malformed
            if bad:
                kind = kinds[rng.integers(len(kinds))]
                request, expected = self.bad[kind]
            else:
                choice = int(rng.integers(len(self.good)))
                request = self.good[choice]
            code, response, _, elapsed = loadtest.timed_predict(client, request)
            if code == grpc.StatusCode.UNAVAILABLE:
                self.stop.wait(0.2)  # a server restarting: back off, as clients do
            with self.lock:
                self.codes[code.name] += 1
                if bad:
                    if code != expected and not self.in_restart_window():
                        self.unexpected[f"{kind} -> {code.name}"] += 1
                    continue
                if response is None:
                    self.failed.append((time.monotonic(), code.name))
                    continue
                version = response.model_spec.version.value
                self.first_answer.setdefault(version, time.monotonic())
                weights = self.version_set.get(version)
                got = tf.make_ndarray(response.outputs["probabilities"])
                want = self.expected[weights][choice] if weights else None
                if want is None or got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
                    self.wrong += 1
                else:
                    self.valid_ok += 1
                    self.latencies.append(elapsed)
        client.close()

    def slow_attacker(self, address):
        hold = threading.Event()

        def never():
            hold.wait(3600)
            return
            yield  # unreachable: makes this function a generator

        while not self.stop.is_set():
            channel = grpc.insecure_channel(address)
            method = channel.stream_unary(
                "/tensorflow.serving.ModelService/GetModelStatus",
                request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
                response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
            )
            calls = [method.future(never(), timeout=60) for _ in range(64)]
            self.attacks["slow streams opened"] += 64
            self.stop.wait(30)
            for call in calls:
                call.cancel()
            channel.close()
        hold.set()

    def amplifier(self, address):
        channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=predict_pb2.PredictRequest.SerializeToString,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        heavy = loadtest.predict_request(MODEL, np.repeat(self.clips[0], 8, 0))
        oversized = predict_pb2.PredictRequest()
        oversized.model_spec.name = MODEL
        oversized.inputs["clips"].CopyFrom(
            _uint8_proto([1, 70 * 2**20], tensor_content=b"\0" * (70 * 2**20))
        )
        attacks = []
        for shape in ([1, 2**30], [1, 2**26]):  # 1 GiB refused; 64 MiB admitted
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.inputs["clips"].CopyFrom(_uint8_proto(shape, int_val=[0]))
            attacks.append((f"padded {shape}", request, 30))
        attacks += [
            ("oversized message", oversized, 30),
            ("heavy call, 5 ms deadline", heavy, 0.005),
        ]
        turn = 0
        while not self.stop.wait(0.5):
            name, request, timeout = attacks[turn % len(attacks)]
            turn += 1
            try:
                predict(request, timeout=timeout)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            with self.lock:
                self.attacks[f"{name} -> {code}"] += 1
        channel.close()

    def swapper(self):
        while not self.stop.wait(self.swap_seconds):
            self.sample_steady_rss()
            number = self.version + 1
            weights = "B" if self.version_set[self.version] == "A" else "A"
            with self.lock:
                self.version_set[number] = weights
            staging = self.base / f".{number}"
            shutil.copytree(self.sets[weights], staging)
            os.rename(staging, self.base / str(number))
            self.appeared[number] = time.monotonic()
            self.version = number
            old = number - 2
            if old >= 1 and (self.base / str(old)).exists():
                shutil.rmtree(self.base / str(old))
            waited = time.monotonic()
            while number not in self.first_answer and not self.stop.wait(0.1):
                if time.monotonic() - waited > SWAP_ANSWER_TIMEOUT_S:
                    break
            with self.lock:
                self.attacks["version swaps"] += 1
                self.swaps_done += 1

    def sample_steady_rss(self):
        """The server's process tree RSS now (between swaps: one worker)."""
        server = self.server
        try:
            mib = loadtest.process_tree_rss_mb(server.pid)
        except Exception:  # noqa: BLE001 (a server being restarted: no sample)
            return
        self.steady_rss.append((server.pid, self.swaps_done, mib))

    # -- the run -----------------------------------------------------------
    def finished(self, began):
        if self.swaps is not None:
            return self.swaps_done >= self.swaps
        return time.monotonic() - began >= self.seconds

    def restart_due(self, began):
        if self.swaps is not None:
            return self.swaps_done >= max(1, self.swaps // 10)
        return time.monotonic() - began > self.seconds / 3

    def run(self, server_args):
        import psutil

        server = self.server = LocalServer(server_args, log_path=self.work / "server.log")
        server.start()
        with ServingClient(server.address) as client:
            client.wait_until_available(MODEL)
        address = server.address
        threads = [
            threading.Thread(target=self.client, args=(i, address), daemon=True)
            for i in range(self.clients)
        ]
        threads += [
            threading.Thread(target=self.slow_attacker, args=(address,), daemon=True),
            threading.Thread(target=self.amplifier, args=(address,), daemon=True),
            threading.Thread(target=self.swapper, daemon=True),
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        restarted = False
        while not self.finished(began) and time.monotonic() - began < self.seconds:
            time.sleep(0.5)
            if server.process.poll() is not None:  # died by itself
                self.crashes += 1
                server.start(same_ports=True)
            if not restarted and self.restart_due(began):
                restarted = True
                self.restart_swap = self.swaps_done
                workers = loadtest.child_pids(server.pid)
                killed = time.monotonic()
                self.restart_window = (killed, float("inf"))
                server.kill()
                time.sleep(ORPHAN_GRACE_S)
                self.orphans = sum(
                    1
                    for pid in workers
                    if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                )
                server.start(same_ports=True)
                self.restart_window = (killed, time.monotonic() + 3.0)
        self.sample_steady_rss()
        self.stop.set()
        for thread in threads:
            thread.join(60)
        exit_code = server.stop()
        return self.report(began, exit_code, server.pid)

    def report(self, began, exit_code, last_pid):
        window = self.restart_window
        outside = [t for t, _ in self.failed if window is None or not window[0] <= t <= window[1]]
        steady = [(swap, mib) for pid, swap, mib in self.steady_rss if pid == last_pid]
        # The restarted server's tree after its first swap, and at the end.
        first = next(((swap, mib) for swap, mib in steady if swap > self.restart_swap), None)
        after_first = first[1] if first else float("nan")
        end = steady[-1][1] if steady else float("nan")
        answer_s = [
            self.first_answer[v] - t for v, t in self.appeared.items() if v in self.first_answer
        ]
        ms = np.array(self.latencies) * 1000
        return {
            "cpu": report.cpu_model(),
            "cpus": os.cpu_count(),
            "clients": self.clients,
            "minutes": round((time.monotonic() - began) / 60, 2),
            "swaps": self.swaps_done,
            "valid_answered": self.valid_ok,
            "wrong": self.wrong,
            "failed_valid": len(self.failed),
            "failed_valid_outside_restart_window": len(outside),
            "failed_codes": dict(collections.Counter(c for _, c in self.failed)),
            "errors_by_code": {k: v for k, v in sorted(self.codes.items()) if k != "OK"},
            "unexpected_malformed_answers": dict(self.unexpected),
            "attacks": dict(sorted(self.attacks.items())),
            "crashes": self.crashes,
            "restart_window_s": round(window[1] - window[0], 1) if window else None,
            "workers_left_after_server_kill": self.orphans,
            "version_to_answer_s": {
                "median": round(float(np.median(answer_s)), 2) if answer_s else None,
                "max": round(float(np.max(answer_s)), 2) if answer_s else None,
                "swaps_answered": f"{len(answer_s)} of {len(self.appeared)}",
            },
            "tree_rss_mb": {
                "after_first_swap": round(after_first, 1),
                "first_swap": first[0] if first else None,
                "end": round(end, 1),
                "end_swap": steady[-1][0] if steady else None,
                "peak_between_swaps": round(max((m for _, m in steady), default=float("nan")), 1),
                "drift_pct": round(100 * (end - after_first) / after_first, 2),
            },
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "server_exit_code": exit_code,
        }


def passed(result):
    return (
        result["wrong"] == 0
        and result["crashes"] == 0
        and result["failed_valid_outside_restart_window"] == 0
        and result["tree_rss_mb"]["drift_pct"] < 10  # growth; negative: RSS fell
        and not result["workers_left_after_server_kill"]
        and not result["unexpected_malformed_answers"]
    )


def _rss_text(result):
    rss = result["tree_rss_mb"]
    return (
        f"{rss['after_first_swap']} MiB after swap {rss['first_swap']} -> "
        f"{rss['end']} MiB after swap {rss['end_swap']} (drift {rss['drift_pct']} %; "
        f"peak between swaps {rss['peak_between_swaps']} MiB)"
    )


def _answer_text(result):
    answer = result["version_to_answer_s"]
    return (
        f"median {answer['median']} s, max {answer['max']} s "
        f"({answer['swaps_answered']} versions answered)"
    )


def print_report(result):
    print(
        f"CPU: {result['cpu']} ({result['cpus']} logical CPUs); "
        f"{result['clients']} clients for {result['minutes']} min, {result['swaps']} swaps"
    )
    print(
        f"valid requests: answered {result['valid_answered']}, wrong "
        f"{result['wrong']}, failed {result['failed_valid']} "
        f"({result['failed_valid_outside_restart_window']} outside the "
        f"{result['restart_window_s']} s restart window) {result['failed_codes']}"
    )
    print(f"errors by code: {result['errors_by_code']}")
    print(
        f"malformed answered with another code than expected: "
        f"{result['unexpected_malformed_answers'] or 'none'}"
    )
    print(f"attacks: {result['attacks']}")
    print(
        f"crashes: {result['crashes']}; workers alive {ORPHAN_GRACE_S:g} s after the "
        f"server's SIGKILL: {result['workers_left_after_server_kill']}"
    )
    print(f"version on disk -> first answer: {_answer_text(result)}")
    print(f"server process tree RSS (restarted server, between swaps): {_rss_text(result)}")
    print(f"valid latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    print(
        "targets (0 wrong, 0 crashes, 0 failed outside the restart window, 0 workers "
        f"left, tree RSS drift < 10 %): {'met' if passed(result) else 'NOT met'}"
    )


def write_docs(result, path, command):
    lines = [
        f"{result['clients']} clients for {result['minutes']} min, {result['swaps']} version "
        "swaps; every version in its own worker process.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| valid requests answered / wrong / failed | {result['valid_answered']} / "
        f"{result['wrong']} / {result['failed_valid']} | 0 wrong |",
        f"| failed valid requests outside the restart window "
        f"({result['restart_window_s']} s) | "
        f"{result['failed_valid_outside_restart_window']} | 0 |",
        f"| errors by code | {result['errors_by_code']} | |",
        f"| malformed answered with an unexpected code | "
        f"{result['unexpected_malformed_answers'] or 'none'} | none |",
        f"| attacks | {result['attacks']} | |",
        f"| crashes | {result['crashes']} | 0 |",
        f"| workers alive {ORPHAN_GRACE_S:g} s after the server's SIGKILL | "
        f"{result['workers_left_after_server_kill']} | 0 |",
        f"| version on disk -> its first answer | {_answer_text(result)} | |",
        f"| server process tree RSS (front end + workers) of the restarted server, "
        f"between swaps | {_rss_text(result)} | drift < 10 % |",
        f"| valid latency p50 / p99 | {result['p50_ms']} / {result['p99_ms']} ms | |",
        "",
    ]
    report.write_page(
        path, "Serving soak (`benchmarks/serving_soak.py`)", command, ["\n".join(lines)]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Soak benchmark of python -m serving.server under attack "
        "and faults (see the module docstring)."
    )
    parser.add_argument(
        "--swaps",
        type=int,
        default=None,
        help="Run until this many version swaps have answered (then --minutes, if given, "
        "only bounds the run).",
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="Duration without --swaps. Default: 10."
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--malformed", type=float, default=0.05)
    parser.add_argument(
        "--swap-seconds",
        type=float,
        default=20.0,
        help="Seconds between version swaps. Default: 20.",
    )
    parser.add_argument("--model", default="resnet18_3d", choices=models.names())
    parser.add_argument(
        "--input-shape", type=int, nargs=3, default=(8, 64, 64), metavar=("T", "H", "W")
    )
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--docs",
        metavar="FILE",
        default=None,
        help="Also write the figures, the command and the CPU model as Markdown to FILE.",
    )
    args = parser.parse_args(argv)
    if args.swaps is None and args.minutes is None:
        args.minutes = 10.0
    if (
        (args.minutes is not None and args.minutes <= 0)
        or (args.swaps is not None and args.swaps < 2)
        or args.clients < 1
        or not 0 <= args.malformed <= 1
    ):
        parser.error("--minutes > 0, --swaps >= 2, --clients >= 1 and 0 <= --malformed <= 1")
    work = pathlib.Path(tempfile.mkdtemp(prefix="serving-soak-"))
    soak = Soak(
        work,
        args.clients,
        args.minutes,
        args.malformed,
        args.swap_seconds,
        args.seed,
        args.swaps,
    )
    soak.prepare(args.model, tuple(args.input_shape), args.num_classes)
    batching = work / "batching_parameters.txt"
    batching.write_text(
        "max_batch_size { value: 16 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
    )
    result = soak.run(
        [
            f"--model_name={MODEL}",
            f"--model_base_path={soak.base}",
            "--file_system_poll_wait_seconds=1",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            "--grpc_max_threads=32",
        ]
    )
    result["work_dir"] = str(work)
    print(json.dumps(result, indent=2) if args.json else "", end="")
    print_report(result)
    if args.docs:
        write_docs(result, args.docs, report.command("benchmarks.serving_soak", argv))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
