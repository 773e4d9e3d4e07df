"""Model versions on disk → loaded SavedModels, the way TF Serving manages them.

A model is a base folder of numeric version folders, each a SavedModel
(`base/1/`, `base/2/`, ...). `ModelManager` polls the base folders, loads
the versions the version policy asks for (`latest` N, default 1; `all`;
`specific`) with `tf.saved_model.load`, replays the warm-up requests of
`assets.extra/tf_serving_warmup_requests`, and only then makes a version
AVAILABLE and unloads the versions it replaces (availability preserving:
requests never see a gap, and a version that fails to load leaves the old
one serving). Folders that hold no `saved_model.pb` yet are ignored until
they do; a version that failed to load is retried when its files change.

`ServableVersion.predict` / `.classify` / `.regress` / `.multi_inference` /
`.metadata` answer TF Serving's request protos for any SavedModel (TF1 or
TF2) with TF Serving's semantics, status codes and messages; version labels
are resolved as TF Serving does (a label may only name a loaded version).

Example:

>>> manager = ModelManager(single_model_config("tiny", "/models/tiny"))
>>> manager.start()       # loads the latest version, then polls  # doctest: +SKIP
>>> version = manager.resolve(request.model_spec)                  # doctest: +SKIP
>>> response = version.predict(request)                            # doctest: +SKIP
"""

import dataclasses
import logging
import os
import re
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import Batcher
from serving.errors import ServingError, invalid_argument, not_found
from serving.execution import call_cancellable
from serving.tensors import dtype_enum, to_array, to_proto
from serving.text_protos import read_text_proto

_LOG = logging.getLogger(__name__)

# TensorFlow's own names for signatures and their methods and tensors.
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
PREDICT_METHOD = tf.saved_model.PREDICT_METHOD_NAME
CLASSIFY_METHOD = tf.saved_model.CLASSIFY_METHOD_NAME
REGRESS_METHOD = tf.saved_model.REGRESS_METHOD_NAME
CLASSIFY_INPUTS = tf.saved_model.CLASSIFY_INPUTS
CLASSIFY_CLASSES = tf.saved_model.CLASSIFY_OUTPUT_CLASSES
CLASSIFY_SCORES = tf.saved_model.CLASSIFY_OUTPUT_SCORES
REGRESS_INPUTS = tf.saved_model.REGRESS_INPUTS
REGRESS_OUTPUTS = tf.saved_model.REGRESS_OUTPUTS
INIT_OP_SIGNATURE = "__saved_model_init_op"  # TF2 exports list it, as TF Serving
SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
State = get_model_status_pb2.ModelVersionStatus.State


# ----------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------
def single_model_config(name, base_path):
    """A `ModelServerConfig` with one model (TF Serving's `--model_name`,
    `--model_base_path`)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = os.fspath(base_path)
    model.model_platform = "tensorflow"
    return config


def read_model_config_file(path):
    """Parses a `models.config` file (TF Serving's `ModelServerConfig` text
    format) and checks it; relative base paths are taken from the file's
    folder."""
    config = read_text_proto(
        path,
        model_server_config_pb2.ModelServerConfig(),
        "model config",
        hint=" (expected TF Serving's ModelServerConfig text format: "
        "model_config_list { config { name: '...' base_path: '...' "
        "model_platform: 'tensorflow' } })",
    )
    folder = os.path.dirname(os.path.abspath(path))
    for model in config.model_config_list.config:
        if model.base_path and not os.path.isabs(model.base_path):
            model.base_path = os.path.join(folder, model.base_path)
    check_model_config(config, path)
    return config


def check_model_config(config, source="model config"):
    """Raises ValueError naming the problem if `config` cannot be served."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"{source}: custom_model_config is not supported; use model_config_list.")
    names = set()
    for index, model in enumerate(config.model_config_list.config):
        where = f"{source}: config #{index + 1}"
        if not model.name:
            raise ValueError(f"{where} has no name.")
        if model.name in names:
            raise ValueError(f"{where}: model name {model.name!r} repeats.")
        names.add(model.name)
        if not model.base_path:
            raise ValueError(f"{where} ({model.name}) has no base_path.")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"{where} ({model.name}): model_platform "
                f"{model.model_platform!r} is not supported; expected "
                "'tensorflow'."
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 0:
            raise ValueError(f"{where} ({model.name}): latest.num_versions must be positive.")
    if not names:
        raise ValueError(f"{source}: no models (model_config_list is empty).")
    return config


