"""A drop-in `tensorflow_model_server` (TF Serving's gRPC and REST APIs,
command line and semantics, for any SavedModel) and its clients.

The server, one TF Serving part per module (docs/serving.md has the map):

- `serving.server`: `python -m serving.server` / `classreg-model-server`;
  `serving.flags`: TF Serving's flags; `serving.server_settings`: the
  parsed flags -> `ServerSettings`.
- Front ends: `serving.grpc_front` (gRPC) and `serving.rest` (REST, with the
  JSON codecs `serving.json_tensor`, `serving.json_examples` and the body
  parser `serving.json_parser`), both
  reaching the shared `serving.handlers` through `serving.dispatch`
  (deadlines, memory limits, threads).
- Models: `serving.model_config` (models.config, version policy),
  `serving.storage_path` (version folders on disk), `serving.manager`
  (loading, hot swap, version labels), `serving.servable` (one loaded
  SavedModel: TF1 in a Session, TF2 as functions), with one module per
  request kind (`serving.predict`, `serving.classify_regress`,
  `serving.multi_inference`, `serving.metadata`), `serving.warmup`,
  `serving.signature` and `serving.batching`.
- Model workers: every loaded version runs in a process of its own
  (`serving.worker`), started and watched by `serving.worker_process`,
  served through `serving.worker_servable` (the `ServableVersion`
  interface over `serving.worker_protocol`); `serving.admission` bounds a
  model's executions and never starts calls that can no longer finish in
  time; `serving.restarts` says when a version whose worker ended loads
  again.
- Shared parts: `serving.tensors` (TensorProto checks and encoding),
  `serving.limits` (per-request and in-flight memory limits),
  `serving.execution` (deadlines and cancellation of model calls),
  `serving.tls` (`--ssl_config_file`), `serving.metrics` (Prometheus),
  `serving.errors`, `serving.defaults`.

Clients: `serving.grpc_client.ServingClient` (timeouts, retries, TLS) and
`serving.rest_client.RestClient`, both on `serving.client_base`;
`serving.video_pipeline` (video files through a served model);
`python -m serving.client`, the command line (`--timeline`, `--live`:
`serving.timeline_cli`). `serving.launch` starts a server as a child
process and `serving.loadtest` load-tests one (tests and benchmarks; the
small models they serve are built by `tests/tf_serving_models.py` and
`tests/tiny_exports.py`).

Modules are imported on use (`import serving.client`), so that the client
does not load the server's code.

See docs/serving.md for the flags, the conformance figures and the
differences from TF Serving that remain.
"""
