"""The project's images (docker/Dockerfile, its entrypoint and health check,
compose.yaml) and the container test's helpers (benchmarks/container*.py),
checked without a container engine. Building and running the images is
docker/build_and_test.sh (CI runs it after the test suite)."""

import os
import pathlib
import stat
import subprocess
import sys
from concurrent import futures

import pytest
import yaml

from benchmarks import container, container_engine

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def stages(dockerfile):
    """`{stage name: [instruction lines]}` of a Dockerfile, continuation
    lines joined, comments dropped, in order."""
    lines, current = [], ""
    for raw in dockerfile.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    found, name = {}, None
    for line in lines:
        if line.startswith("FROM "):
            words = line.split()
            name = words[words.index("AS") + 1] if "AS" in words else words[1]
            found[name] = []
        elif name is not None:
            found[name].append(line)
    return found


def test_model_server_image_has_the_official_images_interface():
    found = stages((DOCKER / "Dockerfile").read_text())
    assert list(found)[-1] == "model-server", "the model server must be the default target"
    server = " ".join(found["model-server"])
    for setting in ("MODEL_BASE_PATH=/models", "MODEL_NAME=model", "GRPC_PORT=8500", "PORT=8501"):
        assert setting in server, setting
    assert "EXPOSE 8500 8501" in server
    assert "HEALTHCHECK " in server
    users = [line.split()[1] for line in found["model-server"] if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["/usr/local/bin/classreg-model-server-entrypoint"]' in server
    # TensorFlow for CPU, and the `tensorflow` requirement dropped.
    build = " ".join(found["tensorflow"])
    assert "ARG TENSORFLOW=tensorflow-cpu" in build
    assert "'tensorflow; sys_platform == \"never\"'" in build


def test_images_run_as_a_user_and_leave_build_tools_behind():
    found = stages((DOCKER / "Dockerfile").read_text())
    for name in ("train", "model-server"):
        lines = found[name]
        assert any(line.startswith("USER classreg") for line in lines), name
        copies = [line for line in lines if line.startswith("COPY --from=")]
        assert copies and all("/opt/venv /opt/venv" in line for line in copies), name
    runtime = " ".join(found["runtime"])
    assert "--no-install-recommends python3 " in runtime
    assert "python3-venv" not in runtime and "rm -rf /var/lib/apt/lists/*" in runtime


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for lines in stages((DOCKER / "Dockerfile").read_text()).values():
        for line in lines:
            words = line.split()
            if words[0] != "COPY" or words[1].startswith("--from="):
                continue
            for source in words[1:-1]:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


def test_entrypoint_passes_tf_servings_flags(tmp_path):
    # A stand-in classreg-model-server prints the arguments it gets.
    fake = tmp_path / "classreg-model-server"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(
        os.environ,
        PATH=f"{tmp_path}:{os.environ['PATH']}",
        MODEL_NAME="classreg",
        MODEL_BASE_PATH="/models",
        GRPC_PORT="8500",
        PORT="8501",
    )
    done = subprocess.run(
        [str(DOCKER / "model-server-entrypoint.sh"), "--enable_batching", "--port=9000"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert done.stdout.split("\n")[:-1] == [
        "--host=0.0.0.0",
        "--port=8500",
        "--rest_api_port=8501",
        "--model_name=classreg",
        "--model_base_path=/models/classreg",
        "--enable_batching",
        "--port=9000",  # a later flag wins in the server's parser
    ]


def test_a_later_flag_wins_in_the_servers_parser():
    from serving.server import build_parser

    args = build_parser().parse_args(["--port=8500", "--host=0.0.0.0", "--port=9000"])
    assert (args.port, args.host) == (9000, "0.0.0.0")


@pytest.mark.parametrize("script", sorted(p.name for p in DOCKER.glob("*.sh")))
def test_shell_scripts_parse_and_are_executable(script):
    path = DOCKER / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_healthcheck_script(tmp_path):
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def check(grpc_port):
        return subprocess.run(
            [sys.executable, str(DOCKER / "healthcheck.py")],
            capture_output=True,
            text=True,
            env=dict(os.environ, GRPC_PORT=str(grpc_port)),
            timeout=60,
        )

    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        done = check(port)
        assert done.returncode == 0 and "SERVING" in done.stdout
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        done = check(port)
        assert done.returncode == 1 and "NOT_SERVING" in done.stdout
    finally:
        server.stop(0)
    done = check(port)  # nothing listens any more
    assert done.returncode == 1 and "unhealthy" in done.stdout


def test_compose_serves_with_the_projects_image():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    server = compose["services"]["model-server"]
    assert server["build"] == {
        "context": "..",
        "dockerfile": "docker/Dockerfile",
        "target": "model-server",
    }
    assert server["init"] is True
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])
    assert server["volumes"] == ["../exports:/models:ro"]
    assert compose["services"]["train"]["build"]["target"] == "train"
    gpu = compose["services"]["train-gpu"]
    assert gpu["build"]["args"]["TENSORFLOW"] == "tensorflow[and-cuda]"


# --- benchmarks.container: the comparisons and the engine's command line ----
def test_scores_must_match_in_order_and_value():
    expected = [("run", 0.7), ("jump", 0.2)]
    assert container.compare_scores("x", expected, [("run", 0.7000015), ("jump", 0.2)]) < 2e-6
    with pytest.raises(container.CheckFailed, match="classes"):
        container.compare_scores("x", expected, [("jump", 0.2), ("run", 0.7)])
    with pytest.raises(container.CheckFailed, match="max diff"):
        container.compare_scores("x", expected, [("run", 0.71), ("jump", 0.2)])


def test_client_answers_are_compared_input_by_input():
    record = {
        "path": "/clips/a.mp4",
        "top_k": [{"class": "run", "score": 0.5}],
        "num_views": 4,
        "num_frames": 40,
        "model_version": 1,
    }
    assert container.compare_client_answers("x", [record], [dict(record)]) == 0.0
    with pytest.raises(container.CheckFailed, match="num_views"):
        container.compare_client_answers("x", [record], [dict(record, num_views=3)])
    with pytest.raises(container.CheckFailed, match="error boom"):
        container.compare_client_answers("x", [record], [{"path": "/clips/a.mp4", "error": "boom"}])
    with pytest.raises(container.CheckFailed, match="answered 0 inputs"):
        container.compare_client_answers("x", [record], [])


def test_rest_example_encodes_bytes_as_b64():
    import tensorflow as tf

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff"])),
                "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
            }
        )
    )
    assert container.rest_example(example) == {"image/encoded": [{"b64": "/w=="}], "n": [3]}