def _aspired_versions(model_config, found):
    """The versions of `found` (sorted ints) the version policy wants."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(found)
    if choice == "specific":
        return set(found) & set(policy.specific.versions)
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(sorted(found)[-max(count, 1) :])


# ----------------------------------------------------------------------
# Server-wide request semantics
# ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """Switches of TF Serving's command line that change how requests are
    answered.

    Args:
        method_name_check: `--enable_signature_method_name_check`: Classify
            and Regress demand a signature whose `method_name` is
            classify/regress, Predict one of predict/classify/regress. Off by
            default, as in TF Serving (TF2 SavedModels mark every signature
            predict).
        tensor_content: `--enable_serialization_as_tensor_content`: Predict
            answers pack numeric outputs into `tensor_content` instead of the
            typed repeated fields (`float_val`, `int_val`, ...).
        saved_model_tags: the MetaGraph to load (`--saved_model_tags`).
    """

    method_name_check: bool = False
    tensor_content: bool = False
    saved_model_tags: tuple = (tf.saved_model.SERVING,)


# ----------------------------------------------------------------------
# One loaded version
# ----------------------------------------------------------------------
@dataclasses.dataclass
class _Signature:
    name: str
    definition: object  # the SignatureDef
    function: object  # the loaded concrete function
    batcher: object = None

    @property
    def method_name(self):
        return self.definition.method_name

    @property
    def inputs(self):
        return self.definition.inputs

    @property
    def outputs(self):
        return self.definition.outputs


class ServableVersion:
    """One loaded SavedModel version and TF Serving's request handlers on it
    (`predict`, `classify`, `regress`, `multi_inference`, `metadata`).

    Any SavedModel works (TF1 graphs written with `SavedModelBuilder` or TF2
    `tf.saved_model.save` / Keras exports): requests are checked against
    the `SignatureDef`s of `saved_model.pb` exactly as TF Serving checks
    them, and the tensors go to the graph as they are (the graph, not the
    server, rejects a shape it cannot take).
    """

    def __init__(self, name, version, path, batching=None, options=None):
        self.name, self.version, self.path = name, int(version), path
        self.options = options or ServingOptions()
        tags = list(self.options.saved_model_tags)
        meta_graph = _read_meta_graph(path, tags)
        self.signature_defs = {
            key: meta_graph_pb2.SignatureDef.FromString(value.SerializeToString())
            for key, value in meta_graph.signature_def.items()
        }
        self.tf1 = not meta_graph.HasField("object_graph_def")
        with _quiet_tf_logger():
            if self.tf1:  # a TF1 graph: run it in a Session, as TF Serving
                graph = tf.Graph()
                self._session = tf.compat.v1.Session(graph=graph)
                with graph.as_default():
                    tf.compat.v1.saved_model.loader.load(self._session, tags, path)
                functions = {
                    key: _SessionFunction(self._session, definition)
                    for key, definition in self.signature_defs.items()
                }
            else:
                self._saved_model = tf.saved_model.load(path, tags=tags)
                functions = {
                    key: _EagerFunction(function)
                    for key, function in self._saved_model.signatures.items()
                }
        self.signatures = {}
        for key, definition in self.signature_defs.items():
            if key not in functions:  # TF2's __saved_model_init_op
                if key != INIT_OP_SIGNATURE:
                    _LOG.warning(
                        "%s version %d: signature %r has no function; requests for it will fail",
                        name,
                        version,
                        key,
                    )
                continue
            signature = _Signature(key, definition, functions[key])
            if batching is not None and _batch_major(definition):
                signature.batcher = Batcher(
                    lambda values, context=None, s=signature: self._call(s, values, None, context),
                    batching,
                    name=f"batch-{name}-{version}-{key}",
                )
            self.signatures[key] = signature

    def close(self):
        """Lets queued batches finish, then stops the batching threads."""
        for signature in self.signatures.values():
            if signature.batcher is not None:
                signature.batcher.close()

    # -- Predict -------------------------------------------------------
    def predict(self, request, context=None):
        """`PredictRequest` -> `PredictResponse` (TF Serving's predict_util)."""
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        signature = self._signature(key)
        if self.options.method_name_check and signature.method_name not in (
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
        values = _input_values(signature, request.inputs)
        aliases = _output_aliases(signature, request.output_filter)
        outputs = self.run(signature, values, context, outputs=aliases)
        if context is not None:
            context.charge_outputs({a: outputs[a] for a in aliases})
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, key)
        for alias in aliases:
            response.outputs[alias].CopyFrom(
                to_proto(outputs[alias], as_content=self.options.tensor_content)
            )
        return response

    # -- Classify / Regress / MultiInference ---------------------------
    def classify(self, request, context=None):
        """`ClassificationRequest` -> `ClassificationResponse`."""
        return self._run_examples(
            request,
            context,
            CLASSIFY_METHOD,
            "classification",
            _check_classify,
            CLASSIFY_INPUTS,
            classification_pb2.ClassificationResponse(),
            _classification_result,
        )

    def regress(self, request, context=None):
        """`RegressionRequest` -> `RegressionResponse`."""
        return self._run_examples(
            request,
            context,
            REGRESS_METHOD,
            "regression",
            _check_regress,
            REGRESS_INPUTS,
            regression_pb2.RegressionResponse(),
            _regression_result,
        )

    def _run_examples(
        self, request, context, method, kind, check, input_key, response, fill_result
    ):
        """Classify and Regress: the request's `tf.Example`s through the
        signature as one batch; `fill_result(definition, count, outputs,
        response.result)` writes the answer."""
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._example_signature(key, method, kind, check)
        examples = serialized_examples(request.input)
        outputs = self.run(signature, {input_key: examples}, context, batchable=False)
        if context is not None:
            context.charge_outputs(outputs)
        self._fill_spec(response.model_spec, key)
        fill_result(signature.definition, len(examples), outputs, response.result)
        return response

    def multi_inference(self, request, context=None):
        """`MultiInferenceRequest` -> `MultiInferenceResponse`: every task
        (classify or regress, one model) on the same examples."""
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
            if key not in self.signature_defs:
                raise invalid_argument(f"Requested signature not found in model graph: {key}")
            signature = self._signature(key)
            if task.method_name == CLASSIFY_METHOD:
                _check_classify(signature.definition, self.options.method_name_check)
            elif task.method_name == REGRESS_METHOD:
                _check_regress(signature.definition, self.options.method_name_check)
            else:
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"Unsupported signature method_name: {task.method_name}",
                )
            plan.append((task, signature))
        examples = serialized_examples(request.input)
        outputs = {}
        for _, signature in plan:
            outputs[signature.name] = self.run(
                signature, {signature_input(signature): examples}, context, batchable=False
            )
            if context is not None:
                context.charge_outputs(outputs[signature.name])
        response = inference_pb2.MultiInferenceResponse()
        for task, signature in plan:
            result = response.results.add()
            if task.method_name == CLASSIFY_METHOD:
                _classification_result(
                    signature.definition,
                    len(examples),
                    outputs[signature.name],
                    result.classification_result,
                )
            else:
                _regression_result(
                    signature.definition,
                    len(examples),
                    outputs[signature.name],
                    result.regression_result,
                )
            result.model_spec.name = task.model_spec.name
            result.model_spec.signature_name = signature.name
            result.model_spec.version.value = self.version
        return response

    # -- GetModelMetadata ----------------------------------------------
    def metadata(self, request=None):
        """`GetModelMetadataResponse` with the `signature_def` map (the
        request's `metadata_field` is checked by `check_metadata_request`
        before the model is looked up, as TF Serving does)."""
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in self.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def input_infos(self, signature_name):
        """The input `TensorInfo` map of a signature (REST uses it to type
        JSON values); INVALID_ARGUMENT if there is no such signature."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        return self.signature_defs[key].inputs

    def warm_up(self, iterations=1):
        """Replays `assets.extra/tf_serving_warmup_requests` (predict,
        classify, regress and multi_inference logs, as TF Serving), each
        record `iterations` times; returns the number of records run. A
        failing request fails the load."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        handlers = {
            "predict_log": lambda log: self.predict(log.request),
            "classify_log": lambda log: self.classify(log.request),
            "regress_log": lambda log: self.regress(log.request),
            "multi_inference_log": lambda log: self.multi_inference(log.request),
        }
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            if kind not in handlers:
                raise ValueError(
                    f"{path}: warm-up record {count + 1} is a {kind}; "
                    f"supported: {', '.join(handlers)}."
                )
            for _ in range(iterations):
                handlers[kind](getattr(log, kind))
            count += 1
        return count

    # -- helpers -------------------------------------------------------
    def run(self, signature, values, context=None, batchable=True, outputs=None):
        """Runs a signature on `{input alias: array}`; returns `{output
        alias: array}` (at least the aliases of `outputs`; None: all).
        Batched with concurrent requests when batching is on and the inputs
        have the signature's declared shapes. A request whose deadline
        passed or that was cancelled is dropped before the call (and its
        result after it); the call itself runs under the request's deadline
        (`serving.execution`)."""
        if context is not None:
            context.check()
        if (
            batchable
            and signature.batcher is not None
            and _matches_declared_shapes(signature, values)
        ):
            result = signature.batcher.run(values, context)
        else:
            result = self._call(signature, values, outputs, context)
        if context is not None:
            context.check()
        return result

    def _call(self, signature, values, outputs=None, context=None):
        try:
            return signature.function(values, outputs, context)
        except tf.errors.OpError as error:
            if (
                context is not None
                and isinstance(error, tf.errors.CancelledError)
                and context.done()
            ):
                context.check()  # CANCELLED / DEADLINE_EXCEEDED, as it is
            raise ServingError.from_tf_error(error) from None
        except (TypeError, ValueError) as error:
            raise invalid_argument(
                f"signature {signature.name!r} rejected the inputs: {error}"
            ) from None

    def _signature(self, key):
        signature = self.signatures.get(key)
        if signature is None:
            raise ServingError(grpc.StatusCode.INTERNAL, f"signature {key!r} could not be restored")
        return signature

    def _example_signature(self, key, method, kind, check):
        if key not in self.signature_defs:
            raise invalid_argument(f"No signature was found with the name: {key}")
        signature = self._signature(key)
        # GetClassificationSignatureDef / GetRegressionSignatureDef, then the
        # classifier's / regressor's PreProcess checks.
        check(signature.definition, self.options.method_name_check)
        return signature

    def _fill_spec(self, model_spec, signature_name):
        model_spec.name = self.name
        model_spec.version.value = self.version
        model_spec.signature_name = signature_name


