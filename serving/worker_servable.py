"""`WorkerServable`: a model version loaded in a worker process, with the
interface of `ServableVersion` (predict, classify, regress,
multi_inference, metadata, input_infos, warm_up, close), so the handlers
and front ends serve it as they would a version loaded in-process.

Each call's request goes to the worker as serialized bytes (the bytes the
gRPC front end received, when it kept them; otherwise the proto is
serialized once), after admission (`serving.admission`: a bounded number
of the model's executions at once, calls that can no longer finish in
time never started). The response comes back as bytes and is parsed here.
The front end never loads the SavedModel: it keeps only the signature
defs the worker sent (for `input_infos`, which REST uses to type JSON).

>>> servable = WorkerServable("m", 1, "/models/m/1", settings)   # doctest: +SKIP
>>> servable.load()                                               # doctest: +SKIP
>>> servable.predict(request, context).outputs["y"]               # doctest: +SKIP
"""

import logging
import threading

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.admission import Admission
from serving.metadata import model_metadata
from serving.signature import input_infos
from serving.worker_process import WorkerProcess

_LOG = logging.getLogger("serving.worker_servable")
# Bytes a response takes in the front end while it is parsed and answered:
# the bytes from the worker and the parsed proto.
RESPONSE_COPIES = 2
# How long an unloaded version's calls in flight may take before its worker
# is stopped anyway (calls with a deadline end sooner).
DRAIN_SECONDS = 60.0


class WorkerServable:
    """One version served by its own worker process.

    Args:
        name, version, path: the version.
        settings: `serving.worker_process.WorkerSettings`.
        admission: the model's `Admission` (shared by its versions); None:
            unbounded.
        on_exit: `on_exit(servable, reason)` when the worker ends without
            being asked to (the manager loads the version again).
    """

    def __init__(self, name, version, path, settings=None, admission=None, on_exit=None):
        self.name, self.version, self.path = name, int(version), path
        self.admission = admission if admission is not None else Admission(None)
        self._on_exit = on_exit
        self.worker = WorkerProcess(name, version, path, settings, on_exit=self._worker_ended)
        self.signature_defs = {}
        self.facts = {}
        self._stopper = None

    def load(self):
        """Starts the worker; returns once the version answers (raises
        `ServingError` with the reason when it cannot be loaded)."""
        self.facts, serialized = self.worker.start()
        signature_map = get_model_metadata_pb2.SignatureDefMap.FromString(serialized)
        self.signature_defs = dict(signature_map.signature_def)
        return self

    @property
    def pid(self):
        return self.worker.pid

    def warm_up(self, iterations=1):
        """The worker replays the warm-up records while it loads: the number
        it ran."""
        del iterations  # the worker's settings hold them
        return int(self.facts.get("warmup_records", 0))

    def close(self):
        """Unloads: the calls in flight finish, then the worker ends and its
        memory goes back to the OS (in the background; `join` waits)."""
        if self._stopper is None:
            self._stopper = threading.Thread(
                target=self.worker.stop,
                args=(DRAIN_SECONDS,),
                name=f"stop-{self.name}-{self.version}",
                daemon=True,
            )
            self._stopper.start()

    def join(self, timeout=None):
        """Waits for `close()` to have ended the worker."""
        if self._stopper is not None:
            self._stopper.join(timeout)

    def kill(self, why):
        self.worker.kill(why)

    # -- the requests ------------------------------------------------------
    def predict(self, request, context=None):
        return self._call("predict", request, context, predict_pb2.PredictResponse)

    def classify(self, request, context=None):
        return self._call("classify", request, context, classification_pb2.ClassificationResponse)

    def regress(self, request, context=None):
        return self._call("regress", request, context, regression_pb2.RegressionResponse)

    def multi_inference(self, request, context=None):
        return self._call("multi_inference", request, context, inference_pb2.MultiInferenceResponse)

    def metadata(self, request=None):
        """GetModelMetadata, answered here from the signature defs the
        worker sent."""
        return model_metadata(self, request)

    def input_infos(self, signature_name):
        """The input `TensorInfo` map of a signature; INVALID_ARGUMENT if
        there is no such signature."""
        return input_infos(self.signature_defs, signature_name)

    def _call(self, method, request, context, response_class):
        if context is not None:
            context.check()
        data = _request_bytes(request, context)
        decoded = context.decoded_bytes if context is not None else 0
        limit = context.max_request_bytes if context is not None else None
        reply = self.admission.run(
            context, lambda: self.worker.call(method, data, context, decoded, limit)
        )
        if context is not None:
            context.charge(0, RESPONSE_COPIES * len(reply), "response")
        return response_class.FromString(reply)

    def _worker_ended(self, worker, reason):
        if self._on_exit is not None:
            self._on_exit(self, reason)


def _request_bytes(request, context):
    """The request as bytes: those the front end received for it when it
    kept them (no second serialization), else serialized once."""
    received = getattr(context, "received", None)
    if received is not None and received[0] is request:
        return received[1]
    return request.SerializeToString()


__all__ = ["WorkerServable"]
