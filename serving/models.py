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

`ServableVersion.predict` / `.classify` / `.metadata` answer TF Serving's
request protos with TF Serving's status codes and messages.

Example:

>>> manager = ModelManager(single_model_config("tiny", "/models/tiny"))
>>> manager.start()       # loads the latest version, then polls  # doctest: +SKIP
>>> version = manager.resolve(request.model_spec)                  # doctest: +SKIP
>>> response = version.predict(request)                            # doctest: +SKIP
"""

import dataclasses
import logging
import os
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import Batcher
from serving.errors import ServingError, invalid_argument, not_found

_LOG = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
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
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ValueError(f"Cannot read the model config file {path}: {error}") \
            from error
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ValueError(
            f"{path}:{error} (expected TF Serving's ModelServerConfig text "
            "format: model_config_list { config { name: '...' base_path: "
            "'...' model_platform: 'tensorflow' } })"
        ) from error
    folder = os.path.dirname(os.path.abspath(path))
    for model in config.model_config_list.config:
        if model.base_path and not os.path.isabs(model.base_path):
            model.base_path = os.path.join(folder, model.base_path)
    check_model_config(config, path)
    return config


def check_model_config(config, source="model config"):
    """Raises ValueError naming the problem if `config` cannot be served."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"{source}: custom_model_config is not supported; "
                         "use model_config_list.")
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
                "'tensorflow'.")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" \
                and policy.latest.num_versions < 0:
            raise ValueError(f"{where} ({model.name}): latest.num_versions "
                             "must be positive.")
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
    return set(sorted(found)[-max(count, 1):])


# ----------------------------------------------------------------------
# One loaded version
# ----------------------------------------------------------------------
@dataclasses.dataclass
class _Signature:
    name: str
    method_name: str
    function: object
    inputs: dict          # name -> tf.TensorSpec
    outputs: tuple        # output names
    batcher: object = None