def check_metadata_request(request):
    """GetModelMetadata's request checks (before the model is looked up)."""
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


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


def signature_input(signature):
    return next(iter(signature.inputs))


def _signature_text(definition):
    return text_format.MessageToString(definition)


def _check_method(definition, method, kind):
    if definition.method_name != method:
        raise invalid_argument(
            f"Expected {kind} signature method_name to be {method}. Was: {definition.method_name}"
        )


def _check_classify(definition, method_check=False):
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


def _check_regress(definition, method_check=False):
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


def _classification_result(definition, num_examples, outputs, result):
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


def _regression_result(definition, num_examples, outputs, result):
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


def _input_values(signature, inputs):
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


def _output_aliases(signature, output_filter):
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


def _declared_shape(info):
    shape = info.tensor_shape
    if shape.unknown_rank:
        return None
    return [d.size for d in shape.dim]


def _batch_major(definition):
    """Whether every input and output of a signature has a leading batch
    dimension of unknown size (so requests can be concatenated)."""
    infos = list(definition.inputs.values()) + list(definition.outputs.values())
    if not definition.inputs:
        return False
    for info in infos:
        shape = _declared_shape(info)
        if not shape or shape[0] != -1:
            return False
    return True


def _matches_declared_shapes(signature, values):
    for alias, value in values.items():
        shape = _declared_shape(signature.inputs[alias])
        if (
            shape is None
            or value.ndim != len(shape)
            or any(want not in (-1, got) for want, got in zip(shape, value.shape))
        ):
            return False
        if (
            value.dtype.kind not in "OSU"
            and tf.as_dtype(value.dtype).as_datatype_enum != signature.inputs[alias].dtype
        ):
            return False
    return True


