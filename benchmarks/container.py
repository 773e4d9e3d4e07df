"""Builds the project's images (docker/Dockerfile) and tests the model-server
container against the same export served outside it.

    docker/build_and_test.sh [--engine podman|docker] [--clips DIR] [--install]
        [--keep] [--no-train-image] [--docs docs/benchmarks/container.md]

(`docker/build_and_test.sh` runs `python -m benchmarks.container` with the
repository's Python.) Steps, each timed:

1. engine: podman, else docker with a running daemon (`--install`:
   apt-get installs podman, runc, catatonit, iptables and debootstrap first
   where no engine is installed);
2. base: `debian:bookworm-slim` as it is, pulled, or, only where no
   registry answers, made with debootstrap (docker/make_debian_base.sh);
3. the model-server and train images built (the host's extra CA
   certificates passed in for HTTPS through a proxy), with their sizes;
4. a small untrained ResNet-18-3D (the real clips' labels as classes)
   exported with `training.export` in the train image;
5. that export served outside (`python -m serving.server` here) and by the
   container (`--init`, loopback ports, the export mounted read-only);
6. the real clips classified with `python -m serving.client` over gRPC and
   REST on both servers (Predict), and their centre views with Classify
   (gRPC and REST): every answer of the container equals the outside one,
   and every REST answer the gRPC one (both read the model's clip format);
7. the image's HEALTHCHECK healthy; the server runs as a non-root user;
8. `stop` (SIGTERM): the server exits 0 within STOP_SECONDS;
9. everything made is removed (`--keep`: the images stay, for the layer
   cache).

Exit status: 0 passed, 1 failed, 2 usage, 77 skipped: containers cannot run
on this machine (no engine, no way to get the base image, no container
starts), said in one line.
"""

import argparse
import base64
import contextlib
import datetime
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from benchmarks import container_engine, real_clips, report
from benchmarks.container_engine import Unavailable

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
IGNOREFILE = ROOT / "docker" / "Dockerfile.dockerignore"
MAKE_BASE = ROOT / "docker" / "make_debian_base.sh"
CA_FOLDER = ROOT / "docker" / "ca-certificates"
HOST_CA_FOLDER = pathlib.Path("/usr/local/share/ca-certificates")
SERVER_IMAGE = "classreg-model-server:container-test"
TRAIN_IMAGE = "classreg-train:container-test"
MODEL_NAME = "classreg"
SKIPPED = 77
# A container stopped with SIGTERM must be gone within this many seconds:
# an idle server drains in about a second, the engine adds its own
# (measured up to ~9 s in all on a 2-core machine at load average 16);
# the engine's limit before it sends SIGKILL is STOP_TIMEOUT.
STOP_SECONDS = 15
STOP_TIMEOUT = 30
READY_SECONDS = 300
# Scores are compared as the client prints them (6 decimals) and as Classify
# returns them (float32): the same TensorFlow on the same CPU gives the same
# numbers; one unit in the last printed decimal is allowed for rounding.
SCORE_TOLERANCE = 2e-6


class CheckFailed(Exception):
    """An answer or a behaviour of the container that is wrong."""


