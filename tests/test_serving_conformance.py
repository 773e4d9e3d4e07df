"""Conformance of a model server with TensorFlow Serving's gRPC API.

The suite talks to the server only through the stubs of
`tensorflow-serving-api`. By default it exports a tiny model into a temp
folder and starts `python -m serving.server` on it as a subprocess. To run
the same suite against another server, e.g. the official container:

    docker run --rm -p 8500:8500 -v /tmp/conformance:/models/conformance \\
        -e MODEL_NAME=conformance tensorflow/serving \\
        --grpc_channel_arguments=grpc.max_receive_message_length=4194304
    CLASSREG_SERVING_ADDRESS=127.0.0.1:8500 \\
    CLASSREG_SERVING_MODEL_BASE=/tmp/conformance \\
    CLASSREG_SERVING_MAX_MESSAGE_BYTES=4194304 \\
        python -m pytest tests/test_serving_conformance.py

`CLASSREG_SERVING_MODEL_BASE` is the model's base path as seen from here
(the folder of version folders the server watches for the model
`CLASSREG_SERVING_MODEL`, default `conformance`): the suite exports its
versions into it (1/, 2/, ...) and waits until the server has loaded them.
`CLASSREG_SERVING_MAX_MESSAGE_BYTES` (the server's receive limit) enables
the over-size check.
"""

import os
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tiny_exports as testing
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from training import export

ADDRESS = os.environ.get("CLASSREG_SERVING_ADDRESS")
MODEL = os.environ.get("CLASSREG_SERVING_MODEL", "conformance")
LOCAL_LIMIT = 4 * 1024 * 1024
SHAPE = (4, 16, 16, 3)
NUM_CLASSES = 7
OK = grpc.StatusCode.OK


# A server process for the module, hot swaps under load.
pytestmark = pytest.mark.slow


class Served:
    """The server under test and what each of its versions should answer."""

    def __init__(self, model_dir, limit):
        self.model_dir, self.limit = os.fspath(model_dir), limit
        self.models = {}  # version -> Keras model

    def connect(self, address):
        self.address = address
        channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", 64 * 2**20),
                ("grpc.max_receive_message_length", 64 * 2**20),
            ],
        )
        self.channel = channel
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(channel)

    def export(self, seed):
        model, path = testing.export_tiny(
            os.path.dirname(self.model_dir),
            os.path.basename(self.model_dir),
            seed=seed,
            num_classes=NUM_CLASSES,
            input_shape=SHAPE,
        )
        version = int(os.path.basename(path))
        self.models[version] = model
        return version

    def wait_for(self, version, timeout=180):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = self.model_service.GetModelStatus(request, timeout=10)
                states = {s.version: s.state for s in response.model_version_status}
                if states.get(version) == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"version {version} of {MODEL} never became AVAILABLE")

    def expected(self, version, clips):
        return testing.reference_probabilities(self.models[version], clips)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if ADDRESS:
        base = os.environ.get("CLASSREG_SERVING_MODEL_BASE")
        if not base:
            pytest.fail(
                "CLASSREG_SERVING_ADDRESS needs CLASSREG_SERVING_MODEL_BASE "
                "(the folder the server watches for the model)"
            )
        limit = os.environ.get("CLASSREG_SERVING_MAX_MESSAGE_BYTES")
        served = Served(base, int(limit) if limit else None)
        served.connect(ADDRESS)
        served.wait_for(served.export(seed=11))
        yield served
        return
    from serving.launch import LocalServer

    base = tmp_path_factory.mktemp("conformance") / MODEL
    served = Served(base, LOCAL_LIMIT)
    first = served.export(seed=11)
    server = LocalServer(
        [
            f"--model_name={MODEL}",
            f"--model_base_path={base}",
            f"--grpc_channel_arguments=grpc.max_receive_message_length={LOCAL_LIMIT}",
            "--file_system_poll_wait_seconds=0.5",
        ]
    )
    server.start()
    try:
        served.connect(server.address)
        served.wait_for(first)
        yield served
    finally:
        served.channel.close()
        assert server.stop() == 0, server.log()[-3000:]