class _quiet_tf_logger:
    """Silences the `tensorflow` Python logger's warnings while loading
    (TF1 SavedModels warn once per reference variable)."""

    def __enter__(self):
        self._logger = logging.getLogger("tensorflow")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


class _EagerFunction:
    """A TF2 SavedModel signature (a restored concrete function); the
    tensors go in as they are (no shape check before the graph)."""

    def __init__(self, function):
        self._function = function

    def __call__(self, values, outputs=None, context=None):
        tensors = {name: tf.constant(value) for name, value in values.items()}
        result = call_cancellable(self._function, context, **tensors)
        del tensors
        wanted = result if outputs is None else outputs
        return {name: np.asarray(result[name]) for name in wanted}


class _SessionFunction:
    """A TF1 SavedModel signature run in the model's Session by tensor
    names, fetching only the requested outputs (TF Serving's
    `Session::Run`: no shape check before the graph)."""

    def __init__(self, session, definition):
        self._session, self._definition = session, definition
        self._callables = {}
        self._lock = threading.Lock()

    def __call__(self, values, outputs=None, context=None):
        feeds = sorted(values)
        fetches = list(outputs or self._definition.outputs)
        remaining = context.time_remaining() if context is not None else None
        if remaining is not None:
            # TF Serving's RunOptions.timeout_in_ms: TensorFlow cancels the
            # step at the deadline (DEADLINE_EXCEEDED).
            return self._run_with_timeout(values, feeds, fetches, remaining)
        key = (tuple(feeds), tuple(fetches))
        with self._lock:
            run = self._callables.get(key)
            if run is None:
                options = config_pb2.CallableOptions(
                    feed=[self._definition.inputs[a].name for a in feeds],
                    fetch=[self._definition.outputs[a].name for a in fetches],
                )
                run = self._session._make_callable_from_options(options)
                self._callables[key] = run
        results = run(*[values[alias] for alias in feeds])
        return {alias: np.asarray(value) for alias, value in zip(fetches, results)}

    def _run_with_timeout(self, values, feeds, fetches, seconds):
        """Session::Run with `RunOptions.timeout_in_ms` (TF Serving's deadline),
        by tensor, without the Python-side shape check of `Session.run` (the
        graph decides, as in TF Serving)."""
        from tensorflow.python.client import pywrap_tf_session as tf_session

        graph = self._session.graph
        options = config_pb2.RunOptions(timeout_in_ms=max(1, int(seconds * 1000)))
        buffer = tf_session.TF_NewBufferFromString(options.SerializeToString())
        try:
            feed = {
                graph.get_tensor_by_name(self._definition.inputs[a].name).ref(): values[a]
                for a in feeds
            }
            fetch = [graph.get_tensor_by_name(self._definition.outputs[a].name) for a in fetches]
            results = self._session._do_run(None, [], fetch, feed, buffer, None)
        finally:
            tf_session.TF_DeleteBuffer(buffer)
        return {alias: np.asarray(value) for alias, value in zip(fetches, results)}


