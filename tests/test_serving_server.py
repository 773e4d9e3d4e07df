"""serving.server specifics: models.config, version policy and labels,
batching, failed versions, config reload, the video client, SIGTERM."""

import json
import threading
import time
import urllib.request
import warnings

import grpc
import numpy as np
import pytest
import tiny_exports as testing
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2
from tensorflow_serving.config import model_server_config_pb2

from clipspec.format import ClipFormat
from serving import client as client_cli
from serving import server as server_cli
from serving.client import ServingClient
from serving.launch import LocalServer
from serving.loadtest import predict_request
from serving.rest_client import RestClient

SHAPE = (4, 16, 16, 3)
AVAILABLE = "AVAILABLE"

MODELS_CONFIG = """
# Two models; paths relative to this file.
model_config_list {
  config {
    name: "alpha"
    base_path: "alpha"
    model_platform: "tensorflow"
  }
  config {
    name: "beta"
    base_path: "beta"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 } }
    version_labels { key: "stable" value: 1 }
  }
}
"""

BATCHING = """
max_batch_size { value: 8 }
batch_timeout_micros { value: 50000 }
max_enqueued_batches { value: 10 }
num_batch_threads { value: 1 }
"""


# Server processes: model farms, batching, reloads, SIGTERM.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    root = tmp_path_factory.mktemp("farm")
    models = {
        ("alpha", 1): testing.export_tiny(root, "alpha", seed=21)[0],
        ("beta", 1): testing.export_tiny(root, "beta", seed=22)[0],
        ("beta", 2): testing.export_tiny(root, "beta", seed=23)[0],
    }
    (root / "models.config").write_text(MODELS_CONFIG)
    (root / "batching_parameters.txt").write_text(BATCHING)
    server = LocalServer(
        [
            f"--model_config_file={root / 'models.config'}",
            "--enable_batching",
            f"--batching_parameters_file={root / 'batching_parameters.txt'}",
            "--file_system_poll_wait_seconds=0.3",
            "--log-level",
            "DEBUG",
            "--enable_model_config_reload",
            f"--allowed_model_base_path_roots={root}",
        ],
        rest=True,
    )
    server.start()
    client = ServingClient(server.address, timeout=60, retries=0)
    try:
        yield root, server, client, models
    finally:
        client.close()
        server.stop()


