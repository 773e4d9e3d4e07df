"""JSON <-> `tf.Example`s for TF Serving's REST Classify and Regress APIs:
TF Serving's `util/json_tensor.cc` (FillClassifyRegressRequestFromJson,
MakeJsonFromClassificationResult, MakeJsonFromRegressionResult), with its
checks and messages. Pure: no server, no model."""

import numpy as np

from serving.errors import invalid_argument
from serving.json_tensor import (
    b64_decode,
    dumps,
    fill_signature,
    format_error,
    is_b64,
    json_type,
    parse_json,
)


def _feature_error(name, feature):
    kind = feature.WhichOneof("kind")
    words = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        kind, "UNKNOWN"
    )
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {words}")


def _add_feature_value(value, name, feature):
    """AddValueToFeature."""

    def require(kind):
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise _feature_error(name, feature)
        return getattr(feature, kind).value

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64(value)):
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )
    if isinstance(value, bool):
        require("int64_list").append(int(value))
    elif isinstance(value, dict):
        require("bytes_list").append(b64_decode(value))
    elif isinstance(value, str):
        require("bytes_list").append(value.encode("utf-8"))
    elif isinstance(value, float):
        require("float_list").append(value)
    else:
        values = require("int64_list")
        if value > 2**63 - 1:
            raise invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        values.append(value)


def _example(value, example):
    """MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid_argument("Example must be JSON object but got JSON " + json_type(value))
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)


def examples_from_json(body, request):
    """FillClassifyRegressRequestFromJson: `examples` (and `context`) ->
    `request.input`."""
    document = parse_json(body)
    fill_signature(document, request)
    has_context = "context" in document
    if has_context:
        _example(document["context"], request.input.example_list_with_context.context)
    if "examples" not in document:
        raise format_error(
            document, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(document, "'examples' value is an empty array")
    target = (
        request.input.example_list_with_context.examples
        if has_context
        else request.input.example_list.examples
    )
    for value in examples:
        _example(value, target.add())


def _float32(value):
    return float(np.float32(value).astype(str))


def classification_json(result):
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    return dumps(
        {
            "results": [
                [
                    [
                        c.label.decode("utf-8", "replace")
                        if isinstance(c.label, bytes)
                        else c.label,
                        _float32(c.score),
                    ]
                    for c in item.classes
                ]
                for item in result.classifications
            ]
        }
    )


def regression_json(result):
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return dumps({"results": [_float32(r.value) for r in result.regressions]})


__all__ = ["classification_json", "examples_from_json", "regression_json"]