def predict_request(clips, model=MODEL, signature="", version=None, dtype=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    value = clips if dtype is None else clips.astype(dtype)
    request.inputs["clips"].CopyFrom(tf.make_tensor_proto(value))
    return request


def outputs(response):
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def latest(served):
    return max(served.models)


def check_good_predict(served, seed=0):
    clips = testing.random_clips(2, SHAPE, seed=seed)
    response = served.predictions.Predict(predict_request(clips), timeout=60)
    version = response.model_spec.version.value
    np.testing.assert_allclose(
        outputs(response)["probabilities"], served.expected(version, clips), atol=1e-5
    )
    return response


# ----------------------------------------------------------------------
# Answers
# ----------------------------------------------------------------------
def test_model_status_reports_the_available_version(served):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = served.model_service.GetModelStatus(request, timeout=10)
    states = {s.version: s for s in response.model_version_status}
    version = latest(served)
    assert states[version].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states[version].status.error_code == 0
    request.model_spec.version.value = version
    only = served.model_service.GetModelStatus(request, timeout=10)
    assert [s.version for s in only.model_version_status] == [version]


def test_predict_returns_probabilities_and_top_k(served):
    clips = testing.random_clips(3, SHAPE, seed=1)
    response = served.predictions.Predict(predict_request(clips), timeout=60)
    assert response.model_spec.name == MODEL
    assert response.model_spec.signature_name == "serving_default"
    version = response.model_spec.version.value
    out = outputs(response)
    expected = served.expected(version, clips)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    order = np.argsort(-expected, axis=1)[:, :5]
    np.testing.assert_array_equal(out["top_k_indices"], order)
    np.testing.assert_allclose(
        out["top_k_scores"], np.take_along_axis(expected, order, 1), atol=1e-5
    )
    names = np.array(testing.class_names(NUM_CLASSES))
    assert out["top_k_classes"].astype(str).tolist() == names[order].tolist()


def test_predict_any_clip_size_and_output_filter(served):
    clips = testing.random_clips(1, (8, 20, 16, 3), seed=2)
    request = predict_request(clips)
    request.output_filter.append("top_k_classes")
    response = served.predictions.Predict(request, timeout=60)
    assert set(response.outputs) == {"top_k_classes"}
    cropped = clips[:, 2:6, 2:18]  # centre crop in time and height
    version = response.model_spec.version.value
    best = np.argsort(-served.expected(version, cropped), axis=1)[:, :5]
    names = np.array(testing.class_names(NUM_CLASSES))
    assert outputs(response)["top_k_classes"].astype(str).tolist() == names[best].tolist()


def test_predict_a_named_version(served):
    version = latest(served)
    clips = testing.random_clips(1, SHAPE, seed=3)
    response = served.predictions.Predict(predict_request(clips, version=version), timeout=60)
    assert response.model_spec.version.value == version


def test_model_metadata_lists_the_signatures(served):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = served.predictions.GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == MODEL
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    assert {"serving_default", "predict_normalized", "class_names", "classify", "explain"} <= set(
        defs
    )
    clips = defs["serving_default"].inputs["clips"]
    assert clips.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in defs["predict_normalized"].inputs["clips"].tensor_shape.dim] == [
        -1,
        *SHAPE,
    ]
    assert defs["classify"].method_name == "tensorflow/serving/classify"


def test_classify_with_jpeg_frame_examples(served):
    clips = testing.random_clips(2, SHAPE, seed=4)
    examples = [export.clip_example(clip) for clip in clips]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify"
    request.input.example_list.examples.extend(examples)
    response = served.predictions.Classify(request, timeout=60)
    decoded = np.stack(
        [
            np.stack(
                [
                    tf.io.decode_jpeg(f).numpy()
                    for f in e.features.feature["image/encoded"].bytes_list.value
                ]
            )
            for e in examples
        ]
    )
    expected = served.expected(response.model_spec.version.value, decoded)
    names = testing.class_names(NUM_CLASSES)
    for row, result in enumerate(response.result.classifications):
        order = np.argsort(-expected[row])[:5]
        assert [c.label for c in result.classes] == [names[i] for i in order]
        np.testing.assert_allclose(
            [c.score for c in result.classes], expected[row][order], atol=1e-5
        )


# ----------------------------------------------------------------------
# Bad requests: TF Serving's codes; the server keeps serving
# ----------------------------------------------------------------------
def _clip():
    return testing.random_clips(1, SHAPE, seed=5)


def _missing_input():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    return request


def _extra_input():
    request = predict_request(_clip())
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.uint8)))
    return request


def _truncated_content():
    request = predict_request(_clip())
    request.inputs["clips"].tensor_content = request.inputs["clips"].tensor_content[:-7]
    return request


def _unknown_output():
    request = predict_request(_clip())
    request.output_filter.append("no_such_output")
    return request


