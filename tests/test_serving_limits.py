"""Hostile and faulty requests, without a server process: tensors checked and
sized before decoding, the per-request limit and the server-wide budget,
deadlines and cancellation in batches and TF2 calls, the reload RPC's
policy, corrupt and symlinked versions, messages and paths in errors."""

import json
import logging
import os
import threading
import time
import tracemalloc

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tf_serving_models
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import json_parser
from serving import server as server_cli
from serving.batching import Batcher, BatchingOptions
from serving.defaults import MIB
from serving.errors import MESSAGE_LIMIT, ServingError
from serving.execution import call_cancellable
from serving.handlers import Handlers, ReloadPolicy, RequestContext
from serving.limits import JSON_BYTES_PER_BODY_BYTE, MemoryBudget, RequestLimits
from serving.manager import ModelManager
from serving.model_config import single_model_config
from serving.rest import RestApp
from serving.servable import ServableVersion
from serving.tensors import tensor_size, to_array


def _code(call):
    with pytest.raises(ServingError) as caught:
        call()
    return caught.value.code, caught.value.message


def _proto(dtype, shape, **values):
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


# ----------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "proto, words",
    [
        (
            _proto(types_pb2.DT_UINT8, [1], int_val=[300]),
            "int_val[0] = 300 is out of range for uint8",
        ),
        (_proto(types_pb2.DT_INT8, [2], int_val=[1, -129]), "out of range for int8"),
        (
            _proto(types_pb2.DT_INT32, [1], int_val=[3], tensor_content=b"\0" * 4),
            "both in tensor_content and in int_val",
        ),
        (_proto(types_pb2.DT_INT32, [2, -1], int_val=[3]), "dimension 1 is -1"),
        (_proto(types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 8), "tensor_content has 8 bytes"),
        (_proto(types_pb2.DT_INT32, [1], float_val=[1.0]), "belong in int_val"),
        (_proto(types_pb2.DT_VARIANT, [1]), "cannot be sent"),
    ],
)
def test_bad_tensors_are_invalid_argument(proto, words):
    code, message = _code(lambda: to_array(proto, "x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("tensor parsing error: x (") and words in message


def test_unknown_rank_is_invalid_argument():
    proto = _proto(types_pb2.DT_FLOAT, [], float_val=[1.0])
    proto.tensor_shape.unknown_rank = True
    code, message = _code(lambda: tensor_size(proto, "x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown rank" in message


def test_decoding_matches_tensorflow():
    for array in (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.arange(5, dtype=np.uint8),
        np.array([1.5, 2], np.float16),
        np.array([[1 + 2j, 3 - 1j]], np.complex64),
        np.array([True, False]),
        np.array([b"a", b"bc"], object),
        np.arange(4, dtype=np.int64),
        np.array(3.0),
    ):
        proto = tf.make_tensor_proto(array)
        got, want = to_array(proto), tf.make_ndarray(proto)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert (got == want).all()
    for proto in (
        tf.make_tensor_proto(7, dtype=tf.int32, shape=[2, 3]),
        tf.make_tensor_proto(b"z", shape=[3]),
        _proto(types_pb2.DT_FLOAT, [4]),
    ):  # padding as TensorFlow
        assert (to_array(proto) == tf.make_ndarray(proto)).all()


def test_padded_tensor_costs_its_decoded_size_once():
    """`int_val: 0` with a large shape: TensorFlow's make_ndarray peaks at
    ~7.5x the tensor; here at the tensor itself."""
    proto = _proto(types_pb2.DT_INT32, [1, 2**22], int_val=[0])
    size = tensor_size(proto, "x")
    assert size.decoded_bytes == 4 * 2**22 and len(proto.SerializeToString()) < 32
    tracemalloc.start()
    try:
        array = to_array(proto, "x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert array.shape == (1, 2**22) and not array.any()
    assert peak < 1.2 * size.decoded_bytes, peak


@pytest.mark.slow
def test_json_parse_worst_case_is_within_the_reserved_factor():
    for body in (
        b"[" + b"{}," * 200_000 + b"{}]",
        b"[" + b"[]," * 200_000 + b"[]]",
        b"[" + b"1e1," * 200_000 + b"1]",
        b"[" + b'"ab",' * 200_000 + b"1]",
        b"[" + b"999," * 200_000 + b"1]",
    ):
        for parse in (json_parser.loads, json.loads):  # the server's parser, and its fallback
            tracemalloc.start()
            try:
                document = parse(body)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            del document
            assert peak <= JSON_BYTES_PER_BODY_BYTE * len(body), (body[:8], peak / len(body))


def test_budget_refuses_what_does_not_fit():
    budget = MemoryBudget(100)
    first = budget.reserve(70, "request")
    code, message = _code(lambda: budget.reserve(40, "request"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_inflight_bytes" in message and budget.used == 70
    first.release()
    with budget.reserve(100):
        assert budget.used == 100
    assert budget.used == 0 and budget.refused == 1


# ----------------------------------------------------------------------
# Handlers on a real model (half plus two, TF2), no server
# ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    tf_serving_models.half_plus_two_tf2(root / "hp2" / "1")
    tf_serving_models.slow_loop_tf2(root / "slow" / "1")
    return root


@pytest.fixture(scope="module")
def manager(models_root):
    root = models_root
    config = single_model_config("hp2", root / "hp2")
    slow = config.model_config_list.config.add()
    slow.name, slow.base_path = "slow", str(root / "slow")
    manager = ModelManager(config, poll_wait_seconds=0).start()
    yield manager
    manager.stop()


def _x_request(model, proto):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(proto)
    return request


@pytest.mark.slow
def test_amplifying_requests_are_refused_before_decoding(manager):
    handlers = Handlers(manager, limits=RequestLimits(16 * MIB, MemoryBudget(64 * MIB)))
    started = time.monotonic()
    for proto in (
        _proto(types_pb2.DT_FLOAT, [1, 2**26], float_val=[0.0]),
        _proto(types_pb2.DT_INT32, [2**20, 2**20, 2**20], int_val=[0]),
        _proto(types_pb2.DT_STRING, [2**24], string_val=[b"x" * 64]),
    ):
        code, message = _code(lambda proto=proto: handlers.predict(_x_request("hp2", proto)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "per-request limit" in message and "--max_request_bytes" in message
    assert time.monotonic() - started < 1.0  # nothing was decoded
    # 5 MiB fits one request but three such cannot be in flight with a 12 MiB budget
    small = Handlers(manager, limits=RequestLimits(16 * MIB, MemoryBudget(12 * MIB)))
    held = small.limits.budget.reserve(6 * MIB)
    proto = _proto(types_pb2.DT_FLOAT, [2**20], float_val=[1.0])  # 4 MiB decoded
    code, message = _code(lambda: small.predict(_x_request("hp2", proto)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "budget" in message
    held.release()
    assert small.limits.budget.used == 0


def test_examples_with_a_large_context_are_counted_in_full(manager):
    handlers = Handlers(manager, limits=RequestLimits(8 * MIB, MemoryBudget(64 * MIB)))
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "hp2"
    request.model_spec.signature_name = "classify_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["pad"].bytes_list.value.append(b"p" * 100_000)
    for _ in range(200):  # 200 x 100 kB = 20 MB once merged, from a 100 kB request
        with_context.examples.add().features.feature["x"].float_list.value.append(1.0)
    code, message = _code(lambda: handlers.classify(request))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "examples" in message


def test_rest_json_reserves_its_parse_cost(manager):
    handlers = Handlers(manager, limits=RequestLimits(64 * MIB, MemoryBudget(16 * MIB)))
    app = RestApp(handlers, threads=2)
    body = json.dumps({"instances": [1.0] * 300_000}).encode()  # 1.5 MB
    code, message = _code(lambda: app.process("POST", "/v1/models/hp2:predict", body))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "JSON body" in message
    small = json.dumps({"instances": [1.0]}).encode()
    assert json.loads(app.process("POST", "/v1/models/hp2:predict", small)) == {
        "predictions": [2.5]
    }
    # a declared shape above the per-request limit is refused before NumPy builds it
    tight = RestApp(Handlers(manager, limits=RequestLimits(1024, MemoryBudget(None))))
    body = json.dumps({"inputs": [[0.0] * 300]}).encode()
    code, message = _code(lambda: tight.process("POST", "/v1/models/hp2:predict", body))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "request tensor" in message
    app.close()
    tight.close()


def test_messages_echoing_input_are_truncated(manager):
    handlers = Handlers(manager)
    request = _x_request("m" * 1_000_000, tf.make_tensor_proto([1.0]))
    code, message = _code(lambda: handlers.predict(request))
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(message) == MESSAGE_LIMIT + len("...TRUNCATED")
    assert message.startswith("Servable not found for request: Latest(mmm")


# ----------------------------------------------------------------------
# Deadlines and cancellation
# ----------------------------------------------------------------------
def test_expired_request_is_dropped_inside_a_forming_batch():
    seen = []
    release = threading.Event()

    def run(inputs, context=None):
        seen.append(inputs["x"][:, 0].tolist())
        if len(seen) == 1:
            release.wait(5)  # the first batch holds the only worker
        return {"y": inputs["x"] * 2}

    batcher = Batcher(run, BatchingOptions(max_batch_size=8, num_batch_threads=1))
    first = threading.Thread(target=batcher.run, args=({"x": np.zeros((1, 1))},))
    first.start()
    while not seen:
        time.sleep(0.01)
    late = RequestContext.with_timeout("GRPC", 0.2)
    started = time.monotonic()
    code, _ = _code(lambda: batcher.run({"x": np.ones((1, 1))}, late))
    waited = time.monotonic() - started
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and waited < 1.0
    cancelled = RequestContext()
    timer = threading.Timer(0.1, cancelled.cancel)
    timer.start()
    code, _ = _code(lambda: batcher.run({"x": np.full((1, 1), 2.0)}, cancelled))
    assert code == grpc.StatusCode.CANCELLED
    alive = RequestContext.with_timeout("GRPC", 10)
    result = {}
    waiter = threading.Thread(
        target=lambda: result.update(batcher.run({"x": np.full((1, 1), 3.0)}, alive))
    )
    waiter.start()
    time.sleep(0.1)
    release.set()
    first.join()
    waiter.join()
    batcher.close()
    assert result["y"].tolist() == [[6.0]]
    assert seen == [[0.0], [3.0]]  # the expired and the cancelled ones never ran


def test_tf2_loop_is_cancelled_and_other_calls_are_not(models_root):
    # The version in this process: what a model worker runs.
    version = ServableVersion("slow", 1, str(models_root / "slow" / "1"))
    signature = version.signatures["serving_default"]
    outcome = {}

    def call(name, steps, context):
        started = time.monotonic()
        try:
            version.run(signature, {"x": np.array([steps], np.float32)}, context)
            outcome[name] = ("OK", time.monotonic() - started)
        except ServingError as error:
            outcome[name] = (error.code.name, time.monotonic() - started)

    doomed = RequestContext.with_timeout("GRPC", 30)
    other = RequestContext.with_timeout("GRPC", 60)
    threads = [
        threading.Thread(target=call, args=("doomed", 100_000, doomed)),
        threading.Thread(target=call, args=("other", 300, other)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    doomed.cancel()  # the client went away
    for thread in threads:
        thread.join(60)
    assert outcome["doomed"][0] == "CANCELLED" and outcome["doomed"][1] < 5
    assert outcome["other"][0] == "OK"
    # A deadline that passes during the call: the loop stops at it.
    late = RequestContext.with_timeout("GRPC", 0.3)
    late_timer = threading.Timer(0.3, late.cancel)  # what the front end does
    late_timer.start()
    call("late", 100_000, late)
    assert outcome["late"][0] == "DEADLINE_EXCEEDED" and outcome["late"][1] < 3


def test_tf1_session_run_gets_the_deadline(tmp_path):
    """TF Serving's RunOptions.timeout_in_ms: the session stops the step."""
    tf_serving_models.slow_loop_tf1(tmp_path / "slow1" / "1")
    # The version in this process: what a model worker runs.
    version = ServableVersion("slow1", 1, str(tmp_path / "slow1" / "1"))
    try:
        signature = version.signatures["serving_default"]
        assert version.run(
            signature, {"x": np.array([3.0], np.float32)}, RequestContext.with_timeout("GRPC", 30)
        )["y"].tolist() == [3.0]
        started = time.monotonic()
        code, _ = _code(
            lambda: version.run(
                signature,
                {"x": np.array([100_000.0], np.float32)},
                RequestContext.with_timeout("GRPC", 0.3),
            )
        )
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
    finally:
        version.close()


def test_call_cancellable_without_context_is_a_plain_call():
    assert call_cancellable(lambda a: a + 1, None, 1) == 2


# ----------------------------------------------------------------------
# Versions on disk: corrupt newest, symlinks, paths in errors
# ----------------------------------------------------------------------
@pytest.mark.slow  # model worker processes
def test_corrupt_newest_version_falls_back_without_paths_in_status(tmp_path):
    base = tmp_path / "model"
    tf_serving_models.half_plus_two_tf2(base / "1")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    manager = ModelManager(single_model_config("m", base), poll_wait_seconds=0).start()
    try:
        spec = get_model_status_pb2.GetModelStatusRequest().model_spec
        spec.name = "m"
        states = {s.version: s for s in manager.status(spec).model_version_status}
        assert states[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert states[2].state == get_model_status_pb2.ModelVersionStatus.END
        assert states[2].status.error_code != 0
        assert str(tmp_path) not in states[2].status.error_message
        assert "/" + tmp_path.parts[1] not in states[2].status.error_message
        assert manager.resolve(spec).version == 1
        assert manager.serving_status() == {"m": True}
    finally:
        manager.stop()


@pytest.mark.slow  # model worker processes
def test_no_loadable_version_exits_non_zero_with_the_reason(tmp_path, capsys):
    base = tmp_path / "model"
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_bytes(b"garbage")
    assert (
        server_cli.main(
            [
                f"--model_base_path={base}",
                "--model_name=m",
                "--port=0",
                f"--grpc_socket_path={tmp_path}/s",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "model m: no version could be loaded (version 3:" in err


@pytest.mark.slow
def test_symlinks_leaving_the_version_or_base_are_refused(tmp_path):
    outside = tmp_path / "outside"
    tf_serving_models.half_plus_two_tf2(outside / "7")
    (outside / "secret.txt").write_text("secret")
    base = tmp_path / "model"
    base.mkdir()
    os.symlink(outside / "7", base / "5")  # a version folder outside the base
    tf_serving_models.half_plus_two_tf2(base / "4")
    (base / "4" / "assets").mkdir(exist_ok=True)
    os.symlink(outside / "secret.txt", base / "4" / "assets" / "class_names.txt")
    tf_serving_models.half_plus_two_tf2(base / "3")
    manager = ModelManager(single_model_config("m", base), poll_wait_seconds=0).start()
    try:
        spec = get_model_status_pb2.GetModelStatusRequest().model_spec
        spec.name = "m"
        states = {s.version: s for s in manager.status(spec).model_version_status}
        assert "version 5 is a symbolic link to a folder outside" in states[5].status.error_message
        assert (
            "assets/class_names.txt is a symbolic link to a file outside"
            in states[4].status.error_message
        )
        assert manager.resolve(spec).version == 3
    finally:
        manager.stop()


# ----------------------------------------------------------------------
# The reload RPC
# ----------------------------------------------------------------------
def _reload(base_paths):
    config = model_server_config_pb2.ModelServerConfig()
    for name, path in base_paths.items():
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(path), "tensorflow"
    return model_management_pb2.ReloadConfigRequest(config=config)


def test_reload_rpc_is_off_by_default_and_confined_to_roots(manager, tmp_path, caplog):
    allowed = tmp_path / "allowed"
    tf_serving_models.half_plus_two_tf2(allowed / "good" / "1")
    elsewhere = tmp_path / "elsewhere"
    tf_serving_models.half_plus_two_tf2(elsewhere / "evil" / "1")
    os.symlink(elsewhere / "evil", allowed / "sneaky")
    request = _reload(
        {
            "hp2": manager._models["hp2"].config.base_path,
            "slow": manager._models["slow"].config.base_path,
        }
    )
    code, message = _code(lambda: Handlers(manager).reload_config(request))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "--enable_model_config_reload" in message
    with pytest.raises(ValueError, match="allowed_model_base_path_roots"):
        ReloadPolicy(True, [])
    handlers = Handlers(manager, reload_policy=ReloadPolicy(True, [allowed]))
    for path in (
        elsewhere / "evil",
        allowed / "sneaky",
        allowed / ".." / "elsewhere" / "evil",
        "relative/path",
    ):
        code, message = _code(lambda path=path: handlers.reload_config(_reload({"x": path})))
        assert code == grpc.StatusCode.PERMISSION_DENIED, path
        assert "x" in message
    assert not manager.has_model("x")
    own = tmp_path / "own"
    own.mkdir()
    mixed = Handlers(
        manager,
        reload_policy=ReloadPolicy(
            True,
            [
                allowed,
                manager._models["hp2"].config.base_path,
                manager._models["slow"].config.base_path,
            ],
        ),
    )
    with caplog.at_level(logging.WARNING, logger="serving.handlers"):
        mixed.reload_config(
            _reload(
                {
                    "hp2": manager._models["hp2"].config.base_path,
                    "slow": manager._models["slow"].config.base_path,
                    "good": allowed / "good",
                }
            )
        )
    assert manager.has_model("good")
    assert any(
        "HandleReloadConfigRequest: serving" in r.message and "good from" in r.message
        for r in caplog.records
    )
