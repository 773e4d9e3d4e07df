"""Classify and Regress on a loaded version: TF Serving's
`servables/tensorflow/classifier.cc` and `regressor.cc` (the signature's
PreProcess checks, the request's `tf.Example`s run as one batch, the
PostProcess checks that fill the result) and `util.cc`'s
`InputToSerializedExampleTensor`.

The checks and result builders are shared with MultiInference
(`serving.multi_inference`)."""

import numpy as np
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, regression_pb2

from serving.errors import invalid_argument
from serving.signature import (
    CLASSIFY_CLASSES,
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD,
    CLASSIFY_SCORES,
    DEFAULT_SIGNATURE,
    REGRESS_INPUTS,
    REGRESS_METHOD,
    REGRESS_OUTPUTS,
)
from serving.tensors import dtype_enum


def run_classify(servable, request, context=None):
    """`ClassificationRequest` -> `ClassificationResponse` on `servable`."""
    return _run_examples(
        servable,
        request,
        context,
        CLASSIFY_METHOD,
        "classification",
        check_classify,
        CLASSIFY_INPUTS,
        classification_pb2.ClassificationResponse(),
        classification_result,
    )


def run_regress(servable, request, context=None):
    """`RegressionRequest` -> `RegressionResponse` on `servable`."""
    return _run_examples(
        servable,
        request,
        context,
        REGRESS_METHOD,
        "regression",
        check_regress,
        REGRESS_INPUTS,
        regression_pb2.RegressionResponse(),
        regression_result,
    )


def _run_examples(
    servable, request, context, method, kind, check, input_key, response, fill_result
):
    """Classify and Regress: the request's `tf.Example`s through the
    signature as one batch; `fill_result(definition, count, outputs,
    response.result)` writes the answer."""
    key = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = _example_signature(servable, key, method, kind, check)
    examples = serialized_examples(request.input)
    outputs = servable.run(signature, {input_key: examples}, context, batchable=False)
    if context is not None:
        context.charge_outputs(outputs)
    servable.fill_spec(response.model_spec, key)
    fill_result(signature.definition, len(examples), outputs, response.result)
    return response


def _example_signature(servable, key, method, kind, check):
    if key not in servable.signature_defs:
        raise invalid_argument(f"No signature was found with the name: {key}")
    signature = servable.loaded_signature(key)
    # GetClassificationSignatureDef / GetRegressionSignatureDef, then the
    # classifier's / regressor's PreProcess checks.
    check(signature.definition, servable.options.method_name_check)
    return signature


def serialized_examples(model_input):
    """TF Serving's `Input` proto -> 1-D object array of serialized
    `tf.Example`s (with `example_list_with_context`, the context's bytes
    are put before each example's, as TF Serving does, so the parsed
    example holds the context's features too)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in model_input.example_list.examples]
    elif kind == "example_list_with_context":
        context = model_input.example_list_with_context.context.SerializeToString()
        examples = [
            context + e.SerializeToString() for e in model_input.example_list_with_context.examples
        ]
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty.")
    return np.array(examples, dtype=object)


def _signature_text(definition):
    return text_format.MessageToString(definition)


def _check_method(definition, method, kind):
    if definition.method_name != method:
        raise invalid_argument(
            f"Expected {kind} signature method_name to be {method}. Was: {definition.method_name}"
        )


def check_classify(definition, method_check=False):
    """TF Serving's PreProcessClassification checks."""
    if method_check:
        _check_method(definition, CLASSIFY_METHOD, "classification")
    if len(definition.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(definition.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(definition.outputs)}"
        )
    if CLASSIFY_INPUTS not in definition.inputs:
        raise invalid_argument(
            "No classification inputs found in SignatureDef: " + _signature_text(definition)
        )
    if CLASSIFY_CLASSES not in definition.outputs and CLASSIFY_SCORES not in definition.outputs:
        raise invalid_argument(
            "Expected classification signature outputs to contain at least "
            f'one of "{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature '
            f"was: {_signature_text(definition)}"
        )


def check_regress(definition, method_check=False):
    """TF Serving's PreProcessRegression checks."""
    if method_check:
        _check_method(definition, REGRESS_METHOD, "regression")
    if len(definition.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(definition.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in definition.inputs:
        raise invalid_argument(
            "No regression inputs found in SignatureDef: " + _signature_text(definition)
        )
    if REGRESS_OUTPUTS not in definition.outputs:
        raise invalid_argument(
            "No regression outputs found in SignatureDef: " + _signature_text(definition)
        )


def _shape_text(array):
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def classification_result(definition, num_examples, outputs, result):
    """TF Serving's PostProcessClassificationResult."""
    classes = outputs.get(CLASSIFY_CLASSES) if CLASSIFY_CLASSES in definition.outputs else None
    scores = outputs.get(CLASSIFY_SCORES) if CLASSIFY_SCORES in definition.outputs else None
    for label, value, dtype in (
        ("classes", classes, types_pb2.DT_STRING),
        ("scores", scores, types_pb2.DT_FLOAT),
    ):
        if value is None:
            continue
        if value.ndim != 2:
            raise invalid_argument(
                "Expected Tensor shape: [batch_size num_classes] but got " + _shape_text(value)
            )
        if dtype_enum(value) != dtype:
            raise invalid_argument(
                f"Expected {label} Tensor of {types_pb2.DataType.Name(dtype)}. "
                f"Got: {types_pb2.DataType.Name(dtype_enum(value))}"
            )
        if value.shape[0] != num_examples:
            raise invalid_argument(
                f"Expected {label} output batch size of {num_examples}. Got: {value.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]
    for row in range(num_examples):
        classifications = result.classifications.add()
        for column in range(width):
            item = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                item.label = label if isinstance(label, bytes) else str(label)
            if scores is not None:
                item.score = float(scores[row, column])


def regression_result(definition, num_examples, outputs, result):
    """TF Serving's PostProcessRegressionResult."""
    output = outputs.get(REGRESS_OUTPUTS)
    if output is None:
        raise invalid_argument(f"Could not find output tensor '{REGRESS_OUTPUTS}'")
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or "
            f"[batch_size, 1] but got {_shape_text(output)}"
        )
    if output.shape[0] != num_examples:
        raise invalid_argument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {output.shape[0]}"
        )
    if output.dtype != np.float32:
        raise invalid_argument(
            "Expected output Tensor of DT_FLOAT.  Got: "
            + types_pb2.DataType.Name(dtype_enum(output))
        )
    for value in output.reshape(-1).tolist():
        result.regressions.add().value = value


__all__ = [
    "check_classify",
    "check_regress",
    "classification_result",
    "regression_result",
    "run_classify",
    "run_regress",
    "serialized_examples",
]