def test_engine_command_lines():
    import resource

    podman, docker = container_engine.Engine("podman"), container_engine.Engine("docker")
    build = podman.build_command("docker/Dockerfile", "ignore", "train", "t:1", ".")
    for flag in ("--format", "--pull=never", "--ignorefile", "--ulimit"):
        assert flag in build
    assert docker.build_command("docker/Dockerfile", "ignore", "train", "t:1", ".") == [
        "docker",
        *["build", "-f", "docker/Dockerfile", "--target", "train", "-t", "t:1", "."],
    ]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = int(podman.limits[podman.limits.index("--ulimit") + 1].split("=")[1].split(":")[0])
    assert hard == resource.RLIM_INFINITY or nofile <= hard
    with pytest.raises(ValueError, match="engine"):
        container_engine.Engine("lxc")


def test_no_engine_is_a_reason_to_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(container_engine.Unavailable, match="podman is not installed"):
        container_engine.find_engine()


def test_missing_clips_skip_with_one_line(tmp_path, capsys):
    assert container.main(["--clips", str(tmp_path)]) == container.SKIPPED
    assert capsys.readouterr().out == (
        f"container test skipped: no real clips at {tmp_path} (give --clips DIR)\n"
    )


def test_docs_page_has_the_sizes_and_steps(tmp_path):
    steps = container.Steps()
    with steps("build model-server image") as notes:
        notes.append("1620 MB")
    facts = {
        "engine": "podman version 4.3.1",
        "base": "made",
        "base_mb": 78,
        "model-server_mb": 1620,
        "train_mb": 1700,
        "clips": 7,
        "max_score_difference": 0.0,
        "stop_seconds": 1.2,
    }
    page = container.write_docs(tmp_path / "c.md", steps, facts, "docker/build_and_test.sh")
    text = page.read_text()
    assert "docker/build_and_test.sh" in text and "| model server" in text
    assert "| build model-server image |" in text and "1620 MB" in text


def test_server_shutdown_seconds_from_its_log():
    log = (
        "2026-12-06 10:07:01,493 INFO serving.server: Running gRPC ModelServer at ...\n"
        "2026-12-06 10:07:04,073 INFO serving.server: Shutting down: draining ...\n"
        "time=... level=error msg=unrelated\n"
        "2026-12-06 10:07:05,577 INFO serving.server: Server stopped\n"
    )
    assert container.server_shutdown_seconds(log) == pytest.approx(1.504)
    assert container.server_shutdown_seconds(log.replace("Server stopped", "x")) is None