class Steps:
    """Timed steps: prints each as it ends and keeps `(name, seconds, note)`."""

    def __init__(self):
        self.rows = []

    @contextlib.contextmanager
    def __call__(self, name):
        print(f"[container] {name} ...", flush=True)
        started = time.perf_counter()
        notes = []
        yield notes
        seconds = time.perf_counter() - started
        self.rows.append((name, round(seconds, 1), "; ".join(notes)))
        note = f" ({'; '.join(notes)})" if notes else ""
        print(f"[container] {name}: {seconds:.1f} s{note}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def grpc_health(address, timeout=2.0):
    """The overall `grpc.health.v1` status name at `address`, or the error."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as error:
        return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def wait_serving(address, alive, what, timeout=READY_SECONDS):
    """Waits until `address` answers SERVING; raises CheckFailed when
    `alive()` says the server is gone, or at the timeout."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = grpc_health(address)
        if status == "SERVING":
            return
        problem = alive()
        if problem:
            raise CheckFailed(f"{what} stopped before serving: {problem}")
        time.sleep(1.0)
    raise CheckFailed(f"{what} not SERVING after {timeout} s (health: {status})")


def compare_scores(where, expected, got, tolerance=SCORE_TOLERANCE):
    """Raises CheckFailed unless `got` has `expected`'s classes in the same
    order with scores within `tolerance`; returns the largest difference."""
    if [name for name, _ in got] != [name for name, _ in expected]:
        raise CheckFailed(
            f"{where}: classes {[n for n, _ in got]} != {[n for n, _ in expected]} outside"
        )
    worst = max((abs(a - b) for (_, a), (_, b) in zip(expected, got)), default=0.0)
    if worst > tolerance:
        raise CheckFailed(f"{where}: scores {got} != {expected} outside (max diff {worst:.2g})")
    return worst


def compare_client_answers(what, expected, got):
    """Compares `python -m serving.client --json` records, input by input
    (paths, views, model version, top-k classes and scores); returns the
    largest score difference."""
    if [r.get("path") for r in got] != [r.get("path") for r in expected]:
        raise CheckFailed(f"{what}: answered {len(got)} inputs, expected {len(expected)}")
    worst = 0.0
    for want, have in zip(expected, got):
        where = f"{what}: {pathlib.Path(want['path']).name}"
        for record in (want, have):
            if "error" in record:
                raise CheckFailed(f"{where}: error {record['error']}")
        for field in ("num_views", "num_frames", "model_version"):
            if have[field] != want[field]:
                raise CheckFailed(f"{where}: {field} {have[field]} != {want[field]} outside")
        worst = max(
            worst,
            compare_scores(
                where,
                [(c["class"], c["score"]) for c in want["top_k"]],
                [(c["class"], c["score"]) for c in have["top_k"]],
            ),
        )
    return worst


class ContainerTest:
    """The steps of the module's docstring; `run()` then `cleanup()`."""

    def __init__(self, args):
        self.args = args
        self.steps = Steps()
        self.facts = {}
        self.engine = None
        self.work = None
        self.container = f"classreg-container-test-{os.getpid()}"
        self.outside = None
        self.outside_log = None
        self.base_made = False
        self.images = []
        self.copied_certificates = []

    # -- set-up ---------------------------------------------------------
    def find_engine(self):
        with self.steps("engine") as notes:
            try:
                self.engine = container_engine.find_engine(self.args.engine)
            except Unavailable:
                if not self.args.install:
                    raise
                container_engine.install_packages()
                notes.append("installed " + " ".join(container_engine.APT_PACKAGES))
                self.engine = container_engine.find_engine(self.args.engine)
            version = self.engine("--version").stdout.strip()
            notes.append(version)
            self.facts["engine"] = version
            if self.args.install and self.engine.podman and shutil.which("debootstrap") is None:
                container_engine.install_packages(("debootstrap",))

    def get_base(self):
        with self.steps("base image") as notes:
            how = container_engine.ensure_base(self.engine, MAKE_BASE)
            self.base_made = how == "made"
            container_engine.can_run(self.engine)
            size = self.engine.image_size(container_engine.BASE_IMAGE)
            notes.append(f"{container_engine.BASE_IMAGE} {how}, {size / 1e6:.0f} MB")
            self.facts["base"] = how
            self.facts["base_mb"] = round(size / 1e6)

    def copy_certificates(self):
        """The host's extra CAs into docker/ca-certificates/ for the build
        (removed in cleanup); files already there are left alone."""
        folder = pathlib.Path(self.args.ca_certificates)
        for source in sorted(folder.glob("*.crt")) if folder.is_dir() else ():
            target = CA_FOLDER / source.name
            if not target.exists():
                shutil.copyfile(source, target)
                self.copied_certificates.append(target)

    def build(self, target, tag):
        with self.steps(f"build {target} image") as notes:
            command = self.engine.build_command(DOCKERFILE, IGNOREFILE, target, tag, ROOT)
            log = self.work / f"build-{target}.log"
            with open(log, "w") as handle:
                done = subprocess.run(
                    command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ, DOCKER_BUILDKIT="1"),
                )
            self.images.append(tag)
            if done.returncode != 0:
                tail = log.read_text(errors="replace").splitlines()[-25:]
                print("\n".join(tail), file=sys.stderr)
                raise CheckFailed(f"building {target} failed ({done.returncode}); log above")
            size = self.engine.image_size(tag)
            notes.append(f"{size / 1e6:.0f} MB")
            self.facts[f"{target}_mb"] = round(size / 1e6)

    # -- the export -----------------------------------------------------
    def write_model(self, labels):
        """A small untrained ResNet-18-3D with the clips' labels as its
        classes, saved as model.keras with its clip_format.json."""
        import keras

        from clipspec.format import ClipFormat
        from keras_classreg import models

        classes = tuple(dict.fromkeys(labels))
        keras.utils.set_random_seed(0)
        model = models.get(
            "resnet18_3d", num_classes=len(classes), input_shape=(8, 64, 64, 3), widen_factor=0.25
        )
        model.save(self.work / "model.keras")
        fmt = ClipFormat(clip_length=8, crop_size=64, class_names=classes, num_clips=4)
        (self.work / "clip_format.json").write_text(fmt.to_json())

    def export(self):
        with self.steps("export (training.export)") as notes:
            arguments = [
                "training.export",
                "--model",
                "/work/model.keras",
                "--clip-format",
                "/work/clip_format.json",
                "--export-base",
                "/work/exports",
                "--name",
                MODEL_NAME,
            ]
            if self.args.no_train_image:
                command = [
                    sys.executable,
                    "-m",
                    *(a.replace("/work", str(self.work)) for a in arguments),
                ]
                notes.append("on this machine")
            else:
                command = self.engine.command(
                    "run",
                    "--rm",
                    "--init",
                    *self.engine.limits,
                    "--user",
                    f"{os.getuid()}:{os.getgid()}",
                    "-v",
                    f"{self.work}:/work:z",
                    TRAIN_IMAGE,
                    *arguments,
                )
                notes.append("in the train image")
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise CheckFailed(
                    f"training.export failed ({done.returncode}): {done.stderr[-2000:]}"
                )
        return self.work / "exports"

    # -- the two servers ------------------------------------------------
    def serve_outside(self, exports, grpc_port, rest_port):
        with self.steps("serve the export outside (python -m serving.server)"):
            # the log stays open while the server runs (closed in cleanup)
            self.outside_log = open(self.work / "outside-server.log", "w")
            self.outside = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serving.server",
                    f"--port={grpc_port}",
                    f"--rest_api_port={rest_port}",
                    f"--model_name={MODEL_NAME}",
                    f"--model_base_path={exports / MODEL_NAME}",
                ],
                stdout=self.outside_log,
                stderr=subprocess.STDOUT,
            )

            def alive():
                if self.outside.poll() is None:
                    return None
                log = self._tail(self.work / "outside-server.log")
                return f"exit {self.outside.returncode}: {log}"

            wait_serving(f"127.0.0.1:{grpc_port}", alive, "the server outside")

    @staticmethod
    def _tail(path, lines=5):
        return " | ".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])

    def start_container(self, exports, grpc_port, rest_port):
        with self.steps("start the container and load the model"):
            run = [
                "run",
                "--detach",
                "--init",
                "--name",
                self.container,
                *self.engine.limits,
                "-p",
                f"127.0.0.1:{grpc_port}:8500",
                "-p",
                f"127.0.0.1:{rest_port}:8501",
                "-v",
                f"{exports}:/models:ro,z",
                "-e",
                f"MODEL_NAME={MODEL_NAME}",
            ]
            if not self.engine.podman:
                # docker runs HEALTHCHECK on its own timer: check often here
                run += ["--health-interval", "2s"]
            self.engine(*run, SERVER_IMAGE)

            def alive():
                if self.engine.inspect(self.container, "{{.State.Running}}") == "true":
                    return None
                logs = self.engine("logs", self.container, check=False)
                return last_lines(logs.stdout + logs.stderr)

            wait_serving(f"127.0.0.1:{grpc_port}", alive, "the container")

    # -- the checks -----------------------------------------------------
    def classify_with_client(self, clips, servers):
        """`python -m serving.client --json` over gRPC and REST against
        both servers; every container answer must equal the outside one, and
        REST's the gRPC one (both read the model's clip format)."""
        answers = {}
        for (where, protocol), address in servers.items():
            with self.steps(f"classify {len(clips)} clips: serving.client {protocol}, {where}"):
                command = [sys.executable, "-m", "serving.client", "--json", "--server", address]
                command += ["--rest"] if protocol == "REST" else []
                done = subprocess.run(
                    [*command, "--model", MODEL_NAME, *map(str, clips)],
                    capture_output=True,
                    text=True,
                )
                answers[where, protocol] = [json.loads(line) for line in done.stdout.splitlines()]
                if done.returncode != 0:
                    raise CheckFailed(
                        f"serving.client {protocol} ({where}) exited {done.returncode}: "
                        f"{done.stdout[-1000:]} {done.stderr[-1000:]}"
                    )
        worst = 0.0
        for protocol in ("gRPC", "REST"):
            worst = max(
                worst,
                compare_client_answers(
                    f"Predict {protocol}",
                    answers["outside", protocol],
                    answers["container", protocol],
                ),
            )
        for where in ("outside", "container"):
            worst = max(
                worst,
                compare_client_answers(
                    f"Predict REST against gRPC ({where})",
                    answers[where, "gRPC"],
                    answers[where, "REST"],
                ),
            )
        return worst

    def classify_examples(self, clips, servers):
        """Classify (TF Serving's RPC, `classify` signature) of every clip's
        views as tf.Examples of JPEG frames, over gRPC and REST, both
        servers; the container's answers must equal the outside ones (same
        protocol). Returns the largest score difference."""
        from serving.client import ServingClient, video_views
        from serving.rest_client import RestClient
        from serving.rest_http import model_path
        from training.export import clip_example

        with self.steps(
            f"Classify {len(clips)} clips' views: gRPC and REST, both servers"
        ) as notes:
            with ServingClient(servers["outside", "gRPC"]) as client:
                clip_format = client.clip_format(MODEL_NAME)
            requests = []
            for path in clips:
                views = video_views(str(path), clip_format)[0]
                requests.append([clip_example(view) for view in views])
            results = {}
            for (where, protocol), address in servers.items():
                answers = []
                for examples in requests:
                    if protocol == "gRPC":
                        with ServingClient(address) as client:
                            answers.append(client.classify(MODEL_NAME, examples))
                    else:
                        with RestClient(address) as client:
                            body = {
                                "signature_name": "classify",
                                "examples": [rest_example(e) for e in examples],
                            }
                            answer = client.call(model_path(MODEL_NAME, suffix=":classify"), body)
                            answers.append([[tuple(p) for p in r] for r in answer["results"]])
                results[where, protocol] = answers
            worst = 0.0
            for protocol in ("gRPC", "REST"):
                outside, inside = results["outside", protocol], results["container", protocol]
                for path, want, have in zip(clips, outside, inside):
                    if len(want) != len(have):
                        raise CheckFailed(
                            f"Classify {protocol}: {len(have)} results, {len(want)} outside"
                        )
                    for index, (a, b) in enumerate(zip(want, have)):
                        where = f"Classify {protocol}: {path.name} view {index}"
                        worst = max(worst, compare_scores(where, a, b))
            notes.append(f"{sum(len(r) for r in requests)} examples, max diff {worst:.1g}")
        return worst

    def check_health_and_user(self):
        with self.steps("HEALTHCHECK and user") as notes:
            configured = self.engine(
                "image", "inspect", "--format", "{{json .Config.Healthcheck}}", SERVER_IMAGE
            ).stdout.strip()
            if configured in ("", "null", "<nil>"):
                raise CheckFailed("the image has no HEALTHCHECK (built without --format docker?)")
            if self.engine.podman:
                done = self.engine("healthcheck", "run", self.container, check=False)
                status = (
                    "healthy" if done.returncode == 0 else last_lines(done.stdout + done.stderr)
                )
            else:
                deadline = time.monotonic() + 60
                status = None
                while time.monotonic() < deadline and status != "healthy":
                    time.sleep(1)
                    status = self.engine.inspect(self.container, "{{.State.Health.Status}}")
            if status != "healthy":
                raise CheckFailed(f"HEALTHCHECK: {status}")
            user = self.engine("exec", self.container, "id", "-u").stdout.strip()
            if user == "0":
                raise CheckFailed("the server runs as root in the container")
            notes.append(f"healthy, uid {user}")

    def stop_container(self):
        with self.steps("stop the container (SIGTERM)") as notes:
            started = time.perf_counter()
            self.engine("stop", "--time", STOP_TIMEOUT, self.container)
            seconds = time.perf_counter() - started
            code = self.engine.inspect(self.container, "{{.State.ExitCode}}")
            logs = self.engine("logs", self.container, check=False)
            text = logs.stdout + logs.stderr
            drain = server_shutdown_seconds(text)
            notes.append(
                f"stopped in {seconds:.1f} s (the server's own shutdown: "
                f"{'?' if drain is None else f'{drain:.1f}'} s), exit {code}"
            )
            self.facts["stop_seconds"] = round(seconds, 1)
            if code != "0":
                raise CheckFailed(f"exit status {code} after SIGTERM: {last_lines(text)}")
            if seconds > STOP_SECONDS:
                raise CheckFailed(f"SIGTERM took {seconds:.1f} s (limit {STOP_SECONDS} s)")
            if "Server stopped" not in text:
                raise CheckFailed(f"no 'Server stopped' in the log: {last_lines(text)}")

    # -- all of it --------------------------------------------------------
    def run(self, clips):
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="classreg-container-"))
        self.work.chmod(0o755)  # the container's user reads the export
        self.find_engine()
        self.get_base()
        self.copy_certificates()
        self.build("model-server", SERVER_IMAGE)
        if not self.args.no_train_image:
            self.build("train", TRAIN_IMAGE)
        self.write_model([label for _, label in clips])
        exports = self.export()
        ports = [free_port() for _ in range(4)]
        servers = {
            ("outside", "gRPC"): f"127.0.0.1:{ports[0]}",
            ("outside", "REST"): f"127.0.0.1:{ports[1]}",
            ("container", "gRPC"): f"127.0.0.1:{ports[2]}",
            ("container", "REST"): f"127.0.0.1:{ports[3]}",
        }
        self.serve_outside(exports, ports[0], ports[1])
        self.start_container(exports, ports[2], ports[3])
        paths = [path for path, _ in clips]
        predict = self.classify_with_client(paths, servers)
        classify = self.classify_examples(paths, servers)
        self.facts["clips"] = len(paths)
        self.facts["max_score_difference"] = max(predict, classify)
        self.check_health_and_user()
        self.stop_container()

    def cleanup(self):
        with self.steps("clean up") as notes:
            if self.outside is not None and self.outside.poll() is None:
                self.outside.send_signal(signal.SIGTERM)
                try:
                    self.outside.wait(60)
                except subprocess.TimeoutExpired:
                    self.outside.kill()
                    self.outside.wait()
            if self.outside_log is not None:
                self.outside_log.close()
            if self.engine is not None:
                self.engine("rm", "--force", self.container, check=False)
                removed = [] if self.args.keep else list(self.images)
                if self.base_made and not self.args.keep:
                    removed.append(container_engine.BASE_IMAGE)
                for image in removed:
                    self.engine("rmi", "--force", image, check=False)
                if self.engine.podman and removed:
                    # the build stages' layers
                    self.engine("image", "prune", "--force", check=False)
                notes.append(f"removed {', '.join(removed) or 'the container'}")
            for path in self.copied_certificates:
                path.unlink(missing_ok=True)
            if self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)


