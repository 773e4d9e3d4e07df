"""Predict on a loaded version: TF Serving's `servables/tensorflow/
predict_util.cc` (RunPredict): the request's inputs checked against the
signature (count, aliases, the SignatureDef's defaults for missing ones),
the output filter applied, the signature run, the outputs encoded."""

import grpc
from tensorflow_serving.apis import predict_pb2

from serving.errors import ServingError, invalid_argument
from serving.signature import CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD, REGRESS_METHOD
from serving.tensors import to_array, to_proto


def run_predict(servable, request, context=None):
    """`PredictRequest` -> `PredictResponse` on `servable` (a
    `serving.servable.ServableVersion`)."""
    key = request.model_spec.signature_name or DEFAULT_SIGNATURE
    if key not in servable.signature_defs:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
        )
    signature = servable.loaded_signature(key)
    if servable.options.method_name_check and signature.method_name not in (
        PREDICT_METHOD,
        CLASSIFY_METHOD,
        REGRESS_METHOD,
    ):
        raise ServingError(
            grpc.StatusCode.INTERNAL,
            "Expected prediction signature method_name to be one of "
            f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
            f"Was: {signature.method_name}",
        )
    values = input_values(signature, request.inputs)
    aliases = output_aliases(signature, request.output_filter)
    outputs = servable.run(signature, values, context, outputs=aliases)
    if context is not None:
        context.charge_outputs({a: outputs[a] for a in aliases})
    response = predict_pb2.PredictResponse()
    servable.fill_spec(response.model_spec, key)
    for alias in aliases:
        response.outputs[alias].CopyFrom(
            to_proto(outputs[alias], as_content=servable.options.tensor_content)
        )
    return response


def input_values(signature, inputs):
    """TF Serving's input checks (count, names, parsing; defaults of the
    SignatureDef fill missing inputs) -> `{alias: array}`."""
    definition = signature.definition
    expected, received = set(definition.inputs), set(inputs)
    if len(received) > len(expected) or (len(received) < len(expected) and not definition.defaults):
        raise invalid_argument(
            f"input size does not match signature: {len(received)}!="
            f"{len(expected)} len({{{','.join(sorted(received))}}}) != "
            f"len({{{','.join(sorted(expected))}}}). Sent extra: "
            f"{{{','.join(sorted(received - expected))}}}. Missing but "
            f"required: {{{','.join(sorted(expected - received))}}}."
        )
    extra = sorted(received - expected)
    if extra:
        raise invalid_argument(
            f"input tensor alias not found in signature: {extra[0]}. Inputs "
            f"expected to be in the set {{{','.join(sorted(expected))}}}."
        )
    values = {}
    for alias in sorted(expected):
        if alias in inputs:
            values[alias] = to_array(inputs[alias], alias)
        elif alias in definition.defaults:
            values[alias] = to_array(definition.defaults[alias], alias)
        else:
            raise invalid_argument(f"Missing input in request and no default value: {alias}")
    return values


def output_aliases(signature, output_filter):
    outputs = signature.outputs
    seen = []
    for alias in output_filter:
        if alias not in outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} "
                "Outputs expected to be in the set "
                f"{{{','.join(sorted(outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or list(outputs)


__all__ = ["input_values", "output_aliases", "run_predict"]
