"""The gRPC and REST front ends are thin adapters over the same handlers
(`serving.dispatch`, `serving.handlers`): the same request is counted the
same way in the metrics, answered DEADLINE_EXCEEDED at the same deadline,
and gives its reserved memory back, whichever front end it came through."""

import io
import json
import re
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tf_serving_models
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.grpc_front import create_server
from serving.handlers import Handlers
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model_config import single_model_config
from serving.rest import RestApp


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    """Both front ends, in process, over one `Handlers` (half plus two and
    the slow loop model)."""
    root = tmp_path_factory.mktemp("fronts")
    tf_serving_models.half_plus_two_tf2(root / "hp2" / "1")
    tf_serving_models.slow_loop_tf2(root / "slow" / "1")
    config = single_model_config("hp2", root / "hp2")
    slow = config.model_config_list.config.add()
    slow.name, slow.base_path = "slow", str(root / "slow")
    manager = ModelManager(config, poll_wait_seconds=0).start()
    handlers = Handlers(manager, Metrics())
    server, port = create_server(handlers, "127.0.0.1", 0, workers=2, health=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    app = RestApp(handlers, timeout_seconds=0.5, threads=2)
    yield handlers, stub, app
    app.close()
    channel.close()
    server.stop(0)
    manager.stop()


def _rest(app, path, document):
    """One POST through the whole WSGI application: (HTTP status, JSON)."""
    body = json.dumps(document).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "REQUEST_URI": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    status = []
    output = b"".join(app(environ, lambda line, headers: status.append(line)))
    return status[0], json.loads(output)


def _grpc_predict(stub, model, values, timeout=10):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values, np.float32)))
    try:
        stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def _count(metrics, model, status):
    pattern = rf':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} (\d+)'
    found = re.search(pattern, metrics.render())
    return int(found.group(1)) if found else 0


def test_an_unknown_model_is_counted_the_same_over_rest_and_grpc(fronts):
    handlers, stub, app = fronts
    before = _count(handlers.metrics, "", "NOT_FOUND")
    status, answer = _rest(app, "/v1/models/nope:predict", {"instances": [1.0]})
    assert status.startswith("404") and "Servable not found" in answer["error"]
    assert _count(handlers.metrics, "", "NOT_FOUND") == before + 1
    code, message = _grpc_predict(stub, "nope", [1.0])
    assert code == grpc.StatusCode.NOT_FOUND and "Servable not found" in message
    assert _count(handlers.metrics, "", "NOT_FOUND") == before + 2
    text = handlers.metrics.render()
    for entrypoint in ("GRPC", "REST"):
        assert f'model_name="",API="predict",entrypoint="{entrypoint}"' in text
    # A known model is counted under its own name, from both.
    ok = _count(handlers.metrics, "hp2", "OK")
    status, answer = _rest(app, "/v1/models/hp2:predict", {"instances": [1.0]})
    assert status.startswith("200") and answer == {"predictions": [2.5]}
    assert _grpc_predict(stub, "hp2", [1.0])[0] == grpc.StatusCode.OK
    assert _count(handlers.metrics, "hp2", "OK") == ok + 2
    assert handlers.limits.budget.used == 0


def test_both_front_ends_answer_at_the_deadline_and_free_the_memory(fronts):
    handlers, stub, app = fronts
    started = time.monotonic()
    status, answer = _rest(app, "/v1/models/slow:predict", {"instances": [100_000.0]})
    assert status.startswith("504") and answer == {"error": "Deadline exceeded"}
    code, message = _grpc_predict(stub, "slow", [100_000.0], timeout=0.5)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5  # neither waited for the 100 s loop
    # The abandoned calls were cancelled; their reservations come back.
    deadline = time.monotonic() + 10
    while handlers.limits.budget.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handlers.limits.budget.used == 0
