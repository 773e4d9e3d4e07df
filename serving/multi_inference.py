"""MultiInference on a loaded version: TF Serving's
`servables/tensorflow/multi_inference.cc` (every task, classify or regress
on one model, run on the same examples; one signature once)."""

import grpc
from tensorflow_serving.apis import inference_pb2

from serving.classify_regress import (
    check_classify,
    check_regress,
    classification_result,
    regression_result,
    serialized_examples,
)
from serving.errors import ServingError, invalid_argument
from serving.signature import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, signature_input


def run_multi_inference(servable, request, context=None):
    """`MultiInferenceRequest` -> `MultiInferenceResponse` on `servable`:
    every task (classify or regress, one model) on the same examples."""
    model_name, seen, plan = "", set(), []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if key in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        if key not in servable.signature_defs:
            raise invalid_argument(f"Requested signature not found in model graph: {key}")
        signature = servable.loaded_signature(key)
        if task.method_name == CLASSIFY_METHOD:
            check_classify(signature.definition, servable.options.method_name_check)
        elif task.method_name == REGRESS_METHOD:
            check_regress(signature.definition, servable.options.method_name_check)
        else:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )
        plan.append((task, signature))
    examples = serialized_examples(request.input)
    outputs = {}
    for _, signature in plan:
        outputs[signature.name] = servable.run(
            signature, {signature_input(signature): examples}, context, batchable=False
        )
        if context is not None:
            context.charge_outputs(outputs[signature.name])
    response = inference_pb2.MultiInferenceResponse()
    for task, signature in plan:
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            classification_result(
                signature.definition,
                len(examples),
                outputs[signature.name],
                result.classification_result,
            )
        else:
            regression_result(
                signature.definition,
                len(examples),
                outputs[signature.name],
                result.regression_result,
            )
        result.model_spec.name = task.model_spec.name
        result.model_spec.signature_name = signature.name
        result.model_spec.version.value = servable.version
    return response


__all__ = ["run_multi_inference"]
