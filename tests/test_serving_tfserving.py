"""TF Serving's wire format and semantics, for SavedModels that are not this
project's: a TF1 graph (SavedModelBuilder, classify/regress signatures) and
a TF2 module, both half plus two (TF Serving's own test model).

gRPC goes through the `tensorflow-serving-api` stubs only, REST through
plain HTTP (urllib); answers are read the way TF Serving's example clients
read them (`.float_val`, `.int_val`, `.string_val`, REST JSON).
"""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tf_serving_models
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.launch import LocalServer

CONFIG = """
model_config_list {
  config { name: "tf1" base_path: "tf1" model_platform: "tensorflow" }
  config { name: "tf2" base_path: "tf2" model_platform: "tensorflow" }
}
"""
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# A server process for the module (TF1 and TF2 models).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfserving")
    tf_serving_models.half_plus_two_tf1(root / "tf1" / "123")
    tf_serving_models.half_plus_two_tf2(root / "tf2" / "123")
    (root / "models.config").write_text(CONFIG)
    return root


class Served:
    def __init__(self, server):
        self.server = server
        self.channel = grpc.insecure_channel(server.address)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.url = server.rest_url

    def rest(self, path, body=None, method=None):
        """(HTTP status, parsed JSON) of a REST call."""
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, json.loads(text) if text else None


def _start(models, *flags):
    server = LocalServer(
        [
            f"--model_config_file={models / 'models.config'}",
            "--file_system_poll_wait_seconds=0",
            *flags,
        ],
        rest=True,
    )
    server.start()
    return Served(server)


@pytest.fixture(scope="module")
def served(models):
    served = _start(models)
    yield served
    served.channel.close()
    assert served.server.stop() == 0, served.server.log()[-3000:]


