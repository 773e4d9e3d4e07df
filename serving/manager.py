"""Model versions on disk -> loaded, served and swapped versions, the way
TF Serving manages them (`core/aspired_versions_manager.cc` with the
availability-preserving policy, `model_servers/server_core.cc`).

A model is a base folder of numeric version folders, each a SavedModel
(`base/1/`, `base/2/`, ...). `ModelManager` polls the base folders
(`serving.storage_path`), loads the versions the version policy asks for
(`latest` N, default 1; `all`; `specific`: `serving.model_config`) as
`serving.servable.ServableVersion`s, replays the warm-up requests of
`assets.extra/tf_serving_warmup_requests` (`serving.warmup`), and only then
makes a version AVAILABLE and unloads the versions it replaces
(availability preserving: requests never see a gap, and a version that
fails to load leaves the old one serving). Folders that hold no
`saved_model.pb` yet are ignored until they do; a version that failed to
load is retried when its files change. Version labels are resolved as TF
Serving does (a label may only name a loaded version).

Example:

>>> from serving.model_config import single_model_config
>>> manager = ModelManager(single_model_config("tiny", "/models/tiny"))
>>> manager.start()       # loads the latest version, then polls  # doctest: +SKIP
>>> version = manager.resolve(request.model_spec)                  # doctest: +SKIP
>>> response = version.predict(request)                            # doctest: +SKIP
"""

import dataclasses
import logging
import threading
import time

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import ServingError, invalid_argument, not_found
from serving.model_config import aspired_versions, check_model_config
from serving.servable import ServableVersion, ServingOptions
from serving.storage_path import check_contained, files_stamp, version_folders, without_paths

_LOG = logging.getLogger(__name__)
State = get_model_status_pb2.ModelVersionStatus.State


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
            found = version_folders(model.config.base_path)
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
        found = version_folders(base)
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
                if number not in model.failed or model.failed[number] != files_stamp(path)
            )
            aspired = aspired_versions(model.config, usable)
            failed = False
            for number in sorted(aspired - set(model.available), reverse=True):
                failed |= not self._load(model, number, found[number], files_stamp(found[number]))
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
            check_contained(path, model.config.base_path, number)
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
        shown = without_paths(message, model.config.base_path)
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


__all__ = ["ModelManager", "State"]
