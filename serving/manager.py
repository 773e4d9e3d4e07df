"""Model versions on disk -> loaded, served and swapped versions, the way
TF Serving manages them (`core/aspired_versions_manager.cc` with the
availability-preserving policy, `model_servers/server_core.cc`).

A model is a base folder of numeric version folders, each a SavedModel
(`base/1/`, `base/2/`, ...). `ModelManager` polls the base folders
(`serving.storage_path`), loads the versions the version policy asks for
(`latest` N, default 1; `all`; `specific`: `serving.model_config`), each
in a worker process of its own (`serving.worker_servable`: this process
never loads a SavedModel), which replays the warm-up requests of
`assets.extra/tf_serving_warmup_requests` (`serving.warmup`); only then
the manager makes a version AVAILABLE and unloads the versions it replaces
(availability preserving: requests never see a gap, and a version that
fails to load leaves the old one serving). Folders that hold no
`saved_model.pb` yet are ignored until they do; a version that failed to
load is retried when its files change. Version labels are resolved as TF
Serving does (a label may only name a loaded version).

Unloading a version ends its worker (after its calls in flight), which
gives the version's memory back to the OS. A worker that ends by itself
(a signal, the OOM killer, a crash, a call stuck past its deadline) takes
its version out of AVAILABLE; the version is loaded again after a backoff,
and marked failed (with the reason) when its worker keeps ending. Each
model has one `serving.admission.Admission`: its executions at once are
bounded, and calls that can no longer finish in time never start.

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

from serving.admission import Admission
from serving.defaults import usable_cpus
from serving.errors import ServingError, invalid_argument, not_found
from serving.model_config import aspired_versions, check_model_config
from serving.restarts import Restarts
from serving.servable import ServingOptions
from serving.storage_path import check_contained, files_stamp, version_folders, without_paths
from serving.worker_process import WorkerSettings, unavailable
from serving.worker_servable import WorkerServable

_LOG = logging.getLogger(__name__)
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class _VersionState:
    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class _Model:
    def __init__(self, config, admission):
        self.config = config
        self.admission = admission  # shared by the model's versions
        self.available = {}  # version -> WorkerServable
        self.states = {}  # version -> _VersionState
        self.failed = {}  # version -> files stamp when the load failed
        self.restarts = Restarts()  # when a version whose worker ended loads again
        self.retry_at = {}  # version -> when to load it again after its worker ended
        self.restarting = {}  # version -> why it is being loaded again


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
        workers: `serving.worker_process.WorkerSettings` of the workers
            (threads, GPU memory, stuck-call grace; the batching, options
            and warm-up above are filled in).
        max_executions_per_model: calls of one model running at once
            without batching (None: one per CPU core; 0: no bound).
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
        workers=None,
        max_executions_per_model=None,
    ):
        check_model_config(config)
        self._batching = batching
        self._poll_wait = float(poll_wait_seconds)
        self._warmup = warmup
        self._warmup_iterations = max(1, int(warmup_iterations))
        self.options = options or ServingOptions()
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._workers = dataclasses.replace(
            workers or WorkerSettings(),
            batching=batching,
            options=self.options,
            warmup_iterations=self._warmup_iterations if warmup else 0,
        )
        self._max_executions = (
            usable_cpus() if max_executions_per_model is None else max_executions_per_model
        )
        self._closing = []  # unloaded versions whose workers may still drain
        self._loading = set()  # versions whose workers are loading now
        self._lock = threading.RLock()  # guards self._models, self._labels
        self._poll_lock = threading.Lock()  # one poll at a time
        self._models = {m.name: self._new_model(m) for m in config.model_config_list.config}
        self._labels = {}  # model -> {label: version}
        self._stop = threading.Event()
        self._thread = None
        self._listeners = []

    def _new_model(self, config):
        # With batching, the batch queue of each worker bounds the
        # executions (num_batch_threads); admission still drops the calls
        # that cannot finish in time.
        return _Model(config, Admission(None if self._batching else self._max_executions))

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
        """Stops polling; every worker finishes its calls in flight and ends
        (one still loading is killed)."""
        self._stop.set()
        with self._lock:
            loading = list(self._loading)
        for version in loading:
            version.kill("the server is stopping")
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            versions = [v for model in self._models.values() for v in model.available.values()]
            versions += self._closing
        for version in versions:
            version.close()
        for version in versions:
            version.join()

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
                    self._models[name] = self._new_model(model_config)
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
                if model.retry_at.get(number, 0.0) > time.monotonic():
                    continue  # its worker ended: loaded again after the backoff
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
            version = WorkerServable(
                name,
                number,
                path,
                self._workers,
                model.admission,
                on_exit=lambda servable, reason: self._worker_ended(model, servable, reason),
            )
            with self._lock:
                self._loading.add(version)
            try:
                version.load()
            finally:
                with self._lock:
                    self._loading.discard(version)
            warmed = version.warm_up()
        except ServingError as error:  # the worker's reason (warm-up, or how it ended)
            self._load_failed(model, number, stamp, error.code, error.message)
            return False
        except Exception as error:  # noqa: BLE001 (any load failure)
            self._load_failed(
                model, number, stamp, grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"
            )
            return False
        with self._lock:
            model.available[number] = version
            model.states[number] = _VersionState(State.AVAILABLE)
            model.restarts.loaded(number)
            model.retry_at.pop(number, None)
            model.restarting.pop(number, None)
        model.failed.pop(number, None)
        _LOG.info(
            "Successfully loaded servable version {name: %s version: "
            "%d} in %.1f s (%d warm-up requests; worker process %d)",
            name,
            number,
            time.monotonic() - started,
            warmed,
            version.pid,
        )
        self._changed()
        return True

    def _load_failed(self, model, number, stamp, code, message):
        model.failed[number] = stamp
        model.restarting.pop(number, None)
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
            self._closing = [v for v in self._closing if v.worker.alive] + [version]
        # In-flight requests keep their reference; the worker ends once
        # they are answered, and its memory goes back to the OS.
        version.close()
        _LOG.info("Unloaded servable version {name: %s version: %d}", model.config.name, number)
        self._changed()

    def _worker_ended(self, model, servable, reason):
        """A worker ended by itself: its version leaves AVAILABLE and is
        loaded again after a backoff, or is failed when this keeps
        happening (until its files change)."""
        number, now = servable.version, time.monotonic()
        with self._lock:
            if model.available.get(number) is not servable:
                return  # unloaded or replaced meanwhile
            del model.available[number]
            delay = model.restarts.ended(number)
            shown = without_paths(reason, model.config.base_path)
            if delay is None:
                path = version_folders(model.config.base_path).get(number)
                model.failed[number] = files_stamp(path) if path else ()
                model.restarting.pop(number, None)
                delay = 0.0
                ends = model.restarts.ends(number)
                message = (
                    f"{shown}; the worker ended {ends} times in a row: not loaded again "
                    "until the version's files change"
                )
            else:
                model.retry_at[number] = now + delay
                message = f"{shown}; loading it again in {delay:g} s"
                model.restarting[number] = shown
            model.states[number] = _VersionState(State.END, grpc.StatusCode.UNAVAILABLE, message)
        _LOG.error(
            "Servable version {name: %s version: %d} lost its worker: %s",
            model.config.name,
            number,
            message,
        )
        self._changed()
        timer = threading.Timer(delay, self._poll_unless_stopped)
        timer.daemon = True
        timer.start()

    def _poll_unless_stopped(self):
        if self._stop.is_set():
            return
        try:
            self.poll()
        except Exception:  # noqa: BLE001 (the next poll tries again; log the cause)
            _LOG.exception("loading a version again failed")

    # -- queries -------------------------------------------------------
    def resolve(self, model_spec):
        """The `WorkerServable` a request's `ModelSpec` names (NOT_FOUND as
        TF Serving words it when there is none; UNAVAILABLE while the
        version is loaded again after its worker ended: retry)."""
        name = model_spec.name
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(name)
            available = dict(model.available) if model else {}
            restarting = dict(model.restarting) if model else {}
            labels = dict(self._labels.get(name, {}))

        def missing(number, words):
            if number in restarting:
                raise unavailable(
                    f"Servable {name} version {number} is being loaded again: {restarting[number]}"
                )
            raise not_found(f"Servable not found for request: {words}")

        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            number = model_spec.version.value
            if number not in available:
                missing(number, f"Specific({name}, {number})")
            return available[number]
        if choice == "version_label":
            label = model_spec.version_label
            if label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            number = labels[label]
            if number not in available:
                missing(number, f"Specific({name}, {number})")
            return available[number]
        if not available:
            missing(max(restarting, default=None), f"Latest({name})")
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
