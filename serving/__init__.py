"""A drop-in `tensorflow_model_server` (TF Serving's gRPC and REST APIs,
command line and semantics, for any SavedModel) and its clients.

- `serving.server`: `python -m serving.server` / `classreg-model-server`,
  TF Serving's flags; the gRPC services.
- `serving.rest`: the REST API (`--rest_api_port`).
- `serving.handlers`: the request handlers gRPC and REST share.
- `serving.models`: version folders -> loaded SavedModels (TF1 in a
  Session, TF2 as functions), hot swap, TF Serving's request semantics;
  `serving.batching`: server-side batching; `serving.tensors`: TensorProto
  checks and encoding; `serving.limits`: per-request and in-flight memory
  limits; `serving.execution`: deadlines and cancellation of model calls;
  `serving.tls`: `--ssl_config_file`; `serving.metrics`: Prometheus
  metrics.
- `serving.client`: `ServingClient` (timeouts, retries) and
  `python -m serving.client` for video files (`--rest`: over
  `serving.rest_client`).
- `serving.launch`, `serving.loadtest`, `serving.testing`: a child-process
  server, load testing, and small models for tests and benchmarks.

Modules are imported on use (`import serving.client`), so that the client
does not load the server's code.

See docs/serving.md for the flags, the conformance figures and the
differences from TF Serving that remain.
"""