class ServableVersion:
    """One loaded SavedModel version and the request handlers on it."""

    def __init__(self, name, version, path, batching=None):
        self.name, self.version, self.path = name, int(version), path
        self._saved_model = tf.saved_model.load(path, tags=["serve"])
        self.signature_defs = _read_signature_defs(path)
        self.signatures = {}
        for key, function in self._saved_model.signatures.items():
            _, inputs = function.structured_input_signature
            outputs = function.structured_outputs
            signature = _Signature(
                name=key,
                method_name=self.signature_defs[key].method_name
                if key in self.signature_defs else PREDICT_METHOD,
                function=function,
                inputs=dict(inputs),
                outputs=tuple(outputs),
            )
            if batching is not None and _batch_major(inputs, outputs):
                signature.batcher = Batcher(
                    lambda values, s=signature: self._call(s, values),
                    batching, name=f"batch-{name}-{version}-{key}")
            self.signatures[key] = signature

    def close(self):
        """Lets queued batches finish, then stops the batching threads."""
        for signature in self.signatures.values():
            if signature.batcher is not None:
                signature.batcher.close()

    # -- requests ------------------------------------------------------
    def predict(self, request):
        """`PredictRequest` → `PredictResponse` (TF Serving's checks)."""
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signatures.get(key)
        if signature is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found.')
        _check_input_names(signature, request.inputs)
        names = list(request.output_filter) or list(signature.outputs)
        seen = set()
        for alias in request.output_filter:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} "
                    "Outputs expected to be in the set "
                    f"{{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        values = {alias: _to_array(signature, alias, proto)
                  for alias, proto in request.inputs.items()}
        outputs = self.run(signature, values)
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, key)
        for alias in names:
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(outputs[alias]))
        return response

    def classify(self, request):
        """`ClassificationRequest` → `ClassificationResponse`."""
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._method_signature(key, CLASSIFY_METHOD, "classification")
        if set(signature.inputs) != {"inputs"} or not (
                set(signature.outputs) & {"classes", "scores"}):
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Classification signature {key!r} must take one input "
                "'inputs' and output 'classes' and/or 'scores'.")
        examples = serialized_examples(request.input)
        outputs = self.run(signature, {"inputs": examples})
        classes, scores = outputs.get("classes"), outputs.get("scores")
        for label, value in (("classes", classes), ("scores", scores)):
            if value is not None and (value.ndim != 2 or len(value) != len(examples)):
                raise invalid_argument(
                    f"Expected Tensor shape: [batch_size num_classes] but got "
                    f"{list(value.shape)} for {label}")
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, key)
        width = (classes if classes is not None else scores).shape[1]
        for row in range(len(examples)):
            result = response.result.classifications.add()
            for column in range(width):
                item = result.classes.add()
                if classes is not None:
                    item.label = _text(classes[row, column])
                if scores is not None:
                    item.score = float(scores[row, column])
        return response

    def regress(self, request):
        """Regress: this server's exports have no regression signature, so
        this answers exactly as TF Serving does for a non-regress one."""
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        self._method_signature(key, REGRESS_METHOD, "regression")
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "Regress is not implemented by this server.")

    def metadata(self, request):
        """`GetModelMetadataRequest` → response with the `signature_def` map."""
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in self.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def warm_up(self):
        """Replays `assets.extra/tf_serving_warmup_requests`; returns the
        number of requests run. A failing request fails the load."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                self.predict(log.predict_log.request)
            elif kind == "classify_log":
                self.classify(log.classify_log.request)
            else:
                raise ValueError(
                    f"{path}: warm-up record {count + 1} is a {kind}; only "
                    "predict_log and classify_log are supported.")
            count += 1
        return count

    # -- helpers -------------------------------------------------------
    def run(self, signature, values):
        if signature.batcher is not None:
            return signature.batcher.run(values)
        return self._call(signature, values)

    def _call(self, signature, values):
        try:
            result = signature.function(
                **{name: tf.constant(value) for name, value in values.items()})
        except tf.errors.OpError as error:
            raise ServingError.from_tf_error(error) from None
        except (TypeError, ValueError) as error:
            raise invalid_argument(
                f"signature {signature.name!r} rejected the inputs: {error}"
            ) from None
        return {name: value.numpy() for name, value in result.items()}

    def _method_signature(self, key, method, kind):
        signature = self.signatures.get(key)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {key}")
        if signature.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. "
                f"Was: {signature.method_name}")
        return signature

    def _fill_spec(self, model_spec, signature_name):
        model_spec.name = self.name
        model_spec.version.value = self.version
        model_spec.signature_name = signature_name


def serialized_examples(model_input):
    """TF Serving's `Input` proto → 1-D object array of serialized
    `tf.Example`s (a context is merged into every example, as TF Serving
    does, by concatenating the serialized messages)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString()
                    for e in model_input.example_list.examples]
    elif kind == "example_list_with_context":
        context = model_input.example_list_with_context.context.SerializeToString()
        examples = [context + e.SerializeToString()
                    for e in model_input.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty.")
    return np.array(examples, dtype=object)


def _batch_major(inputs, outputs):
    specs = list(inputs.values()) + list(outputs.values())
    return bool(inputs) and all(
        spec.shape.rank is not None and spec.shape.rank >= 1
        and spec.shape[0] is None for spec in specs)


def _check_input_names(signature, inputs):
    expected, received = set(signature.inputs), set(inputs)
    if len(received) != len(expected):
        raise invalid_argument(
            f"input size does not match signature: {len(received)}!="
            f"{len(expected)} len({{{','.join(sorted(received))}}}) != "
            f"len({{{','.join(sorted(expected))}}}). Sent extra: "
            f"{{{','.join(sorted(received - expected))}}}. Missing but "
            f"required: {{{','.join(sorted(expected - received))}}}.")
    extra = sorted(received - expected)
    if extra:
        raise invalid_argument(
            f"input tensor alias not found in signature: {extra[0]}. Inputs "
            f"expected to be in the set {{{','.join(sorted(expected))}}}.")


def _to_array(signature, alias, proto):
    spec = signature.inputs[alias]
    if proto.dtype != spec.dtype.as_datatype_enum:
        try:
            received = tf.dtypes.as_dtype(proto.dtype).name
        except TypeError:
            received = f"an invalid dtype ({proto.dtype})"
        raise invalid_argument(
            f"Input '{alias}' of signature '{signature.name}' must be "
            f"{spec.dtype.name}; received {received}.")
    try:
        value = tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise invalid_argument(
            f"tensor parsing error: {alias} ({error})") from None
    expected = spec.shape
    if expected.rank is not None:
        ok = value.ndim == expected.rank and all(
            want is None or want == got
            for want, got in zip(expected.as_list(), value.shape))
        if not ok:
            pretty = "[" + ", ".join("?" if d is None else str(d)
                                     for d in expected.as_list()) + "]"
            raise invalid_argument(
                f"Input '{alias}' of signature '{signature.name}' must have "
                f"shape {pretty} (rank {expected.rank}); received shape "
                f"{list(value.shape)}.")
    return value


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_signature_defs(path):
    pb = os.path.join(path, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    if os.path.isfile(pb):
        with open(pb, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {key: meta_graph_pb2.SignatureDef.FromString(
                value.SerializeToString())
                for key, value in meta_graph.signature_def.items()}
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'.")


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
        self.available = {}   # version -> ServableVersion
        self.states = {}      # version -> _VersionState
        self.failed = {}      # version -> files stamp when the load failed


class ModelManager:
    """Loads, serves and swaps the versions of the configured models.

    Args:
        config: a `ModelServerConfig` (see `read_model_config_file`,
            `single_model_config`).
        batching: `serving.batching.BatchingOptions`, or `None` (off).
        poll_wait_seconds: seconds between polls of the base folders for
            new versions (0: poll once, at start).
        warmup: replay each version's warm-up requests before serving it.
    """

    def __init__(self, config, batching=None, poll_wait_seconds=1.0,
                 warmup=True):
        check_model_config(config)
        self._batching = batching
        self._poll_wait = float(poll_wait_seconds)
        self._warmup = warmup
        self._lock = threading.RLock()      # guards self._models
        self._poll_lock = threading.Lock()  # one poll at a time
        self._models = {m.name: _Model(m) for m in config.model_config_list.config}
        self._stop = threading.Event()
        self._thread = None

    # -- life cycle ----------------------------------------------------
    def start(self):
        """Loads what is on disk now, then polls in the background."""
        self.poll()
        if self._poll_wait > 0:
            self._thread = threading.Thread(target=self._poll_loop,
                                            name="model-poller", daemon=True)
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
        new models are loaded, removed ones unloaded, before returning."""
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
            _LOG.debug("No versions of servable %s found under base path %s",
                       name, base)
        aspired = _aspired_versions(model.config, sorted(found))
        for number in sorted(aspired - set(model.available), reverse=True):
            stamp = _files_stamp(found[number])
            if model.failed.get(number) == stamp:
                continue
            self._load(model, number, found[number], stamp)
        if not aspired or any(v in model.available for v in aspired):
            for number in sorted(set(model.available) - aspired):
                self._unload(model, number)

    def _load(self, model, number, path, stamp):
        name = model.config.name
        with self._lock:
            model.states[number] = _VersionState(State.LOADING)
        _LOG.info("Loading servable version {name: %s version: %d} from %s",
                  name, number, path)
        started = time.monotonic()
        try:
            version = ServableVersion(name, number, path, self._batching)
            warmed = version.warm_up() if self._warmup else 0
        except ServingError as error:
            self._load_failed(model, number, stamp, error.code,
                              f"warm-up request failed: {error.message}")
            return
        except Exception as error:  # noqa: BLE001 (any load failure)
            self._load_failed(model, number, stamp, grpc.StatusCode.UNKNOWN,
                              f"{type(error).__name__}: {error}")
            return
        with self._lock:
            model.available[number] = version
            model.states[number] = _VersionState(State.AVAILABLE)
        model.failed.pop(number, None)
        _LOG.info("Successfully loaded servable version {name: %s version: "
                  "%d} in %.1f s (%d warm-up requests)", name, number,
                  time.monotonic() - started, warmed)

    def _load_failed(self, model, number, stamp, code, message):
        model.failed[number] = stamp
        with self._lock:
            model.states[number] = _VersionState(State.END, code, message)
        _LOG.error("Loading servable version {name: %s version: %d} failed: "
                   "%s", model.config.name, number, message)

    def _unload(self, model, number):
        with self._lock:
            version = model.available.pop(number)
            model.states[number] = _VersionState(State.END)
        version.close()  # in-flight requests keep their reference
        _LOG.info("Unloaded servable version {name: %s version: %d}",
                  model.config.name, number)

    # -- queries -------------------------------------------------------
    def resolve(self, model_spec):
        """The `ServableVersion` a request's `ModelSpec` names
        (NOT_FOUND as TF Serving words it when there is none)."""
        name = model_spec.name
        with self._lock:
            model = self._models.get(name)
            available = dict(model.available) if model else {}
            labels = dict(model.config.version_labels) if model else {}
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            number = model_spec.version.value
            if number not in available:
                raise not_found(
                    f"Servable not found for request: Specific({name}, {number})")
            return available[number]
        if choice == "version_label":
            label = model_spec.version_label
            if label not in labels:
                raise invalid_argument(
                    f"Unrecognized servable version label: {label}")
            number = labels[label]
            if number not in available:
                raise not_found(
                    f"Servable not found for request: Specific({name}, {number})")
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
                or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))):
            found[int(entry)] = path
    return found


def _files_stamp(path):
    stamp = []
    for root, _, files in os.walk(path):
        for file in sorted(files):
            try:
                info = os.stat(os.path.join(root, file))
            except OSError:
                continue
            stamp.append((os.path.relpath(os.path.join(root, file), path),
                          info.st_size, info.st_mtime_ns))
    return tuple(sorted(stamp))


__all__ = [
    "ModelManager",
    "ServableVersion",
    "check_model_config",
    "read_model_config_file",
    "serialized_examples",
    "single_model_config",
]