def x_request(model, values, shape, signature="", output_filter=()):
    """Predict as TF Serving's test builds it: typed `float_val`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.extend(values)
    for size in shape:
        request.inputs["x"].tensor_shape.dim.add().size = size
    request.output_filter.extend(output_filter)
    return request


def _error(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


# ----------------------------------------------------------------------
# Predict: typed output fields, inputs in both forms, shapes to the graph
# ----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tf1", "tf2"])
@pytest.mark.parametrize("shape", [[1], [1, 1], []])
def test_predict_answers_in_typed_fields(served, model, shape):
    response = served.predictions.Predict(
        x_request(model, [2.0], shape, output_filter=["y"]), timeout=60
    )
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert list(y.float_val) == [3.0] and not y.tensor_content
    assert [d.size for d in y.tensor_shape.dim] == shape
    spec = response.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == (model, "serving_default", 123)


def test_predict_takes_tensor_content_and_any_rank(served):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf1"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0, 3.0, 4.0], np.float32)))
    assert request.inputs["x"].tensor_content  # numbers packed
    y = served.predictions.Predict(request, timeout=60).outputs["y"]
    assert list(y.float_val) == [3.0, 3.5, 4.0]


def test_each_dtype_fills_its_typed_field(served):
    response = served.predictions.Predict(
        x_request("tf1", [2.0, 3.0], [2, 1], signature="typed"), timeout=60
    )
    out = response.outputs
    assert list(out["y"].float_val) == [3.0, 3.5]
    assert list(out["ints"].int_val) == [20, 30]
    assert list(out["int64s"].int64_val) == [2, 3]
    assert list(out["strings"].string_val) == [b"2.0", b"3.0"]
    assert list(out["bools"].bool_val) == [False, True]
    assert list(out["doubles"].double_val) == [3.0, 3.5]
    assert all(not p.tensor_content for p in out.values())
    assert {k: [d.size for d in p.tensor_shape.dim] for k, p in out.items()} == dict.fromkeys(
        out, [2, 1]
    )


def test_graph_errors_are_invalid_argument(served):
    request = x_request("tf1", [2.0], [1])
    request.inputs["x"].dtype = types_pb2.DT_DOUBLE
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].double_val.append(2.0)
    code, details = _error(lambda: served.predictions.Predict(request, timeout=60))
    assert code == INVALID and "double" in details
    # TF1 graphs fetch only the requested outputs (Session::Run).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf1"
    request.model_spec.signature_name = "two_inputs"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
    request.inputs["x2"].CopyFrom(tf.make_tensor_proto(np.ones(3, np.float32)))
    request.output_filter.append("y3")
    response = served.predictions.Predict(request, timeout=60)
    assert list(response.outputs) == ["y3"]
    assert list(response.outputs["y3"].float_val) == [3.5, 3.5, 3.5]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([b"2"])))
    del request.output_filter[:]
    code, details = _error(lambda: served.predictions.Predict(request, timeout=60))
    assert code == INVALID and "string" in details


@pytest.mark.parametrize(
    "build, code, words",
    [
        (
            lambda r: r.inputs["z"].CopyFrom(r.inputs["x"]),
            INVALID,
            "input size does not match signature: 2!=1",
        ),
        (lambda r: r.inputs.pop("x"), INVALID, "Missing but required: {x}"),
        (
            lambda r: r.output_filter.append("nope"),
            INVALID,
            "output tensor alias not found in signature: nope",
        ),
        (lambda r: r.output_filter.extend(["y", "y"]), INVALID, "duplicate output tensor alias: y"),
        (
            lambda r: setattr(r.model_spec, "signature_name", "nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (lambda r: setattr(r.model_spec, "name", ""), INVALID, "ModelSpec has no name specified."),
        (
            lambda r: setattr(r.model_spec, "name", "nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda r: r.model_spec.version.__setattr__("value", 9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(tf1, 9)",
        ),
        (
            lambda r: setattr(r.model_spec, "version_label", "x"),
            INVALID,
            "Unrecognized servable version label: x",
        ),
        (
            lambda r: r.inputs["x"].__setattr__("tensor_content", b"abc"),
            INVALID,
            "tensor parsing error: x",
        ),
    ],
)
def test_bad_predicts_get_tf_servings_codes_and_words(served, build, code, words):
    request = x_request("tf1", [2.0], [1])
    if "tensor_content" in words or "parsing" in words:
        request.inputs["x"].ClearField("float_val")
    build(request)
    got, details = _error(lambda: served.predictions.Predict(request, timeout=60))
    assert (got, words in details) == (code, True), details


# ----------------------------------------------------------------------
# Classify, Regress, MultiInference (TF1 and TF2, no method-name check)
# ----------------------------------------------------------------------
def _examples(request, *values, context=None):
    if context is None:
        request.input.example_list.examples.extend(tf_serving_models.example(v) for v in values)
    else:
        request.input.example_list_with_context.context.CopyFrom(context)
        for value in values:
            example = request.input.example_list_with_context.examples.add()
            example.features.feature["x2"].float_list.value.append(value)
    return request


@pytest.mark.parametrize("model", ["tf1", "tf2"])
def test_classify_and_regress(served, model):
    request = _examples(classification_pb2.ClassificationRequest(), 2.0, 4.0)
    request.model_spec.name = model
    request.model_spec.signature_name = "classify_x_to_y"
    result = served.predictions.Classify(request, timeout=60)
    first = result.result.classifications[0].classes
    assert first[0].score == 3.0
    assert result.result.classifications[1].classes[0].score == 4.0
    if model == "tf2":
        assert [(c.label, c.score) for c in first] == [("two", 3.0), ("three", 4.0)]
    assert (
        result.model_spec.name,
        result.model_spec.signature_name,
        result.model_spec.version.value,
    ) == (model, "classify_x_to_y", 123)
    request = _examples(regression_pb2.RegressionRequest(), 2.0, 4.0)
    request.model_spec.name = model
    request.model_spec.signature_name = "regress_x_to_y"
    result = served.predictions.Regress(request, timeout=60)
    assert [r.value for r in result.result.regressions] == [3.0, 4.0]
    assert result.model_spec.signature_name == "regress_x_to_y"


@pytest.mark.parametrize("model", ["tf1", "tf2"])
def test_multi_inference(served, model):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", tf.saved_model.REGRESS_METHOD_NAME),
        ("classify_x_to_y", tf.saved_model.CLASSIFY_METHOD_NAME),
    ):
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    _examples(request, 2.0)
    result = served.predictions.MultiInference(request, timeout=60)
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [
        (r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value)
        for r in result.results
    ] == [(model, "regress_x_to_y", 123), (model, "classify_x_to_y", 123)]
    request.tasks[1].model_spec.name = "tf2" if model == "tf1" else "tf1"
    code, details = _error(lambda: served.predictions.MultiInference(request, timeout=60))
    assert code == INVALID and "same model name" in details
    request.tasks[1].model_spec.name = model
    request.tasks[1].method_name = "tensorflow/serving/predict"
    code, details = _error(lambda: served.predictions.MultiInference(request, timeout=60))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "predict" in details


def test_example_context_is_merged(served):
    context = tf_serving_models.example(6.0)  # x from the context
    request = _examples(regression_pb2.RegressionRequest(), 1.0, 2.0, context=context)
    request.model_spec.name = "tf1"
    request.model_spec.signature_name = "regress_x_to_y"
    result = served.predictions.Regress(request, timeout=60)
    assert [r.value for r in result.result.regressions] == [5.0, 5.0]


def test_classify_regress_errors(served):
    request = _examples(classification_pb2.ClassificationRequest(), 2.0)
    request.model_spec.name = "tf1"
    # serving_default has input x, not inputs: not a classification signature.
    code, details = _error(lambda: served.predictions.Classify(request, timeout=60))
    assert code == INVALID and "No classification inputs found in SignatureDef" in details
    request.model_spec.signature_name = "nope"
    code, details = _error(lambda: served.predictions.Classify(request, timeout=60))
    assert (code, details) == (INVALID, "No signature was found with the name: nope")
    request = regression_pb2.RegressionRequest(model_spec={"name": "tf1"})
    request.model_spec.signature_name = "regress_x_to_y"
    code, details = _error(lambda: served.predictions.Regress(request, timeout=60))
    assert (code, details) == (INVALID, "Input is empty.")
    _examples(request, 2.0)
    request.model_spec.signature_name = "regress_x2_to_y3"  # a float input
    code, _ = _error(lambda: served.predictions.Regress(request, timeout=60))
    assert code == INVALID


# ----------------------------------------------------------------------
# Metadata and status
# ----------------------------------------------------------------------
def test_metadata_checks_fields_before_the_model(served):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "no-such-model"
    code, details = _error(lambda: served.predictions.GetModelMetadata(request, timeout=10))
    assert (code, details) == (
        INVALID,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )
    request.metadata_field.append("signature_def")
    code, _ = _error(lambda: served.predictions.GetModelMetadata(request, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = "tf2"
    response = served.predictions.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    methods = {k: s.method_name for k, s in signatures.signature_def.items()}
    assert methods.pop("__saved_model_init_op") == ""  # as TF Serving lists it
    assert set(methods.values()) == {tf.saved_model.PREDICT_METHOD_NAME}


def test_status(served):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tf1"
    status = served.models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]


# ----------------------------------------------------------------------
# REST
# ----------------------------------------------------------------------
def test_rest_predict_row_and_columnar(served):
    assert served.rest("/v1/models/tf1:predict", {"instances": [2.0, 3.0, 4.0]}) == (
        200,
        {"predictions": [3.0, 3.5, 4.0]},
    )
    assert served.rest("/v1/models/tf1/versions/123:predict", {"inputs": [[2.0], [3.0]]}) == (
        200,
        {"outputs": [[3.0], [3.5]]},
    )
    status, body = served.rest(
        "/v1/models/tf1:predict", {"signature_name": "typed", "instances": [[2.0], [3.0]]}
    )
    assert status == 200
    assert body["predictions"][1] == {
        "y": [3.5],
        "ints": [30],
        "int64s": [3],
        "strings": ["3.0"],
        "bools": [True],
        "doubles": [3.5],
    }
    status, body = served.rest(
        "/v1/models/tf1:predict",
        {
            "signature_name": "two_inputs",
            "instances": [{"x": [2.0], "x2": [1.0]}, {"x": [4.0], "x2": [3.0]}],
        },
    )
    assert (status, body) == (
        200,
        {"predictions": [{"y": [3.0], "y3": [3.5]}, {"y": [4.0], "y3": [4.5]}]},
    )
    status, body = served.rest(
        "/v1/models/tf1:predict",
        {"signature_name": "two_inputs", "inputs": {"x": [1.0], "x2": [2.0]}},
    )
    assert (status, body) == (200, {"outputs": {"y": [2.5], "y3": [4.0]}})


def test_rest_classify_regress(served):
    assert served.rest(
        "/v1/models/tf1:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    ) == (200, {"results": [[["", 3.0]]]})
    assert served.rest(
        "/v1/models/tf2:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    ) == (200, {"results": [[["two", 3.0], ["three", 4.0]]]})
    assert served.rest(
        "/v1/models/tf2:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": [2.0]}, {"x": 4.0}]},
    ) == (200, {"results": [3.0, 4.0]})
    assert served.rest(
        "/v1/models/tf1:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 6.0}, "examples": [{"x2": 1.0}]},
    ) == (200, {"results": [5.0]})


def test_rest_status_and_metadata(served):
    assert served.rest("/v1/models/tf1") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "123",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )
    status, body = served.rest("/v1/models/tf1/versions/123/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "tf1", "signature_name": "", "version": "123"}
    default = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "name": "x:0",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
    }


@pytest.mark.parametrize(
    "method, path, body, code, words",
    [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        ("POST", "/v1/models/tf1:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/tf1:predict", b"{", 400, "JSON Parse error"),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"instance": [1.0]},
            400,
            "Missing 'inputs' or 'instances' key",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"instances": []},
            400,
            "No values in 'instances' array",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"instances": ["a"]},
            400,
            "is not of expected type: float",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"inputs": [[1.0], [2.0, 3.0]]},
            400,
            "Encountered list at unexpected size: 2 at level: 1 expected size: 1",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"instances": [1.0], "inputs": [1.0]},
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"signature_name": 3, "inputs": [1.0]},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"signature_name": "x", "inputs": [1.0]},
            400,
            'Serving signature name: "x" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/tf1:predict",
            {"signature_name": "two_inputs", "instances": [1.0]},
            400,
            "instances is a plain list, but expecting list of objects",
        ),
        ("POST", "/v1/models/tf1/versions/7:predict", {"inputs": [1.0]}, 404, "Specific(tf1, 7)"),
        (
            "POST",
            "/v1/models/tf1/labels/stable:predict",
            {"inputs": [1.0]},
            400,
            "Unrecognized servable version label: stable",
        ),
        (
            "POST",
            "/v1/models/tf1:classify",
            {"examples": []},
            400,
            "'examples' value is an empty array",
        ),
        (
            "POST",
            "/v1/models/tf1:classify",
            {"examples": [{"x": None}]},
            400,
            "Feature: x has element with unexpected JSON type: Null",
        ),
        (
            "POST",
            "/v1/models/tf1:explode",
            {"inputs": [1.0]},
            400,
            "Malformed request: POST /v1/models/tf1:explode",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ],
)
def test_rest_errors(served, method, path, body, code, words):
    status, answer = served.rest(path, body, method=method)
    assert status == code, answer
    assert words in answer["error"], answer


def test_rest_b64_and_bytes_outputs(tmp_path):
    """`{"b64": ...}` in, `_bytes` outputs out, as base64."""

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def echo(self, data):
            return {"data_bytes": data, "length": tf.strings.length(data)}

    from serving.handlers import Handlers
    from serving.manager import ModelManager
    from serving.model_config import single_model_config
    from serving.rest import RestApp

    module = Echo()
    tf.saved_model.save(
        module, str(tmp_path / "echo" / "1"), signatures={"serving_default": module.echo}
    )
    manager = ModelManager(
        single_model_config("echo", tmp_path / "echo"), poll_wait_seconds=0, warmup=False
    ).start()
    app = RestApp(Handlers(manager))
    raw = bytes(range(250, 256))
    import base64

    body = json.dumps({"instances": [{"b64": base64.b64encode(raw).decode()}]})
    answer = json.loads(app.process("POST", "/v1/models/echo:predict", body.encode()))
    assert answer == {
        "predictions": [{"data_bytes": {"b64": base64.b64encode(raw).decode()}, "length": 6}]
    }
    manager.stop()


# ----------------------------------------------------------------------
# The two switches: tensor_content answers, method-name check
# ----------------------------------------------------------------------
def test_tensor_content_and_method_name_check_flags(models):
    served = _start(
        models,
        "--enable_serialization_as_tensor_content",
        "--enable_signature_method_name_check=true",
    )
    try:
        y = served.predictions.Predict(x_request("tf1", [2.0, 4.0], [2]), timeout=60).outputs["y"]
        assert not y.float_val and tf.make_ndarray(y).tolist() == [3.0, 4.0]
        # TF2 signatures are all predict: the check refuses Classify/Regress.
        request = _examples(regression_pb2.RegressionRequest(), 2.0)
        request.model_spec.name = "tf2"
        request.model_spec.signature_name = "regress_x_to_y"
        code, details = _error(lambda: served.predictions.Regress(request, timeout=60))
        assert code == INVALID and details == (
            "Expected regression signature method_name to be "
            "tensorflow/serving/regress. Was: tensorflow/serving/predict"
        )
        request.model_spec.name = "tf1"  # a real regression signature
        result = served.predictions.Regress(request, timeout=60)
        assert result.result.regressions[0].value == 3.0
        assert served.rest("/v1/models/tf1:predict", {"inputs": [2.0]}) == (
            200,
            {"outputs": [3.0]},
        )  # REST writes JSON from any proto form
    finally:
        served.channel.close()
        served.server.stop()