BAD_PREDICTS = {
    "unknown model": (
        lambda: predict_request(_clip(), model="no-such-model"),
        grpc.StatusCode.NOT_FOUND,
        "no-such-model",
    ),
    "unknown version": (
        lambda: predict_request(_clip(), version=424242),
        grpc.StatusCode.NOT_FOUND,
        "424242",
    ),
    # TF Serving answers an unknown signature key with FAILED_PRECONDITION.
    "unknown signature": (
        lambda: predict_request(_clip(), signature="nope"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "nope",
    ),
    "missing input": (_missing_input, grpc.StatusCode.INVALID_ARGUMENT, "clips"),
    "extra input": (_extra_input, grpc.StatusCode.INVALID_ARGUMENT, "extra"),
    "wrong dtype": (
        lambda: predict_request(_clip(), dtype=np.float32),
        grpc.StatusCode.INVALID_ARGUMENT,
        "",
    ),
    "wrong rank": (lambda: predict_request(_clip()[0]), grpc.StatusCode.INVALID_ARGUMENT, ""),
    "wrong channels": (
        lambda: predict_request(np.zeros((1, 4, 16, 16, 4), np.uint8)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "",
    ),
    "empty clip": (
        lambda: predict_request(np.zeros((1, 0, 16, 16, 3), np.uint8)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "",
    ),
    "truncated tensor": (_truncated_content, grpc.StatusCode.INVALID_ARGUMENT, "clips"),
    "unknown output": (_unknown_output, grpc.StatusCode.INVALID_ARGUMENT, "no_such_output"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTS))
def test_bad_predict_requests(served, case):
    build, code, words = BAD_PREDICTS[case]
    with pytest.raises(grpc.RpcError) as caught:
        served.predictions.Predict(build(), timeout=60)
    assert caught.value.code() == code, caught.value.details()
    assert words in caught.value.details()
    check_good_predict(served)


def test_bad_classify_requests(served):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.input.example_list.examples.append(export.clip_example(_clip()[0]))
    # serving_default has four outputs: TF Serving refuses to Classify with
    # it (no method-name check by default; the signature's shape decides).
    with pytest.raises(grpc.RpcError) as caught:
        served.predictions.Classify(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected one or two output Tensors, found 4" in caught.value.details()
    request.model_spec.signature_name = "classify"
    del request.input.example_list.examples[:]
    with pytest.raises(grpc.RpcError) as caught:
        served.predictions.Classify(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    check_good_predict(served)


def test_bad_metadata_and_status_requests(served):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as caught:  # no metadata_field
        served.predictions.GetModelMetadata(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("weights")
    with pytest.raises(grpc.RpcError) as caught:
        served.predictions.GetModelMetadata(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weights" in caught.value.details()
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "no-such-model"
    with pytest.raises(grpc.RpcError) as caught:
        served.model_service.GetModelStatus(status, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    status.model_spec.name = MODEL
    status.model_spec.version.value = 424242
    with pytest.raises(grpc.RpcError) as caught:
        served.model_service.GetModelStatus(status, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    check_good_predict(served)


def test_oversize_request_is_resource_exhausted(served):
    if served.limit is None:
        pytest.skip("set CLASSREG_SERVING_MAX_MESSAGE_BYTES to the server's limit")
    frames = served.limit // (16 * 16 * 3) + 1
    big = np.zeros((1, frames, 16, 16, 3), np.uint8)
    with pytest.raises(grpc.RpcError) as caught:
        served.predictions.Predict(predict_request(big), timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    check_good_predict(served)


# ----------------------------------------------------------------------
# Hot swap (last: it changes the served version)
# ----------------------------------------------------------------------
def test_new_version_is_swapped_in_without_a_failed_request(served):
    old = latest(served)
    clips = testing.random_clips(2, SHAPE, seed=6)
    request = predict_request(clips)
    seen, failures, wrong = [], [], []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                response = served.predictions.Predict(request, timeout=60)
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
                continue
            version = response.model_spec.version.value
            seen.append(version)
            if version in served.models and not np.allclose(
                outputs(response)["probabilities"], served.expected(version, clips), atol=1e-5
            ):
                wrong.append(version)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        new = served.export(seed=12)  # different weights
        served.wait_for(new)
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] != new) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert wrong == []
    assert seen[0] == old and seen[-1] == new
    assert not np.allclose(served.expected(old, clips), served.expected(new, clips), atol=1e-3)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = MODEL
    states = {
        s.version: s.state
        for s in served.model_service.GetModelStatus(status, timeout=10).model_version_status
    }
    assert states[new] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states[old] == get_model_status_pb2.ModelVersionStatus.END