def server_shutdown_seconds(log):
    """Seconds between the server's "Shutting down" and "Server stopped"
    log lines (their timestamps), or None when they are not both there."""
    stamps = {}
    for line in log.splitlines():
        for key, marker in (("start", "Shutting down"), ("end", "Server stopped")):
            if marker in line:
                with contextlib.suppress(ValueError):
                    stamps[key] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    if len(stamps) != 2:
        return None
    return (stamps["end"] - stamps["start"]).total_seconds()


def last_lines(text, count=3):
    return " | ".join(line for line in (text or "").strip().splitlines()[-count:]) or "no output"


def rest_example(example):
    """A tf.train.Example as TF Serving's REST JSON (bytes as {"b64": ...})."""
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        if kind == "bytes_list":
            values = [{"b64": base64.b64encode(v).decode("ascii")} for v in values]
        features[name] = values
    return features


def write_docs(path, steps, facts, command):
    rows = [[name, seconds, note] for name, seconds, note in steps.rows]
    rows.append(["**total**", round(sum(s for _, s, _ in steps.rows), 1), ""])
    sizes = report.markdown_table(
        ["image", "size (MB, uncompressed)"],
        [
            [f"`{container_engine.BASE_IMAGE}` ({facts['base']})", facts["base_mb"]],
            ["model server (`--target model-server`)", facts["model-server_mb"]],
            *([["train (`--target train`)", facts["train_mb"]]] if "train_mb" in facts else []),
        ],
    )
    text = (
        f"Engine: {facts['engine']}. Base image: {facts['base']}"
        + (" (debootstrap, as on a fresh machine)" if facts["base"] == "made" else "")
        + f". The container's answers for the {facts['clips']} shared real clips (Predict "
        "through `serving.client`, gRPC and REST; Classify of every view, gRPC and REST) "
        "equal those of the same export served outside it: largest score difference "
        f"{facts['max_score_difference']:.1g}. SIGTERM stopped it in "
        f"{facts['stop_seconds']} s with exit status 0. Build times depend on what the "
        "engine's layer cache already holds and on the network (PyPI, the Debian mirror)."
    )
    return report.write_page(
        path,
        "Container images: build times and sizes, the model-server container tested",
        command,
        [text, sizes, report.markdown_table(["step", "seconds", "what"], rows)],
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="docker/build_and_test.sh",
        description="Build the project's images and test the model-server container "
        "against the same export served outside it (exit 77: containers cannot run here).",
    )
    parser.add_argument(
        "--engine", choices=("auto", "podman", "docker"), default="auto", help="Default: auto."
    )
    parser.add_argument(
        "--clips",
        default=None,
        metavar="DIR",
        help="Folder of the shared real clips (with labels.csv). Default: "
        "shared/data/real-clips beside the repository, as the tests.",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="apt-get install podman, runc, catatonit, iptables and debootstrap "
        "where no engine is installed (root on Debian; what CI does).",
    )
    parser.add_argument(
        "--ca-certificates",
        default=str(HOST_CA_FOLDER),
        metavar="DIR",
        help="Extra CA certificates (*.crt) the build trusts. Default: %(default)s.",
    )
    parser.add_argument(
        "--no-train-image",
        action="store_true",
        help="Build only the model-server image (export on this machine).",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the images (the layer cache) afterwards."
    )
    parser.add_argument("--docs", metavar="FILE", help="Write the times and sizes to FILE.")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    folder = pathlib.Path(args.clips) if args.clips else real_clips.real_clips_dir()
    if not (folder / "labels.csv").is_file():
        print(f"container test skipped: no real clips at {folder} (give --clips DIR)")
        return SKIPPED
    clips = real_clips.read_labels(folder)
    test = ContainerTest(args)
    status = 0
    try:
        test.run(clips)
    except Unavailable as reason:
        print(f"container test skipped: {reason}", flush=True)
        status = SKIPPED
    except (CheckFailed, RuntimeError, subprocess.SubprocessError) as error:
        print(f"container test FAILED: {error}", file=sys.stderr, flush=True)
        status = 1
    finally:
        test.cleanup()
    print(report.markdown_table(["step", "seconds", "what"], test.steps.rows))
    print(f"total: {sum(s for _, s, _ in test.steps.rows):.1f} s", flush=True)
    if status == 0:
        print(f"container test passed: {json.dumps(test.facts)}")
        if args.docs:
            command = " ".join(["docker/build_and_test.sh", *argv])
            print(f"wrote {write_docs(args.docs, test.steps, test.facts, command)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