def _read_meta_graph(path, tags=(tf.saved_model.SERVING,)):
    pb = os.path.join(path, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    if os.path.isfile(pb):
        with open(pb, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if set(tags) == set(meta_graph.meta_info_def.tags):
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(f"{path}: no MetaGraph tagged {sorted(tags)} (found {found}).")


# ----------------------------------------------------------------------
# The manager
# ----------------------------------------------------------------------
@dataclasses.dataclass
class _VersionState:
    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class _Model:
    def __init__(self, config):
        self.config = config
        self.available = {}  # version -> ServableVersion
        self.states = {}  # version -> _VersionState
        self.failed = {}  # version -> files stamp when the load failed


class ModelManager:
    """Loads, serves and swaps the versions of the configured models.

    Args:
        config: a `ModelServerConfig` (see `read_model_config_file`,
            `single_model_config`).
        batching: `serving.batching.BatchingOptions`, or `None` (off).
        poll_wait_seconds: seconds between polls of the base folders for
            new versions (0 or less: poll once, at start).
        warmup_iterations: times each warm-up record is replayed.
        warmup: replay each version's warm-up requests before serving it.
        options: `ServingOptions` (request semantics of every version).
        allow_version_labels_for_unavailable_models: TF Serving's flag: a
            new label may name a version that is not loaded (yet).
    """

    def __init__(
        self,
        config,
        batching=None,
        poll_wait_seconds=1.0,
        warmup=True,
        options=None,
        allow_version_labels_for_unavailable_models=False,
        warmup_iterations=1,
    ):
        check_model_config(config)
        self._batching = batching
        self._poll_wait = float(poll_wait_seconds)
        self._warmup = warmup
        self._warmup_iterations = max(1, int(warmup_iterations))
        self.options = options or ServingOptions()
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._lock = threading.RLock()  # guards self._models, self._labels
        self._poll_lock = threading.Lock()  # one poll at a time
        self._models = {m.name: _Model(m) for m in config.model_config_list.config}
        self._labels = {}  # model -> {label: version}
        self._stop = threading.Event()
        self._thread = None
        self._listeners = []

    # -- readiness ---------------------------------------------------------
    def add_listener(self, callback):
        """Calls `callback()` after every change of a version's state (the
        health service follows the models with it)."""
        self._listeners.append(callback)

    def _changed(self):
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001 (a listener must not stop loads)
                _LOG.exception("state listener failed")

    def has_model(self, name):
        with self._lock:
            return name in self._models

    def serving_status(self):
        """`{model name: whether it has an AVAILABLE version}`."""
        with self._lock:
            return {name: bool(model.available) for name, model in self._models.items()}

    def unavailable_models(self):
        """`{model name: (reason, True if it can still become available)}`
        for the models without an AVAILABLE version: waiting for a first
        version folder, or every version on disk failed to load."""
        problems = {}
        with self._lock:
            models = list(self._models.items())
        for name, model in models:
            if model.available:
                continue
            found = _version_folders(model.config.base_path)
            if not found:
                problems[name] = (
                    "no version folder holding a SavedModel under its base path yet",
                    True,
                )
                continue
            failures = [
                f"version {number}: {model.states[number].error_message}"
                for number in sorted(model.failed, reverse=True)
                if number in model.states
            ]
            if failures:
                problems[name] = ("no version could be loaded (" + "; ".join(failures) + ")", False)
            else:
                problems[name] = ("no version wanted by its version policy is on disk", True)
        return problems

    # -- life cycle ----------------------------------------------------
    def start(self):
        """Loads what is on disk now, then polls in the background. Raises
        `ServingError` (FAILED_PRECONDITION) if a version label names a
        version that did not load, as TF Serving refuses to start then."""
        self.poll()
        self._update_labels()
        if self._poll_wait > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, name="model-poller", daemon=True
            )
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for model in self._models.values():
                for version in model.available.values():
                    version.close()

    def reload(self, config):
        """Applies a new `ModelServerConfig` (HandleReloadConfigRequest):
        new models are loaded, removed ones unloaded, before returning; then
        the version labels are checked (FAILED_PRECONDITION for a label on a
        version that is not loaded: the models are applied, the previous
        labels kept, as TF Serving does)."""
        check_model_config(config)
        with self._lock:
            wanted = {m.name: m for m in config.model_config_list.config}
            for name in list(self._models):
                if name not in wanted:
                    removed = self._models.pop(name)
                    for number in list(removed.available):
                        self._unload(removed, number)
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].config = model_config
                else:
                    self._models[name] = _Model(model_config)
        self.poll()
        self._update_labels()
        self._changed()

    def _update_labels(self):
        """TF Serving's UpdateModelVersionLabelMap: snapshot the labels of
        the config, each naming an AVAILABLE version."""
        with self._lock:
            labels = {}
            for name, model in self._models.items():
                for label, number in model.config.version_labels.items():
                    old = self._labels.get(name, {}).get(label)
                    allowed = self._allow_unavailable_labels and old in (None, number)
                    if number not in model.available and not allowed:
                        raise ServingError(
                            grpc.StatusCode.FAILED_PRECONDITION,
                            f"Request to assign label to version {number} of "
                            f"model {name}, which is not currently available "
                            "for inference",
                        )
                    labels.setdefault(name, {})[label] = number
            self._labels = labels

    def _poll_loop(self):
        while not self._stop.wait(self._poll_wait):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 (keep polling; log the cause)
                _LOG.exception("polling the model folders failed")

    def poll(self):
        """One pass: load new aspired versions, then unload replaced ones."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._poll_model(model)

    def _poll_model(self, model):
        name, base = model.config.name, model.config.base_path
        found = _version_folders(base)
        if not found and not model.available:
            _LOG.debug("No versions of servable %s found under base path %s", name, base)
        for _ in range(len(found) + 1):
            # Versions that failed to load (and whose files did not change
            # since) are passed over: the policy's newest *loadable*
            # versions are served, so a corrupt newest version leaves the
            # one before it serving (also at start-up).
            usable = sorted(
                number
                for number, path in found.items()
                if number not in model.failed or model.failed[number] != _files_stamp(path)
            )
            aspired = _aspired_versions(model.config, usable)
            failed = False
            for number in sorted(aspired - set(model.available), reverse=True):
                failed |= not self._load(model, number, found[number], _files_stamp(found[number]))
            if not failed:
                break
        if not aspired or any(v in model.available for v in aspired):
            for number in sorted(set(model.available) - aspired):
                self._unload(model, number)

    def _load(self, model, number, path, stamp):
        name = model.config.name
        with self._lock:
            model.states[number] = _VersionState(State.LOADING)
        _LOG.info("Loading servable version {name: %s version: %d} from %s", name, number, path)
        started = time.monotonic()
        try:
            _check_contained(path, model.config.base_path, number)
            version = ServableVersion(name, number, path, self._batching, self.options)
            warmed = version.warm_up(self._warmup_iterations) if self._warmup else 0
        except ServingError as error:
            self._load_failed(
                model, number, stamp, error.code, f"warm-up request failed: {error.message}"
            )
            return False
        except Exception as error:  # noqa: BLE001 (any load failure)
            self._load_failed(
                model, number, stamp, grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"
            )
            return False
        with self._lock:
            model.available[number] = version
            model.states[number] = _VersionState(State.AVAILABLE)
        model.failed.pop(number, None)
        _LOG.info(
            "Successfully loaded servable version {name: %s version: "
            "%d} in %.1f s (%d warm-up requests)",
            name,
            number,
            time.monotonic() - started,
            warmed,
        )
        self._changed()
        return True

    def _load_failed(self, model, number, stamp, code, message):
        model.failed[number] = stamp
        # GetModelStatus tells clients why, without the server's paths.
        shown = _without_paths(message, model.config.base_path)
        with self._lock:
            model.states[number] = _VersionState(State.END, code, shown)
        _LOG.error(
            "Loading servable version {name: %s version: %d} failed: %s",
            model.config.name,
            number,
            message,
        )
        self._changed()

    def _unload(self, model, number):
        with self._lock:
            version = model.available.pop(number)
            model.states[number] = _VersionState(State.END)
        version.close()  # in-flight requests keep their reference
        _LOG.info("Unloaded servable version {name: %s version: %d}", model.config.name, number)
        self._changed()

    # -- queries -------------------------------------------------------
    def resolve(self, model_spec):
        """The `ServableVersion` a request's `ModelSpec` names
        (NOT_FOUND as TF Serving words it when there is none)."""
        name = model_spec.name
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(name)
            available = dict(model.available) if model else {}
            labels = dict(self._labels.get(name, {}))
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            number = model_spec.version.value
            if number not in available:
                raise not_found(f"Servable not found for request: Specific({name}, {number})")
            return available[number]
        if choice == "version_label":
            label = model_spec.version_label
            if label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            number = labels[label]
            if number not in available:
                raise not_found(f"Servable not found for request: Specific({name}, {number})")
            return available[number]
        if not available:
            raise not_found(f"Servable not found for request: Latest({name})")
        return available[max(available)]

    def status(self, model_spec):
        """`GetModelStatusResponse` for a `ModelSpec` (all versions, or the
        one it names)."""
        name = model_spec.name
        with self._lock:
            model = self._models.get(name)
            states = dict(model.states) if model else {}
        response = get_model_status_pb2.GetModelStatusResponse()
        if model_spec.HasField("version"):
            number = model_spec.version.value
            if number not in states:
                raise not_found(f"Could not find version {number} of model {name}")
            selected = {number: states[number]}
        else:
            if not states:
                raise not_found(f"Could not find any versions of model {name}")
            selected = states
        for number in sorted(selected, reverse=True):
            entry = response.model_version_status.add()
            entry.version = number
            entry.state = selected[number].state
            entry.status.error_code = selected[number].error_code.value[0]
            entry.status.error_message = selected[number].error_message
        return response

    def model_names(self):
        with self._lock:
            return sorted(self._models)


def _version_folders(base):
    """version number -> path, for numeric folders holding a SavedModel."""
    try:
        entries = os.listdir(base)
    except OSError:
        return {}
    found = {}
    for entry in entries:
        path = os.path.join(base, entry)
        if entry.isdigit() and (
            os.path.isfile(os.path.join(path, "saved_model.pb"))
            or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))
        ):
            found[int(entry)] = path
    return found


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_contained(path, base_path, number):
    """Refuses a version folder that resolves outside its model's base path,
    and any symbolic link inside it (file or folder: `assets/class_names.txt`,
    `variables/`, ...) that resolves outside the version folder: a model
    must not make the server read files it was not given."""
    base = os.path.realpath(base_path)
    real = os.path.realpath(path)
    if not _inside(real, base):
        raise ValueError(
            f"version {number} is a symbolic link to a folder "
            "outside the model's base path; refused"
        )
    for root, folders, files in os.walk(path):
        for entry in folders + files:
            full = os.path.join(root, entry)
            if os.path.islink(full) and not _inside(os.path.realpath(full), real):
                relative = os.path.relpath(full, path)
                raise ValueError(
                    f"version {number}: {relative} is a symbolic "
                    "link to a file outside the version folder; "
                    "refused"
                )


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"():;,]+/)+")


def _without_paths(message, base_path):
    """A load error as clients may see it: the model's base path shown as
    `<base_path>`, other absolute folders cut to `.../`."""
    for path in sorted(
        {os.path.realpath(base_path), os.path.abspath(base_path)}, key=len, reverse=True
    ):
        message = message.replace(path.rstrip(os.sep), "<base_path>")
    return _ABSOLUTE_PATH.sub(".../", message)


def _files_stamp(path):
    stamp = []
    for root, _, files in os.walk(path):
        for file in sorted(files):
            try:
                info = os.stat(os.path.join(root, file))
            except OSError:
                continue
            stamp.append(
                (os.path.relpath(os.path.join(root, file), path), info.st_size, info.st_mtime_ns)
            )
    return tuple(sorted(stamp))


__all__ = [
    "ModelManager",
    "ServableVersion",
    "ServingOptions",
    "check_metadata_request",
    "check_model_config",
    "read_model_config_file",
    "serialized_examples",
    "single_model_config",
]
