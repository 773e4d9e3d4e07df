"""serving units without a model: batching, models.config, client retries,
the clients' shared base, REST body parsing, the docker/ files."""

import gc
import json
import os
import threading
import time
import types
from concurrent import futures

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import json_parser, json_tensor
from serving.batching import QUEUE_FULL_MESSAGE, Batcher, BatchingOptions
from serving.client import ServingClient, retry_service_config
from serving.client_base import InferenceClientBase
from serving.errors import ServingError
from serving.model_config import read_model_config_file
from serving.rest_client import RestClient


# ----------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------
class Recorder:
    """A fake model: y = 2 x (+ the row's sum), failing on negative rows."""

    def __init__(self, delay=0.0):
        self.calls, self.delay, self.lock = [], delay, threading.Lock()

    def __call__(self, inputs):
        x = inputs["x"]
        with self.lock:
            self.calls.append(len(x))
        time.sleep(self.delay)
        if (x < 0).any():
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "negative")
        return {"y": 2 * x, "total": x.reshape(len(x), -1).sum(axis=1)}


def _run_together(batcher, inputs):
    results, barrier = [None] * len(inputs), threading.Barrier(len(inputs))

    def one(index):
        barrier.wait()
        try:
            results[index] = batcher.run(inputs[index])
        except ServingError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_calls_share_batches_and_get_their_own_rows():
    model = Recorder()
    batcher = Batcher(model, BatchingOptions(8, batch_timeout_micros=500_000, num_batch_threads=1))
    inputs = [{"x": np.full((1 + i % 2, 3), float(i))} for i in range(6)]
    results = _run_together(batcher, inputs)
    batcher.close()
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], 2 * inputs[i]["x"])
        np.testing.assert_array_equal(out["total"], [3.0 * i] * (1 + i % 2))
    assert sum(model.calls) == 9 and len(model.calls) < 6
    assert max(model.calls) <= 8


def test_shapes_are_never_mixed_and_big_requests_run_alone():
    model = Recorder()
    batcher = Batcher(model, BatchingOptions(4, batch_timeout_micros=100_000, num_batch_threads=1))
    inputs = [
        {"x": np.ones((1, 3))},
        {"x": np.ones((1, 5))},
        {"x": np.ones((1, 3))},
        {"x": np.ones((6, 3))},
    ]
    results = _run_together(batcher, inputs)
    batcher.close()
    for i, out in enumerate(results):
        assert out["y"].shape == inputs[i]["x"].shape
    assert 6 in model.calls  # over max_batch_size: unbatched
    assert sum(model.calls) == 9


def test_a_bad_request_fails_alone():
    model = Recorder()
    batcher = Batcher(model, BatchingOptions(8, batch_timeout_micros=500_000, num_batch_threads=1))
    inputs = [{"x": np.full((1, 2), -1.0 if i == 2 else 1.0)} for i in range(4)]
    results = _run_together(batcher, inputs)
    batcher.close()
    assert isinstance(results[2], ServingError)
    assert results[2].code == grpc.StatusCode.INVALID_ARGUMENT
    for i in (0, 1, 3):
        np.testing.assert_array_equal(results[i]["y"], [[2.0, 2.0]])


@pytest.mark.slow
def test_full_queue_is_unavailable():
    model = Recorder(delay=1.5)
    batcher = Batcher(model, BatchingOptions(1, max_enqueued_batches=1, num_batch_threads=1))
    pool = futures.ThreadPoolExecutor(3)
    first = pool.submit(batcher.run, {"x": np.ones((1, 1))})
    while not model.calls:  # the first one is running
        time.sleep(0.01)
    # Room for one more row in the queue: of the next two, one waits and
    # one is refused.
    others = [pool.submit(batcher.run, {"x": np.ones((1, 1))}) for _ in range(2)]
    assert first.result()["y"].tolist() == [[2.0]]
    outcomes = []
    for future in others:
        try:
            outcomes.append(future.result()["y"].tolist())
        except ServingError as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE
            assert error.message == QUEUE_FULL_MESSAGE
            outcomes.append("refused")
    assert sorted(map(str, outcomes)) == ["[[2.0]]", "refused"]
    batcher.close()
    pool.shutdown()


def test_batching_parameters_text_format():
    options = BatchingOptions.from_text(
        "max_batch_size { value: 16 }  # clips\n"
        "batch_timeout_micros { value: 2000 }\n\n"
        "num_batch_threads { value: 4 }\n",
        num_batch_threads=2,
    )
    assert options == BatchingOptions(16, 2000, 10, 2)
    with pytest.raises(ValueError, match="line 1: expected"):
        BatchingOptions.from_text("max_batch_size: 16")
    # Fields left out take TF Serving's defaults.
    assert BatchingOptions.from_text("num_batch_threads { value: 4 }") == BatchingOptions(
        1000, 0, 10, 4
    )
    with pytest.raises(ValueError, match="`max_batch_size`"):
        BatchingOptions(0)


