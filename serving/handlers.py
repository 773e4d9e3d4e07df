"""The request handlers both front ends share (gRPC in `serving.grpc_front`,
REST in `serving.rest`, both reaching them through `serving.dispatch`): TF
Serving's request protos in, response protos out, failures as
`ServingError` (a gRPC status code and TF Serving's message). Every call is
counted in the metrics here, the same way whichever front end it came
from.

Every call takes a `RequestContext`: where the request came from (for the
metrics), its deadline (gRPC's, or `--rest_api_timeout_in_ms`), checked
before the model runs (DEADLINE_EXCEEDED), and its memory reservation.

>>> handlers = Handlers(manager)                                 # doctest: +SKIP
>>> handlers.predict(request)                                    # doctest: +SKIP
"""

import dataclasses
import logging
import os
import threading
import time

import grpc
from tensorflow_serving.apis import model_management_pb2

from serving.errors import ServingError, invalid_argument, limit_message
from serving.limits import (
    RequestLimits,
    arrays_cost,
    check_request_bytes,
    examples_cost,
    tensors_cost,
)
from serving.metadata import check_metadata_request
from serving.model_config import check_model_config

_LOG = logging.getLogger(__name__)
# Longest model name written into a log line or a metric label.
_NAME_IN_LOGS = 200


@dataclasses.dataclass(eq=False)
class RequestContext:
    """One request's origin, deadline, cancellation and memory reservation.

    Args:
        entrypoint: "GRPC" or "REST" (TF Serving's metric label).
        deadline: `time.monotonic()` value after which the request fails
            with DEADLINE_EXCEEDED; `None`: no deadline.

    `cancel()` marks the request abandoned (its client went away, or the
    front end answered DEADLINE_EXCEEDED): it is dropped wherever it waits,
    and a TF2 call running for it is cancelled (`serving.execution`).

    `received` is `(request proto, its bytes as received)` when the front
    end kept them: the model worker gets those bytes without serializing
    the request again (`serving.worker_servable`).
    """

    entrypoint: str = "GRPC"
    deadline: float = None
    reservation: object = None
    max_request_bytes: int = None
    received: tuple = None

    def __post_init__(self):
        self._decoded = 0
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._callbacks = []

    @classmethod
    def with_timeout(cls, entrypoint, seconds):
        return cls(entrypoint, None if seconds is None else time.monotonic() + seconds)

    def time_remaining(self):
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def cancelled(self):
        return self._cancelled.is_set()

    def expired(self):
        return self.deadline is not None and time.monotonic() > self.deadline

    def done(self):
        """Whether nobody waits for this request's answer any more."""
        return self.cancelled or self.expired()

    def check(self):
        """Raises DEADLINE_EXCEEDED once the deadline has passed, CANCELLED
        once cancelled."""
        if self.expired():
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")
        if self.cancelled:
            raise ServingError(grpc.StatusCode.CANCELLED, "Request cancelled")

    def cancel(self):
        """Abandons the request; runs the cancel callbacks once."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 (cancelling must not fail)
                _LOG.debug("cancel callback failed", exc_info=True)

    def on_cancel(self, callback):
        """Calls `callback()` when the request is cancelled (at once if it
        already is)."""
        with self._lock:
            if not self._cancelled.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def remove_on_cancel(self, callback):
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    # -- memory ------------------------------------------------------------
    @property
    def decoded_bytes(self):
        """Decoded bytes this request was charged so far."""
        return self._decoded

    def charge(self, decoded, reserve, what="request tensors"):
        """Checks `decoded` bytes against the per-request limit (with what
        this request was already charged) and reserves `reserve` bytes in
        the server's budget until the request ends."""
        if self.reservation is None:
            return
        self._decoded += decoded
        check_request_bytes(self._decoded, self.max_request_bytes, what)
        self.reservation.add(reserve, what)

    def charge_outputs(self, outputs):
        """Charges a model's outputs (arrays) before they are encoded."""
        if self.reservation is not None:
            nbytes = arrays_cost(outputs)
            self.charge(nbytes, 2 * nbytes, "response tensors")

    def release(self):
        """Gives the memory reserved for this request back (its work has
        ended)."""
        reservation, self.reservation = self.reservation, None
        if reservation is not None:
            reservation.release()


class ReloadPolicy:
    """Who may change the served models with HandleReloadConfigRequest.

    Off by default (`enabled=False`: PERMISSION_DENIED). When enabled, every
    model's `base_path` must resolve (real path, symlinks followed) inside
    one of `roots`; each accepted change is logged.
    """

    def __init__(self, enabled=False, roots=()):
        self.enabled = bool(enabled)
        self.roots = tuple(os.path.realpath(root) for root in roots)
        if self.enabled and not self.roots:
            raise ValueError(
                "--enable_model_config_reload needs "
                "--allowed_model_base_path_roots=DIR[,DIR]: the "
                "folders whose models a client may serve."
            )

    def check_enabled(self):
        if not self.enabled:
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                "HandleReloadConfigRequest is disabled on this server (start "
                "it with --enable_model_config_reload and "
                "--allowed_model_base_path_roots to allow it)",
            )

    def check_paths(self, config):
        for model in config.model_config_list.config:
            if not os.path.isabs(model.base_path):
                raise ServingError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"model {limit_message(model.name, 200)!r}: base_path "
                    "must be an absolute path inside an allowed root",
                )
            real = os.path.realpath(model.base_path)
            if not any(real == root or real.startswith(root + os.sep) for root in self.roots):
                raise ServingError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"model {limit_message(model.name, 200)!r}: base_path is "
                    "not inside a folder allowed by "
                    "--allowed_model_base_path_roots",
                )


