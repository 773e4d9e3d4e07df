"""One loaded SavedModel version, the way TF Serving loads and runs it
(`servables/tensorflow/saved_model_bundle_factory.cc` and the bundle's
Session): TF1 graphs run in a `tf.compat.v1.Session` by tensor names, TF2
SavedModels as their restored concrete functions; signatures batched with
concurrent requests when batching is on (`serving.batching`).

`ServableVersion.predict` / `.classify` / `.regress` / `.multi_inference` /
`.metadata` answer TF Serving's request protos with TF Serving's semantics,
status codes and messages; each request kind is its own module
(`serving.predict`, `serving.classify_regress`, `serving.multi_inference`,
`serving.metadata`), and `.warm_up` replays the warm-up file
(`serving.warmup`).

>>> version = ServableVersion("tiny", 1, "/models/tiny/1")   # doctest: +SKIP
>>> response = version.predict(request)                      # doctest: +SKIP
"""

import dataclasses
import logging
import os
import threading

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from serving.batching import Batcher
from serving.classify_regress import run_classify, run_regress
from serving.errors import ServingError, invalid_argument
from serving.execution import call_cancellable
from serving.metadata import model_metadata
from serving.multi_inference import run_multi_inference
from serving.predict import run_predict
from serving.signature import INIT_OP_SIGNATURE, Signature, input_infos
from serving.warmup import run_warmup

_LOG = logging.getLogger(__name__)


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
            signature = Signature(key, definition, functions[key])
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

    # -- TF Serving's requests ------------------------------------------
    def predict(self, request, context=None):
        """`PredictRequest` -> `PredictResponse` (`serving.predict`)."""
        return run_predict(self, request, context)

    def classify(self, request, context=None):
        """`ClassificationRequest` -> `ClassificationResponse`
        (`serving.classify_regress`)."""
        return run_classify(self, request, context)

    def regress(self, request, context=None):
        """`RegressionRequest` -> `RegressionResponse`
        (`serving.classify_regress`)."""
        return run_regress(self, request, context)

    def multi_inference(self, request, context=None):
        """`MultiInferenceRequest` -> `MultiInferenceResponse`: every task
        (classify or regress, one model) on the same examples
        (`serving.multi_inference`)."""
        return run_multi_inference(self, request, context)

    def metadata(self, request=None):
        """`GetModelMetadataResponse` with the `signature_def` map
        (`serving.metadata`)."""
        return model_metadata(self, request)

    def input_infos(self, signature_name):
        """The input `TensorInfo` map of a signature (REST uses it to type
        JSON values); INVALID_ARGUMENT if there is no such signature."""
        return input_infos(self.signature_defs, signature_name)

    def warm_up(self, iterations=1):
        """Replays `assets.extra/tf_serving_warmup_requests`, each record
        `iterations` times (`serving.warmup`); returns the number of records
        run. A failing request fails the load."""
        return run_warmup(self, iterations)

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

    def loaded_signature(self, key):
        """The `Signature` named `key` (INTERNAL if its function could not
        be restored)."""
        signature = self.signatures.get(key)
        if signature is None:
            raise ServingError(grpc.StatusCode.INTERNAL, f"signature {key!r} could not be restored")
        return signature

    def fill_spec(self, model_spec, signature_name):
        """Writes this version and `signature_name` into a response's
        `ModelSpec`."""
        model_spec.name = self.name
        model_spec.version.value = self.version
        model_spec.signature_name = signature_name


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


__all__ = ["ServableVersion", "ServingOptions"]