def _code(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_models_config_policy_and_labels(farm):
    _, _, client, models = farm
    clips = testing.random_clips(2, SHAPE, seed=1)
    for name in ("alpha", "beta"):
        out = client.predict(name, clips)
        np.testing.assert_allclose(
            out["probabilities"],
            testing.reference_probabilities(models[(name, 1)], clips),
            atol=1e-5,
        )
    # beta/2 exists on disk but the policy serves only version 1.
    assert [s[:2] for s in client.status("beta")] == [(1, AVAILABLE)]
    code, _ = _code(lambda: client.predict("beta", clips, version=2))
    assert code == grpc.StatusCode.NOT_FOUND
    request = predict_request("beta", clips)
    request.model_spec.version_label = "stable"
    response = client.predict_response(request)
    assert response.model_spec.version.value == 1
    request.model_spec.version_label = "canary"
    code, details = _code(lambda: client.predict_response(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "canary" in details


def test_concurrent_requests_are_batched_and_each_gets_its_answer(farm):
    _, server, client, models = farm
    clips = testing.random_clips(8, SHAPE, seed=2)
    expected = testing.reference_probabilities(models[("alpha", 1)], clips)
    results, barrier = [None] * 8, threading.Barrier(8)

    def ask(index):
        barrier.wait()
        results[index] = client.predict("alpha", clips[index : index + 1])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, out in enumerate(results):
        np.testing.assert_allclose(out["probabilities"][0], expected[index], atol=1e-5)
        assert out["probabilities"].shape == (1, 7)
    sizes = [
        int(line.split("a batch of ")[1].split()[0])
        for line in server.log().splitlines()
        if "a batch of " in line
    ]
    assert sizes and max(sizes) >= 2, "no request was batched with another"


def test_failed_and_partial_versions_leave_the_old_one_serving(farm):
    root, _, client, models = farm
    broken = root / "alpha" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    (root / "alpha" / "3").mkdir()  # being copied: no saved_model.pb yet
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {s[0]: s for s in client.status("alpha")}
        if 2 in states and states[2][1] == "END":
            break
        time.sleep(0.2)
    assert states[2][1] == "END" and states[2][2] != "OK" and states[2][3]
    assert 3 not in states
    assert states[1][1] == AVAILABLE
    clips = testing.random_clips(1, SHAPE, seed=3)
    response = client.predict_response(predict_request("alpha", clips))
    assert response.model_spec.version.value == 1


def test_client_cli_classifies_video_files(farm, tmp_path, capsys):
    from clipspec.decode import decode_video
    from clipspec.sampling import eval_views
    from training.data.synthetic import write_video

    _, server, _, models = farm
    frames = testing.random_clips(1, (12, 20, 24, 3), seed=4)[0]
    video = tmp_path / "clip.mp4"
    write_video(video, frames)
    assert (
        client_cli.main(
            [
                "--server",
                server.address,
                "--model",
                "alpha",
                "--num-clips",
                "2",
                "--views-per-request",
                "1",
                "--json",
                str(video),
            ]
        )
        == 0
    )
    report = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The same decoding and views, computed here, through the model.
    decoded, _ = decode_video(str(video), short_side=round(16 * 8 / 7))
    views = eval_views(decoded, 4, 2, 16, num_clips=2, num_crops=1)
    mean = testing.reference_probabilities(models[("alpha", 1)], views).mean(0)
    best = np.argsort(-mean)[:5]
    names = testing.class_names(7)
    assert report[0]["num_views"] == 2
    assert [c["class"] for c in report[0]["top_k"]] == [names[i] for i in best]
    np.testing.assert_allclose([c["score"] for c in report[0]["top_k"]], mean[best], atol=1e-4)
    # The same over TF Serving's REST API.
    assert (
        client_cli.main(
            [
                "--rest",
                "--server",
                f"127.0.0.1:{server.rest_port}",
                "--model",
                "alpha",
                "--num-clips",
                "2",
                "--json",
                str(video),
            ]
        )
        == 0
    )
    over_rest = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [c["class"] for c in over_rest[0]["top_k"]] == [names[i] for i in best]
    np.testing.assert_allclose([c["score"] for c in over_rest[0]["top_k"]], mean[best], atol=1e-4)
    assert over_rest[0]["model_version"] == 1
    # REST reads the model's own clip format (its `clip_format` signature
    # has an input: TF Serving's REST API calls no signature without one),
    # so a timeline runs over REST against the real server too.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the input size
        with RestClient(f"127.0.0.1:{server.rest_port}", timeout=60) as rest:
            assert rest.clip_format("alpha") == testing.clip_format(7)
    # by hand, in TF Serving's row format (docs/export.md)
    body = json.dumps({"signature_name": "clip_format", "instances": [0]}).encode()
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/alpha:predict"
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=60) as answer:
        (text,) = json.loads(answer.read())["predictions"]
    assert ClipFormat.from_json(text) == testing.clip_format(7)
    timeline = ["--rest", "--server", f"127.0.0.1:{server.rest_port}", "--model", "alpha"]
    assert client_cli.main([*timeline, "--timeline", "--json", "--hop", "0.3", str(video)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    windows = [line for line in lines if line["kind"] == "window"]
    assert len(windows) >= 2 and {w["top_k"][0]["class"] for w in windows} <= set(names)
    # Text output, and a bad file among good ones: exit 1, the rest printed.
    assert (
        client_cli.main(
            [
                "--server",
                server.address,
                "--model",
                "alpha",
                "--top-k",
                "2",
                str(video),
                str(tmp_path / "missing.mp4"),
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert names[best[0]] in captured.out
    assert "missing.mp4: error" in captured.err


def test_client_on_real_videos(farm, real_clips_dir):
    """Every shared real clip (mp4/avi/mkv, MPEG-4/H.264/...) through the
    client library: the server's video-level scores equal the in-process
    model's on the same views."""
    from clipspec.decode import decode_video
    from clipspec.sampling import eval_views

    _, server, _, models = farm
    videos = sorted(
        p for p in real_clips_dir.iterdir() if p.suffix in (".mp4", ".avi", ".mkv", ".webm")
    )
    assert videos
    with ServingClient(server.address, timeout=60) as client:
        for video in videos:
            result = client_cli.classify_video(
                client, "alpha", str(video), num_clips=3, num_crops=3
            )
            decoded, _ = decode_video(str(video), short_side=round(16 * 8 / 7))
            views = eval_views(decoded, 4, 2, 16, num_clips=3, num_crops=3)
            mean = testing.reference_probabilities(models[("alpha", 1)], views).mean(0)
            assert result.num_views == 9
            np.testing.assert_allclose(result.probabilities, mean, atol=1e-4, err_msg=video.name)


def test_reload_config_label_on_a_version_not_loaded_fails(farm):
    """TF Serving: FAILED_PRECONDITION, and the old labels stay."""
    root, _, client, _ = farm
    config = model_server_config_pb2.ModelServerConfig()
    for name in ("alpha", "beta"):
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path = name, str(root / name)
        entry.model_platform = "tensorflow"
    beta = config.model_config_list.config[1]
    beta.model_version_policy.specific.versions.append(1)
    beta.version_labels["stable"] = 1
    beta.version_labels["canary"] = 2  # on disk, not loaded by the policy
    code, details = _code(
        lambda: client.call(
            "HandleReloadConfigRequest", model_management_pb2.ReloadConfigRequest(config=config)
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == (
        "Request to assign label to version 2 of model beta, "
        "which is not currently available for inference"
    )
    request = predict_request("beta", testing.random_clips(1, SHAPE, seed=7))
    request.model_spec.version_label = "stable"
    assert client.predict_response(request).model_spec.version.value == 1
    request.model_spec.version_label = "canary"
    code, details = _code(lambda: client.predict_response(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "canary" in details


def test_reload_config_removes_a_model(farm):
    root, _, client, _ = farm
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path = "alpha", str(root / "alpha")
    entry.model_platform = "tensorflow"
    request = model_management_pb2.ReloadConfigRequest(config=config)
    client.call("HandleReloadConfigRequest", request)
    clips = testing.random_clips(1, SHAPE, seed=5)
    code, _ = _code(lambda: client.predict("beta", clips))
    assert code == grpc.StatusCode.NOT_FOUND
    assert client.predict("alpha", clips)["probabilities"].shape == (1, 7)
    bad = model_server_config_pb2.ModelServerConfig()
    bad.model_config_list.config.add(name="x")  # no base_path
    code, details = _code(
        lambda: client.call(
            "HandleReloadConfigRequest", model_management_pb2.ReloadConfigRequest(config=bad)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "base_path" in details


def test_sigterm_finishes_in_flight_requests_and_exits_zero(farm):
    root, server, client, _ = farm
    big = testing.random_clips(64, (16, 64, 64, 3), seed=6)  # resized in graph
    outcome = {}

    def ask():
        try:
            outcome["out"] = client.predict("alpha", big)
        except grpc.RpcError as error:
            outcome["error"] = error.code()

    received = server.log().count("Predict request received")
    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 60  # SIGTERM once the server has it
    while server.log().count("Predict request received") == received:
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.01)
    assert server.stop() == 0
    thread.join()
    assert "error" not in outcome, outcome
    assert outcome["out"]["probabilities"].shape == (64, 7)
    assert "Server stopped" in server.log()


# ----------------------------------------------------------------------
# Command-line errors (no server started)
# ----------------------------------------------------------------------
def test_cli_rejects_bad_arguments_and_files(tmp_path, capsys):
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n  config { name: 'a'\n  bogus: 1 }\n}\n")
    assert server_cli.main([f"--model_config_file={config}"]) == 2
    err = capsys.readouterr().err
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in err
    assert "models.config:3" in err and "bogus" in err
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    assert (
        server_cli.main(
            [
                f"--model_base_path={tmp_path}",
                "--enable_batching",
                f"--batching_parameters_file={batching}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "line 2" in err and "max_batch_sise" in err
    assert (
        server_cli.main([f"--model_base_path={tmp_path}", f"--batching_parameters_file={batching}"])
        == 2
    )
    assert "without --enable_batching" in capsys.readouterr().err
    assert server_cli.main([]) == 2
    assert "--model_base_path and --model_config_file are empty" in capsys.readouterr().err
    assert server_cli.main([f"--model_base_path={tmp_path}", "--port=0"]) == 2
    assert "--grpc_socket_path" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, words",
    [
        ("--ssl_config_file=/etc/ssl.conf", "/etc/ssl.conf"),
        ("--prefer_tflite_model=true", "TF Lite"),
        ("--enable_profiler", "profiler"),
    ],
)
def test_cli_refuses_tf_serving_features_it_lacks(tmp_path, capsys, flag, words):
    assert server_cli.main([f"--model_base_path={tmp_path}", flag]) == 2
    assert words in capsys.readouterr().err


def test_cli_unknown_flags_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        server_cli.main([f"--model_base_path={tmp_path}", "--no_such_flag=1"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--no_such_flag=1" in err and "tensorflow_model_server flag" in err
    with pytest.raises(SystemExit):  # no abbreviations: TF Serving has none
        server_cli.main(["--model_base=/x"])


def test_cli_takes_tf_servings_flags():
    args = server_cli.build_parser().parse_args(
        [
            "--port=8500",
            "--rest_api_port",
            "8501",
            "--model_name=m",
            "--model_base_path=/m",
            "--enable_batching",
            "--enable_model_warmup=false",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
            "--enable_profiler=false",
            "--flush_filesystem_caches=true",
            "--rest_api_timeout_in_ms=5000",
            "--file_system_poll_wait_seconds=0",
            "--num_load_threads=0",
        ]
    )
    settings = server_cli.settings_from_args(args)
    assert (settings.port, settings.rest_port, settings.warmup) == (8500, 8501, False)
    assert settings.channel_arguments == (
        ("grpc.max_connection_age_ms", 2000),
        ("grpc.lb_policy_name", "grpclb"),
    )
    assert settings.batching.max_batch_size == 1000  # TF Serving's default
    assert settings.rest_timeout_seconds == 5.0 and settings.host == "127.0.0.1"
    assert not settings.options.method_name_check
    assert not settings.options.tensor_content


def test_status_of_a_model_without_versions(tmp_path):
    # The manager alone: an empty base path has no versions (NOT_FOUND).
    from serving.errors import ServingError
    from serving.manager import ModelManager
    from serving.model_config import single_model_config

    manager = ModelManager(single_model_config("empty", tmp_path), poll_wait_seconds=0).start()
    spec = get_model_status_pb2.GetModelStatusRequest().model_spec
    spec.name = "empty"
    with pytest.raises(ServingError) as caught:
        manager.status(spec)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ServingError, match=r"Latest\(empty\)"):
        manager.resolve(spec)
    manager.stop()