class Handlers:
    """TF Serving's PredictionService and ModelService over a
    `ModelManager` (see `serving.manager`).

    Args:
        manager: the `ModelManager`.
        metrics: a `serving.metrics.Metrics` to record requests in, or None.
        limits: `serving.limits.RequestLimits` (default: the defaults).
        reload_policy: `ReloadPolicy` of HandleReloadConfigRequest (default:
            off).
    """

    def __init__(self, manager, metrics=None, limits=None, reload_policy=None):
        self.manager = manager
        self.metrics = metrics
        self.limits = limits or RequestLimits()
        self.reload_policy = reload_policy or ReloadPolicy()

    def limit(self, context, message_bytes=0, what="request message"):
        """Puts a request under the server's memory limits: the per-request
        limit, and `message_bytes` (the request as received) reserved in the
        in-flight budget (RESOURCE_EXHAUSTED when it is full). Every request
        gets its limits here, from a front end (`serving.dispatch`) or, for
        a direct call, from `_observe`."""
        context.max_request_bytes = self.limits.max_request_bytes
        context.reservation = self.limits.budget.reserve(message_bytes, what)
        return context

    # -- PredictionService ---------------------------------------------
    def predict(self, request, context=None, inputs_from=None):
        """Predict. `inputs_from(input_infos)` fills `request.inputs` once
        the model is resolved, typed by the signature's inputs (REST: from
        the JSON body)."""
        context = context if context is not None else RequestContext()

        def run():
            servable = self.resolve(request.model_spec)
            if inputs_from is not None:
                inputs_from(servable.input_infos(request.model_spec.signature_name))
            context.charge(*tensors_cost(request.inputs))
            return servable.predict(request, context)

        return self._observe("predict", request.model_spec.name, context, run)

    def classify(self, request, context=None):
        context = context if context is not None else RequestContext()

        def run():
            context.charge(*examples_cost(request.input), "examples")
            return self.resolve(request.model_spec).classify(request, context)

        return self._observe("classify", request.model_spec.name, context, run)

    def regress(self, request, context=None):
        context = context if context is not None else RequestContext()

        def run():
            context.charge(*examples_cost(request.input), "examples")
            return self.resolve(request.model_spec).regress(request, context)

        return self._observe("regress", request.model_spec.name, context, run)

    def multi_inference(self, request, context=None):
        context = context if context is not None else RequestContext()
        # TF Serving resolves the model of the first task (an empty spec
        # when there is none: "ModelSpec has no name specified.").
        spec = request.tasks[0].model_spec if request.tasks else None
        name = spec.name if spec is not None else ""

        def run():
            if spec is None:
                raise invalid_argument("ModelSpec has no name specified.")
            decoded, reserve = examples_cost(request.input)
            tasks = max(len(request.tasks), 1)  # each task runs on them
            context.charge(decoded, reserve * tasks, "examples")
            return self.resolve(spec).multi_inference(request, context)

        return self._observe("multi_inference", name, context, run)

    def get_model_metadata(self, request, context=None):
        context = context if context is not None else RequestContext()

        def run():
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            check_metadata_request(request)
            return self.resolve(request.model_spec).metadata(request)

        return self._observe("metadata", request.model_spec.name, context, run)

    # -- ModelService ----------------------------------------------------
    def get_model_status(self, request, context=None):
        context = context if context is not None else RequestContext()

        def run():
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self.manager.status(request.model_spec)

        return self._observe("status", request.model_spec.name, context, run)

    def reload_config(self, request, context=None):
        """HandleReloadConfigRequest: off unless the `ReloadPolicy` enables
        it (PERMISSION_DENIED), and then only for base paths inside its
        roots; only a `model_config_list` (TF Serving's rule); a bad config
        is INVALID_ARGUMENT, a label on a version that is not loaded
        FAILED_PRECONDITION. Each accepted change is logged."""
        context = context if context is not None else RequestContext()

        def run():
            self.reload_policy.check_enabled()
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by "
                    "HandleReloadConfigRequest. Only ModelConfigList is "
                    "currently supported"
                )
            try:
                config = check_model_config(request.config, "ReloadConfigRequest")
            except ValueError as error:
                raise invalid_argument(str(error)) from None
            self.reload_policy.check_paths(config)
            _LOG.warning(
                "HandleReloadConfigRequest: serving %s",
                "; ".join(f"{m.name} from {m.base_path}" for m in config.model_config_list.config),
            )
            self.manager.reload(config)
            return model_management_pb2.ReloadConfigResponse()

        return self._observe("reload_config", "", context, run)

    # -- helpers -------------------------------------------------------
    def resolve(self, model_spec):
        """The `ServableVersion` a `ModelSpec` names (NOT_FOUND /
        INVALID_ARGUMENT as TF Serving)."""
        return self.manager.resolve(model_spec)

    def _observe(self, api, model_name, context, run):
        started = time.perf_counter()
        status = "OK"
        owned = context.reservation is None  # a direct call, not a front end's
        if owned:
            self.limit(context, 0)
        try:
            context.check()
            return run()
        except ServingError as error:
            status = error.code.name
            # One line per failed request (TF Serving's VLOG(1)).
            _LOG.debug(
                "%s failed (model %r): %s: %s",
                api,
                model_name[:_NAME_IN_LOGS],
                error.code.name,
                error.message,
            )
            raise
        except Exception:
            status = grpc.StatusCode.INTERNAL.name
            raise
        finally:
            if owned:
                context.release()
            if self.metrics is not None:
                # Only configured models get their own label: a client
                # cannot grow the metrics with made-up names.
                label = model_name if self.manager.has_model(model_name) else ""
                self.metrics.observe(
                    label, api, context.entrypoint, status, (time.perf_counter() - started) * 1e6
                )


__all__ = ["Handlers", "ReloadPolicy", "RequestContext"]