# ----------------------------------------------------------------------
# models.config
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, words",
    [
        ("model_config_list { config { name: 'a' } }", "has no base_path"),
        ("model_config_list { config { base_path: '/m' } }", "has no name"),
        (
            "model_config_list { config { name: 'a' base_path: '/m' } "
            "config { name: 'a' base_path: '/n' } }",
            "repeats",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/m' model_platform: 'pytorch' } }",
            "pytorch",
        ),
        ("model_config_list { }", "no models"),
        ("model_config_list { config { name: 'a' base_path: '/m' } ", ":1:"),
    ],
)
def test_bad_model_configs_are_explained(tmp_path, text, words):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ValueError, match=words):
        read_model_config_file(str(path))


def test_model_config_relative_paths(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(
        "model_config_list { config { name: 'a' base_path: 'm/a' "
        "model_version_policy { latest { num_versions: 2 } } } }"
    )
    config = read_model_config_file(str(path))
    entry = config.model_config_list.config[0]
    assert entry.base_path == str(tmp_path / "m" / "a")
    assert entry.model_version_policy.latest.num_versions == 2


# ----------------------------------------------------------------------
# Client retries and timeouts, against a scripted in-process server
# ----------------------------------------------------------------------
class Scripted(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, codes, delay=0.0):
        self.codes, self.delay, self.calls = list(codes), delay, 0

    def Predict(self, request, context):
        self.calls += 1
        time.sleep(self.delay)
        code = self.codes.pop(0) if self.codes else grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            context.abort(code, f"scripted {code.name}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        return response


@pytest.fixture
def scripted():
    servers = []

    def start(codes, delay=0.0):
        servicer = Scripted(codes, delay)
        server = grpc.server(futures.ThreadPoolExecutor(2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def _request():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    return request


def test_client_retries_unavailable_with_backoff(scripted):
    servicer, address = scripted([grpc.StatusCode.UNAVAILABLE] * 2)
    client = ServingClient(address, retries=3, backoff=0.05)
    assert client.call("Predict", _request()).model_spec.name == "m"
    assert servicer.calls == 3
    client.close()
    # gRPC's own retry policy does it (so calls through the stubs retry too):
    # 4 attempts, backoff from 0.05 s doubling, on UNAVAILABLE only
    policy = json.loads(retry_service_config(3, 0.05))["methodConfig"][0]["retryPolicy"]
    assert policy == {
        "maxAttempts": 4,
        "initialBackoff": "0.050s",
        "maxBackoff": "10s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert retry_service_config(0, 0.05) is None


def test_client_gives_up_and_does_not_retry_other_codes(scripted):
    servicer, address = scripted([grpc.StatusCode.UNAVAILABLE] * 5)
    with ServingClient(address, retries=1, backoff=0.01) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.call("Predict", _request())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 2
    servicer, address = scripted([grpc.StatusCode.INVALID_ARGUMENT])
    with ServingClient(address, retries=3, backoff=0.01) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.call("Predict", _request())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.calls == 1


def test_client_timeout(scripted):
    _, address = scripted([], delay=1.0)
    with ServingClient(address, timeout=0.2, retries=0) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.call("Predict", _request())
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_client_argument_checks():
    with pytest.raises(ValueError, match="host:port"):
        ServingClient("localhost")
    with pytest.raises(ValueError, match="`retries`"):
        ServingClient("127.0.0.1:1", retries=-1)
    with pytest.raises(ValueError, match="host:port"):
        RestClient("localhost")


def test_both_clients_share_one_base():
    assert issubclass(ServingClient, InferenceClientBase)
    assert issubclass(RestClient, InferenceClientBase)
    for name in ("clip_format", "class_names", "_legacy_clip_format"):
        assert getattr(RestClient, name) is getattr(InferenceClientBase, name)
        assert getattr(ServingClient, name) is getattr(InferenceClientBase, name)


class _FakeTransport(InferenceClientBase):
    """A transport whose `clip_format` signature is the current export's
    (`query` in, one JSON per entry), an old export's (no input, a scalar),
    or an old one behind TF Serving's REST API (no call without inputs)."""

    def __init__(self, kind, text):
        super().__init__("127.0.0.1:1", 1.0)
        self.kind, self.text, self.calls = kind, text, []

    def predict(self, model, inputs, signature=None, version=None, output_filter=()):
        self.calls.append(sorted(inputs))
        if self.kind == "current" and set(inputs) == {"query"}:
            return {"clip_format": np.array([self.text.encode()] * len(inputs["query"]), object)}
        if self.kind == "old" and not inputs:
            return {"clip_format": np.array(self.text.encode(), object)}
        raise ValueError("bad input")

    def metadata(self, model, version=None):
        shape = types.SimpleNamespace(
            dim=[types.SimpleNamespace(size=s) for s in (-1, 6, 24, 24, 3)]
        )
        clips = types.SimpleNamespace(tensor_shape=shape)
        return None, {"predict_normalized": types.SimpleNamespace(inputs={"clips": clips})}

    @staticmethod
    def _is_missing_signature(error):
        return isinstance(error, ValueError)


def test_clip_format_of_current_and_old_exports():
    from clipspec.format import ClipFormat

    fmt = ClipFormat(clip_length=6, stride=3, crop_size=24, num_clips=2, class_names=("a", "b"))
    current = _FakeTransport("current", fmt.to_json())
    assert current.clip_format("m") == fmt and current.clip_format("m") == fmt
    assert current.calls == [["query"]]  # one call, cached
    old = _FakeTransport("old", fmt.to_json())
    assert old.clip_format("m") == fmt and old.calls == [["query"], []]
    # an old export over REST: the input size, the defaults, and a warning
    with pytest.warns(UserWarning, match=r"'m'.*keras-classreg < 0.3.*stride 2"):
        fallback = _FakeTransport("old-over-rest", fmt.to_json()).clip_format("m")
    assert (fallback.clip_length, fallback.crop_size, fallback.stride) == (6, 24, 2)


# ----------------------------------------------------------------------
# REST bodies: orjson, `json` for the rest, the collector paused meanwhile
# ----------------------------------------------------------------------
def test_rest_bodies_parse_as_json_parses_them():
    for body in (
        b'{"instances": [[1, 2.5], [-3, 1e-7]], "signature_name": "s"}',
        '{"k": "\u00e9\u4e2d", "b": [true, false, null]}'.encode(),
        b"[NaN, Infinity, -Infinity]",  # TF Serving accepts them; orjson does not
        b"[18446744073709551616, -9223372036854775809]",  # orjson: floats
        b"[1e400, 123456789012345678901234567890.5, 0.00123456789012345678901]",
        '{"k": 1}'.encode("utf-16"),
    ):
        expected = json.loads(body)
        got = json_parser.loads(body)
        assert json.dumps(got) == json.dumps(expected), body
        assert gc.isenabled()
    with pytest.raises(ServingError) as caught:
        json_tensor.parse_json(b'{"instances": }')
    assert caught.value.message == "JSON Parse error: Expecting value at offset: 14"
    assert gc.isenabled()  # also after a failed parse


def test_the_collector_stays_paused_while_any_thread_parses():
    pause = json_parser._CollectorPause()
    with pause:
        assert not gc.isenabled()
        with pause:  # a second thread's parse
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with pause:
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


# ----------------------------------------------------------------------
# docker/: the official TF Serving image's files agree with its interface
# and parse with the local server's readers (that image cannot be built
# here: Docker Hub does not answer); the project's own images:
# tests/test_container_files.py
# ----------------------------------------------------------------------
DOCKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docker")


def test_docker_config_files_parse():
    config = read_model_config_file(os.path.join(DOCKER, "models.config"))
    names = [c.name for c in config.model_config_list.config]
    assert names == ["classreg"]
    assert config.model_config_list.config[0].base_path == "/models/classreg"
    with open(os.path.join(DOCKER, "batching_parameters.txt")) as handle:
        options = BatchingOptions.from_text(handle.read())
    assert options.max_batch_size >= 1


def test_docker_files_use_the_official_images():
    import yaml

    with open(os.path.join(DOCKER, "Dockerfile.serving")) as handle:
        serving = handle.read()
    assert "FROM tensorflow/serving:${TF_SERVING_VERSION}" in serving
    assert "/config/batching_parameters.txt" in serving
    for flag in (
        "--enable_batching",
        "--batching_parameters_file",
        "--grpc_channel_arguments",
        "--file_system_poll_wait_seconds",
    ):
        assert f'"{flag}' in serving
    assert "EXPOSE 8500 8501" in serving
    with open(os.path.join(DOCKER, "compose.yaml")) as handle:
        compose = yaml.safe_load(handle)
    serving_service = compose["services"]["tf-serving"]
    assert "127.0.0.1:8500:8500" in serving_service["ports"]
    assert serving_service["build"]["dockerfile"] == "../docker/Dockerfile.serving"
